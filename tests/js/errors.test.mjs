// Error messages a person would want to read.
import { test } from "node:test";
import assert from "node:assert/strict";
import { describeError, formatWait } from "../../web/js/errors.js";
import { HttpError } from "../../web/js/sse.js";

test("rate limited says when to try again", () => {
  const d = describeError({ code: "rate_limited", message: "Slow down", retryable: true, retry_after: 11.2 });
  assert.match(d.text, /try again in 12 s/i);
  assert.equal(d.retryable, true);
  assert.equal(d.retryAfter, 11.2);
});

test("a 429 JSON answer reads the same", () => {
  const err = new HttpError(429, { error: { code: "rate_limited", message: "x", retry_after: 3 } });
  const d = describeError(err);
  assert.match(d.text, /try again in 3 s/i);
  assert.equal(d.retryable, true);
});

test("cancelled is not an error to retry", () => {
  const d = describeError({ code: "cancelled", message: "Cancelled", retryable: false });
  assert.equal(d.text, "Stopped.");
  assert.equal(d.retryable, false);
});

test("the server's retryable flag wins; unknown codes keep the server's words", () => {
  assert.equal(describeError({ code: "internal", retryable: false }).retryable, false);
  const d = describeError({ code: "new_code", message: "A new kind of trouble.", retryable: false });
  assert.equal(d.text, "A new kind of trouble.");
});

test("HTTP statuses without a code map to sentences", () => {
  assert.match(describeError({ status: 413 }).text, /too long/);
  assert.equal(describeError({ status: 502 }).retryable, true);
});

test("formatWait", () => {
  assert.equal(formatWait(0.2), "1 s");
  assert.equal(formatWait(59), "59 s");
  assert.equal(formatWait(60), "1 min");
  assert.equal(formatWait(125), "2 min 5 s");
});
