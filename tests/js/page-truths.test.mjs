// The page's small truths, as pure functions: a streaming tail without stray
// markers, suggestions in the conversation's script, remembered context in
// words, the connection check's verdicts, answer labels kept for history,
// and the server's own words for errors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { closeDangling } from "../../web/js/md-blocks.js";
import { dominantScript, pickSuggestions } from "../../web/js/suggestions.js";
import { describeContext } from "../../web/js/status-view.js";
import { analyse } from "../../web/js/check.js";
import { factsFor, rememberFacts } from "../../web/js/answer-facts.js";
import { describeError } from "../../web/js/errors.js";
import { HttpError, StreamLostError } from "../../web/js/sse.js";

test("an emphasis still arriving is shown closed, not with a stray marker", () => {
  assert.equal(closeDangling("*Demo mo"), "*Demo mo*");
  assert.equal(closeDangling("*Demo mode: "), "*Demo mode:*");
  assert.equal(closeDangling("**bold** and *it"), "**bold** and *it*");
  assert.equal(closeDangling("**bold*"), "**bold**");
  assert.equal(closeDangling("***both"), "***both***");
  assert.equal(closeDangling("a `code"), "a `code`");
  assert.equal(closeDangling("a ~~gone"), "a ~~gone~~");
  assert.equal(closeDangling("_under"), "_under_");
});

test("a marker the text ends on waits for the next character", () => {
  assert.equal(closeDangling("x *"), "x ");
  assert.equal(closeDangling("**b**"), "**b**");
  assert.equal(closeDangling("word_"), "word");
});

test("what is not an open emphasis is left alone", () => {
  for (const text of ["snake_case_name", "* item", "1 * 2 = 2", "done *a* b", "```\n*x", "\\*x"]) {
    assert.equal(closeDangling(text), text);
  }
  // Emphasis does not cross a blank line: only the last paragraph is closed.
  assert.equal(closeDangling("*a\n\nb *c"), "*a\n\nb *c*");
});

test("scripts are told apart", () => {
  assert.equal(dominantScript("Find me a restaurant"), "latin");
  assert.equal(dominantScript("أريد مطعم في Tokyo"), "arabic");
  assert.equal(dominantScript("東京のレストラン"), "han");
  assert.equal(dominantScript("123 !"), null);
});

test("suggestions follow the conversation's script and skip the one just sent", () => {
  const offered = ["What about sushi?", "Something vegetarian?", "ماذا عن السوشي؟"];
  assert.deepEqual(pickSuggestions(offered, "what about sushi"), ["Something vegetarian?"]);
  assert.deepEqual(pickSuggestions(offered, "أريد مطعم في طوكيو"), ["ماذا عن السوشي؟"]);
  assert.deepEqual(pickSuggestions(["Hi", "", null], "42"), ["Hi"]);
});

test("remembered context reads as words, not identifiers", () => {
  assert.deepEqual(
    describeContext({ location: "Tokyo", last_intent: "find_restaurant", cuisine: "" }),
    [["location", "Tokyo"], ["topic", "restaurants"]],
  );
  assert.deepEqual(describeContext({ last_intent: "chat", travel_date: "May 3" }),
    [["travel date", "May 3"]]);
  assert.deepEqual(describeContext({ last_intent: "book_flight" }), [["topic", "book flight"]]);
});

const steady = (n, every, lag = 3) =>
  Array.from({ length: n }, (_, i) => ({ seq: i + 1, sentMs: i * every, arrivedMs: i * every + lag }));

test("the check: at once, buffered with the delay, compressed, cut", () => {
  const base = { expected: 10, intervalMs: 500, encoding: null, finished: true, pingsSent: 9, pingsReceived: 9 };
  const ok = analyse({ ...base, arrivals: steady(10, 500) });
  assert.equal(ok.verdict, "streaming");
  assert.match(ok.lines.join(" "), /arrive at once.*Heartbeats pass: 9 of 9/);

  const held = Array.from({ length: 10 }, (_, i) => ({ seq: i + 1, sentMs: i * 500, arrivedMs: 4600 }));
  const buffered = analyse({ ...base, arrivals: held });
  assert.equal(buffered.verdict, "buffered");
  assert.equal(buffered.bursts, 1);
  assert.equal(buffered.maxDelayMs, 4500);
  assert.match(buffered.lines[0], /one burst.*4\.5 s/);

  assert.equal(analyse({ ...base, arrivals: steady(10, 500), encoding: "gzip" }).verdict, "compressed");
  const cut = analyse({ ...base, arrivals: steady(3, 500), finished: false, pingsSent: null });
  assert.equal(cut.verdict, "cut");
  assert.match(cut.lines[0], /3 of 10 events/);
  const noPings = analyse({ ...base, arrivals: steady(10, 500), pingsReceived: 0 });
  assert.match(noPings.lines.join(" "), /Heartbeats do not pass/);
});

function memoryStorage() {
  const data = new Map();
  return { getItem: (k) => data.get(k) ?? null, setItem: (k, v) => data.set(k, String(v)) };
}

test("an answer's provider and model are kept for when history reopens it", () => {
  const storage = memoryStorage();
  rememberFacts("s_1", "The answer.", { provider: "openai", model: "gpt-4o-mini", fallback: true }, storage);
  assert.deepEqual(factsFor("s_1", { role: "assistant", content: "The answer." }, storage),
    { provider: "openai", model: "gpt-4o-mini", fallback: true });
  assert.equal(factsFor("s_2", { content: "The answer." }, storage), null);
  assert.equal(factsFor("s_1", { content: "Another." }, storage), null);
  // The server's own facts win.
  assert.equal(factsFor("s_1", { content: "The answer.", provider: "gemini" }, storage).provider, "gemini");
  assert.equal(factsFor("s_1", { content: "x", facts: { provider: "demo" } }, storage).provider, "demo");
});

test("the server's message is shown; the page's words only where there is none", () => {
  const refused = describeError({
    code: "upstream_unavailable",
    message: "No language model could answer. openai refused the API key (401): the server's operator must set a valid OPENAI_API_KEY.",
    retryable: false,
  });
  assert.match(refused.text, /operator must set a valid OPENAI_API_KEY\.$/);
  assert.equal(refused.retryable, false);
  const http = describeError(new HttpError(503, { error: { code: "unavailable", message: "Redis is down." } }));
  assert.equal(http.text, "Redis is down.");
  // No server words: a lost connection, or a browser's own error text.
  assert.match(describeError(new StreamLostError("internal detail")).text, /^The connection was lost\./);
  const typeError = Object.assign(new TypeError("Failed to fetch"), { code: "connection_lost" });
  assert.doesNotMatch(describeError(typeError).text, /Failed to fetch/);
});
