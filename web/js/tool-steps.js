// What an answer did besides writing: the tools it called and the reasoning
// it showed, in the order they happened, as plain data (no DOM), so the same
// state is built from live events, from a replayed stream log after a
// reload, and from a saved message's parts.
//
// Everything in a step came from the model or a tool: it is untrusted text,
// and the view puts it on the page as text only.

/** Why a tool call has no good result, in a few words for a person. */
const ERROR_TEXT = {
  denied: "Denied",
  timeout: "Timed out",
  invalid_arguments: "Invalid arguments",
  failed: "Failed",
  cancelled: "Stopped",
};

/**
 * @typedef {{ok: boolean, content: string, error: string|null, durationMs: number|null}} ToolOutcome
 * @typedef {{kind: "tool", callId: string, name: string, arguments: object,
 *   approval: string, decision: null|"allowed"|"denied", result: ToolOutcome|null}} ToolStep
 * @typedef {{kind: "reasoning", text: string, startedAt: number, endedAt: number|null,
 *   durationMs?: number|null}} ReasoningStep  durationMs: as history saved it
 */

export class StepLog {
  /** @param {() => number} [now] milliseconds, for how long the reasoning took */
  constructor(now = () => Date.now()) {
    this.now = now;
    /** @type {(ToolStep|ReasoningStep)[]} */
    this.steps = [];
  }

  /**
   * Take one stream event. Returns the steps it changed (new or updated):
   * anything else (a chunk, the end) only closes the reasoning in progress.
   * @param {string} type
   * @param {any} data
   * @returns {(ToolStep|ReasoningStep)[]}
   */
  apply(type, data) {
    if (type === "reasoning") return this._reason(String(data?.content ?? ""));
    const changed = this._closeReasoning();
    if (type === "tool_call") changed.push(this._call(data));
    else if (type === "tool_result") {
      const step = this._result(data);
      if (step) changed.push(step);
    }
    return changed;
  }

  /** A saved message's parts (history): its reasoning, tool calls and results. */
  applyParts(parts) {
    if (!Array.isArray(parts)) return;
    for (const part of parts) {
      if (part?.type === "tool_call") this._call({ ...part, approval: "none" });
      else if (part?.type === "tool_result") this._result(part);
      else if (part?.type === "reasoning") this._saved(part);
    }
  }

  /** The tool step of `callId`, if any. */
  find(callId) {
    return this.steps.find((s) => s.kind === "tool" && s.callId === callId) ?? null;
  }

  /** The person decided a call waiting for approval (before its result arrives). */
  decide(callId, approve) {
    const step = this.find(callId);
    if (step && !step.result) step.decision = approve ? "allowed" : "denied";
    return step;
  }

  /** Is a call waiting for this person's decision? */
  awaitingApproval() {
    return this.steps.some((s) => toolPhase(s) === "awaiting");
  }

  _reason(text) {
    const last = this.steps[this.steps.length - 1];
    if (last?.kind === "reasoning" && last.endedAt === null) {
      last.text += text;
      return [last];
    }
    const step = { kind: "reasoning", text, startedAt: this.now(), endedAt: null };
    this.steps.push(step);
    return [step];
  }

  /** A reasoning block as history kept it: ended, with how long it took if known. */
  _saved(part) {
    const durationMs = Number.isFinite(part.duration_ms) ? part.duration_ms : null;
    const step = {
      kind: "reasoning",
      text: typeof part.text === "string" ? part.text : String(part.text ?? ""),
      startedAt: 0,
      endedAt: durationMs ?? 0,
      durationMs,
    };
    this.steps.push(step);
    return step;
  }

  _closeReasoning() {
    const last = this.steps[this.steps.length - 1];
    if (last?.kind === "reasoning" && last.endedAt === null) {
      last.endedAt = this.now();
      return [last];
    }
    return [];
  }

  _call(data) {
    const callId = String(data?.call_id ?? "");
    const known = this.find(callId);
    if (known) return known; // the same call seen twice (a replay): one step
    const step = {
      kind: "tool",
      callId,
      name: String(data?.name ?? "tool"),
      arguments: data?.arguments ?? {},
      approval: data?.approval === "required" ? "required" : "none",
      decision: null,
      result: null,
    };
    this.steps.push(step);
    return step;
  }

  _result(data) {
    const callId = String(data?.call_id ?? "");
    // A result without its call (a part list cut short): show it on its own.
    const step = this.find(callId) ?? this._call({ call_id: callId, name: data?.name });
    step.result = {
      ok: Boolean(data?.ok),
      content: typeof data?.content === "string" ? data.content : String(data?.content ?? ""),
      error: typeof data?.error === "string" ? data.error : null,
      durationMs: Number.isFinite(data?.duration_ms) ? data.duration_ms : null,
    };
    return step;
  }
}

/**
 * Where a tool step stands: "awaiting" (its owner must allow or deny it),
 * "running", "done", or the error of its result.
 * @param {ToolStep|ReasoningStep} step
 */
export function toolPhase(step) {
  if (step.kind !== "tool") return null;
  if (step.result) return step.result.ok ? "done" : (step.result.error ?? "failed");
  if (step.approval === "required" && step.decision === null) return "awaiting";
  return "running";
}

/** "12 ms", "1.4 s", "2 min 5 s". */
export function formatDuration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 1 : 0)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)} min ${s % 60} s`;
}

/** The short status beside a tool's name. */
export function toolStatusText(step) {
  const phase = toolPhase(step);
  if (phase === "awaiting") return "Waiting for your approval";
  if (phase === "running") {
    if (step.decision === "denied") return "Denying…";
    return step.decision === "allowed" ? "Allowed, running…" : "Running…";
  }
  if (phase === "done") {
    const took = formatDuration(step.result.durationMs);
    return took ? `Done in ${took}` : "Done";
  }
  return ERROR_TEXT[phase] ?? "Failed";
}

/**
 * The summary of a reasoning step: "Thinking…" while it goes on, then how
 * long ("Thought" alone for a saved block whose duration was not kept).
 */
export function reasoningLabel(step) {
  if (step.endedAt === null) return "Thinking…";
  if (step.durationMs === null) return "Thought";
  const seconds = Math.round((step.endedAt - step.startedAt) / 1000);
  return seconds < 1 ? "Thought for <1 s" : `Thought for ${seconds} s`;
}

/**
 * A tool's arguments as text for a person: indented JSON. Never markup:
 * the view sets it as text.
 */
export function formatArguments(args) {
  if (args === undefined || args === null) return "{}";
  try {
    return JSON.stringify(args, null, 2) ?? String(args);
  } catch {
    return String(args);
  }
}
