// The budget note: silent under 80 %, what is left past it, plain when gone.
import { test } from "node:test";
import assert from "node:assert/strict";
import { budgetNote, formatReset } from "../../web/js/budget-note.js";

const reset = Date.UTC(2027, 0, 1) / 1000;
const budget = (over) => ({
  period: "month", limit_tokens: 1000, limit_usd: null, used_tokens: 0, used_usd: 0,
  resets_at: reset, ...over,
});

test("no budget, or plenty left: nothing to say", () => {
  assert.equal(budgetNote(null), null);
  assert.equal(budgetNote(budget({ used_tokens: 799 })), null);
});

test("past 80 %: what is left", () => {
  const note = budgetNote(budget({ used_tokens: 850 }));
  assert.equal(note.level, "low");
  assert.equal(note.text, "About 150 tokens left of this month's budget.");
  const dollars = budgetNote(budget({ limit_tokens: null, limit_usd: 5, used_usd: 4.5, period: "day" }));
  assert.equal(dollars.text, "About $0.50 left of today's budget.");
});

test("gone: says so and when it comes back", () => {
  const note = budgetNote(budget({ used_tokens: 1200 }));
  assert.equal(note.level, "gone");
  assert.equal(note.text, "You have used all of this month's budget. It comes back on 1 Jan, 00:00 UTC.");
  assert.equal(formatReset(reset), "1 Jan, 00:00 UTC");
});
