// An answer's steps from its events: the order they happened in, one step per
// call whatever the replays, a pending approval until a decision or a result,
// reasoning kept apart from the answer and timed.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  StepLog, formatArguments, formatDuration, reasoningLabel, toolPhase, toolStatusText,
} from "../../web/js/tool-steps.js";

function clock() {
  let t = 0;
  return { now: () => t, advance: (ms) => { t += ms; } };
}

const call = (id, approval = "none") => ({
  call_id: id, name: "guarded_echo", arguments: { text: "hi" }, approval,
});

test("a call, then its result: one step that ends done with its duration", () => {
  const log = new StepLog();
  log.apply("tool_call", call("c1"));
  assert.equal(toolPhase(log.steps[0]), "running");
  assert.equal(toolStatusText(log.steps[0]), "Running…");
  log.apply("tool_result", { call_id: "c1", name: "guarded_echo", ok: true, content: "ok", duration_ms: 12 });
  assert.equal(log.steps.length, 1);
  assert.equal(toolPhase(log.steps[0]), "done");
  assert.equal(toolStatusText(log.steps[0]), "Done in 12 ms");
  assert.equal(log.steps[0].result.content, "ok");
});

test("an approval-required call waits until decided or answered", () => {
  const log = new StepLog();
  log.apply("tool_call", call("c1", "required"));
  assert.equal(log.awaitingApproval(), true);
  assert.equal(toolStatusText(log.steps[0]), "Waiting for your approval");
  log.decide("c1", true);
  assert.equal(log.awaitingApproval(), false);
  assert.equal(toolStatusText(log.steps[0]), "Allowed, running…");
  log.apply("tool_result", { call_id: "c1", ok: true, content: "guarded: hi", duration_ms: 3 });
  assert.equal(toolPhase(log.steps[0]), "done");
  // A decision after the result changes nothing.
  log.decide("c1", false);
  assert.equal(log.steps[0].decision, "allowed");
});

test("a replayed log (after a reload) rebuilds the pending approval, once", () => {
  const log = new StepLog();
  for (let i = 0; i < 2; i++) log.apply("tool_call", call("c1", "required"));
  assert.equal(log.steps.length, 1);
  assert.equal(log.awaitingApproval(), true);
});

test("a denied result, and each error in words", () => {
  const log = new StepLog();
  log.apply("tool_call", call("c1", "required"));
  log.apply("tool_result", { call_id: "c1", ok: false, content: "The user denied it.", error: "denied" });
  assert.equal(toolPhase(log.steps[0]), "denied");
  assert.equal(toolStatusText(log.steps[0]), "Denied");
  assert.equal(log.awaitingApproval(), false);
  const words = {
    timeout: "Timed out", invalid_arguments: "Invalid arguments", failed: "Failed",
    cancelled: "Stopped", something_new: "Failed",
  };
  for (const [error, text] of Object.entries(words)) {
    const l = new StepLog();
    l.apply("tool_result", { call_id: "x", name: "t", ok: false, content: "", error });
    assert.equal(toolStatusText(l.steps[0]), text, error);
  }
});

test("reasoning pieces join into one step, closed and timed by the next event", () => {
  const c = clock();
  const log = new StepLog(c.now);
  log.apply("reasoning", { content: "Let me " });
  c.advance(1000);
  log.apply("reasoning", { content: "think." });
  assert.equal(log.steps.length, 1);
  assert.equal(reasoningLabel(log.steps[0]), "Thinking…");
  c.advance(2400);
  const changed = log.apply("chunk", { content: "Answer" });
  assert.deepEqual(changed, [log.steps[0]]);
  assert.equal(log.steps[0].text, "Let me think.");
  assert.equal(reasoningLabel(log.steps[0]), "Thought for 3 s");
  // Reasoning after a tool call is a new step, after it.
  log.apply("tool_call", call("c1"));
  log.apply("reasoning", { content: "Now " });
  assert.deepEqual(log.steps.map((s) => s.kind), ["reasoning", "tool", "reasoning"]);
  log.apply("end", null);
  assert.equal(reasoningLabel(log.steps[2]), "Thought for <1 s");
});

test("a saved message's parts: calls and results, text parts ignored, absent parts fine", () => {
  const log = new StepLog();
  log.applyParts(undefined);
  log.applyParts([
    { type: "text", text: "Let me check." },
    { type: "tool_call", call_id: "a", name: "current_time", arguments: { timezone: "UTC" } },
    { type: "tool_result", call_id: "a", name: "current_time", ok: true, content: "12:00" },
    { type: "tool_result", call_id: "orphan", name: "echo", ok: false, content: "no", error: "failed" },
  ]);
  assert.deepEqual(log.steps.map((s) => [s.name, toolPhase(s)]), [
    ["current_time", "done"], ["echo", "failed"],
  ]);
  assert.equal(toolStatusText(log.steps[0]), "Done");
  assert.equal(log.awaitingApproval(), false);
});

test("saved reasoning comes back in place, with how long it took", () => {
  const log = new StepLog();
  log.applyParts([
    { type: "reasoning", text: "I need the time.", duration_ms: 4210.5 },
    { type: "tool_call", call_id: "a", name: "current_time", arguments: {} },
    { type: "tool_result", call_id: "a", name: "current_time", ok: true, content: "12:00" },
    { type: "reasoning", text: "Now I know.", duration_ms: 300 },
    { type: "text", text: "It is noon." },
    { type: "reasoning", text: "Kept without a duration." },
  ]);
  assert.deepEqual(log.steps.map((s) => s.kind), ["reasoning", "tool", "reasoning", "reasoning"]);
  assert.equal(log.steps[0].text, "I need the time.");
  assert.equal(reasoningLabel(log.steps[0]), "Thought for 4 s");
  assert.equal(reasoningLabel(log.steps[2]), "Thought for <1 s");
  assert.equal(reasoningLabel(log.steps[3]), "Thought");
  // Ended: the turn's end (or a later event) changes nothing.
  assert.deepEqual(log.apply("end", null), []);
});

test("arguments as indented JSON; durations in a person's units", () => {
  assert.equal(formatArguments({ a: "<b>" }), '{\n  "a": "<b>"\n}');
  assert.equal(formatArguments(null), "{}");
  assert.equal(formatDuration(999), "999 ms");
  assert.equal(formatDuration(1450), "1.4 s");
  assert.equal(formatDuration(12_000), "12 s");
  assert.equal(formatDuration(125_000), "2 min 5 s");
  assert.equal(formatDuration(null), "");
});
