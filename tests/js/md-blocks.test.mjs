// Where a streaming answer's Markdown may be settled into finished blocks.
import { test } from "node:test";
import assert from "node:assert/strict";
import { settledBoundary } from "../../web/js/md-blocks.js";

test("settles a paragraph as soon as the next block has visibly begun", () => {
  const t = "First para.\n\nSecond para.\n";
  assert.equal(t.slice(0, settledBoundary(t)), "First para.\n\n");
  assert.equal(settledBoundary("First para.\n\nSec"), "First para.\n\n".length);
  assert.equal(settledBoundary("First para.\n\n"), 0, "nothing of the next block yet");
  assert.equal(settledBoundary("First para.\n\n  "), 0, "indented: may continue");
  assert.equal(settledBoundary("- a\n\n1"), 0, "may become a list item");
  assert.equal(settledBoundary("- a\n\n- b"), 0, "the list goes on");
});

test("never settles inside a fenced code block", () => {
  const t = "Intro\n\n```js\nconst a = 1;\n\nconst b = 2;\n```\n\nAfter\n";
  const b = settledBoundary(t);
  assert.equal(t.slice(b), "After\n");
  const open = "Intro\n\n```\ncode\n\nmore\n";
  assert.equal(open.slice(0, settledBoundary(open)), "Intro\n\n");
  const tilde = "~~~\na\n\nb\n~~~\n\nok\n";
  assert.equal(tilde.slice(settledBoundary(tilde)), "ok\n");
});

test("keeps a loose list together and indented continuations with their item", () => {
  const t = "- one\n\n- two\n\n  more of two\n\nDone\n";
  assert.equal(t.slice(settledBoundary(t)), "Done\n");
  const ordered = "1. a\n\n2. b\n";
  assert.equal(settledBoundary(ordered), 0);
});

test("resumes from a previous boundary and only moves forward", () => {
  const t = "a\n\nb\n\nc\n\n";
  const first = settledBoundary(t, 0);
  assert.equal(t.slice(0, first), "a\n\nb\n\n");
  assert.equal(settledBoundary(t, first), first);
  const more = t + "d\n\ne";
  const second = settledBoundary(more, first);
  assert.equal(more.slice(first, second), "c\n\nd\n\n");
});

test("streamed character by character, the settled blocks join back to the text", () => {
  const t = "# Title\n\nPara one.\n\n```\nx\n\ny\n```\n\n- a\n- b\n\nLast.\n\n";
  const parts = [];
  let from = 0;
  for (let i = 1; i <= t.length; i++) {
    const b = settledBoundary(t.slice(0, i), from);
    assert.ok(b >= from);
    if (b > from) parts.push(t.slice(from, b));
    from = b;
  }
  parts.push(t.slice(from));
  assert.equal(parts.join(""), t);
  assert.deepEqual(parts, [
    "# Title\n\n", "Para one.\n\n", "```\nx\n\ny\n```\n\n", "- a\n- b\n\n", "Last.\n\n",
  ]);
});
