// The event-stream parser against the WHATWG rules
// (https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream)
// and the format cases of web-platform-tests' eventsource/ directory
// (format-*.any.js, event-data.any.js), whose server-side streams are
// reproduced here as literal text.
import { test } from "node:test";
import assert from "node:assert/strict";
import { EventStreamParser, parseEventStream } from "../../web/js/sse.js";

const data = (events) => events.map((e) => e.data);

/** Feed a stream in every possible two-piece split, and byte by byte. */
function parseAllSplits(text) {
  const bytes = new TextEncoder().encode(text);
  const whole = parseEventStream(text);
  for (let cut = 0; cut <= bytes.length; cut++) {
    const p = new EventStreamParser();
    const got = [...p.push(bytes.slice(0, cut)), ...p.push(bytes.slice(cut))];
    p.end();
    assert.deepEqual(got, whole, `split at byte ${cut}`);
  }
  const p = new EventStreamParser();
  const got = [];
  for (const b of bytes) got.push(...p.push(Uint8Array.of(b)));
  assert.deepEqual(got, whole, "byte by byte");
  return whole;
}

test("a plain event and the message type by default", () => {
  const events = parseEventStream("data: hello\n\n");
  assert.deepEqual(events, [{ type: "message", data: "hello", lastEventId: "" }]);
});

test("sluice frames: id, event, JSON data", () => {
  const stream =
    "retry: 3000\n\n" +
    'id: 1\nevent: status\ndata: {"type":"status","stage":"rate_limit"}\n\n' +
    ": ping\n\n" +
    'id: 2\nevent: chunk\ndata: {"type":"chunk","content":"Hel"}\n\n';
  const p = new EventStreamParser();
  const events = p.push(stream);
  assert.equal(p.retry, 3000);
  assert.equal(p.comments, 1);
  assert.deepEqual(events.map((e) => [e.type, e.lastEventId]), [["status", "1"], ["chunk", "2"]]);
  assert.equal(JSON.parse(events[1].data).content, "Hel");
});

test("WPT format-bom: one leading BOM is ignored, a later one is not", () => {
  const events = parseEventStream("\uFEFFdata:1\n\n\uFEFFdata:2\n\ndata:3\n\n");
  assert.deepEqual(data(events), ["1", "3"]);
});

test("WPT format-bom-2: of two leading BOMs only the first is ignored", () => {
  const events = parseEventStream("\uFEFF\uFEFFdata:1\n\ndata:2\n\ndata:3\n\n");
  assert.deepEqual(data(events), ["2", "3"]);
});

test("a BOM arriving as bytes, split across reads, is still stripped once", () => {
  const bytes = new TextEncoder().encode("\uFEFFdata:1\n\n");
  assert.equal(bytes[0], 0xef);
  const p = new EventStreamParser();
  const got = [...p.push(bytes.slice(0, 1)), ...p.push(bytes.slice(1, 2)), ...p.push(bytes.slice(2))];
  assert.deepEqual(data(got), ["1"]);
});

test("WPT format-comments: comments with CR, LF, CRLF and long lines", () => {
  const long = "x".repeat(2048);
  const stream = `data:1\r:\0\n:\r\ndata:2\n:${long}\rdata:3\n:data:fail\r:${long}\ndata:4\n\n`;
  assert.deepEqual(data(parseAllSplits(stream)), ["1\n2\n3\n4"]);
});

test("WPT format-newlines: CRLF, LF and CR all end lines", () => {
  assert.deepEqual(data(parseAllSplits("data:test\r\ndata\ndata:test\r\n\r")), ["test\n\ntest"]);
});

test("a CRLF split across two reads is one line end, not two", () => {
  const p = new EventStreamParser();
  const a = p.push("data: a\r");
  const b = p.push("\ndata: b\r\n\r\n");
  assert.deepEqual(data([...a, ...b]), ["a\nb"]);
});

test("WPT format-field-parsing: field names are exact, one space stripped", () => {
  const stream =
    "data:\0\ndata:  2\rData:1\ndata\0:2\ndata:1\r\0data:4\nda-ta:3\rdata_5\ndata:3\rdata:\r\n data:32\ndata:4\n\n";
  assert.deepEqual(data(parseAllSplits(stream)), ["\0\n 2\n1\n3\n\n4"]);
});

test("WPT format-field-data: empty data, bare data fields", () => {
  const events = parseAllSplits("data:\n\ndata\ndata\n\ndata:test\n\n");
  assert.deepEqual(data(events), ["", "\n", "test"]);
});

test("WPT event-data: joined lines, empty data, end", () => {
  const events = parseAllSplits("data:msg\ndata:msg\n\ndata:\n\ndata:end\n\n");
  assert.deepEqual(data(events), ["msg\nmsg", "", "end"]);
});

test("WPT format-field-event: custom type; reset after dispatch", () => {
  const events = parseEventStream("event:test\ndata:x\n\ndata:x\n\n");
  assert.deepEqual(events.map((e) => e.type), ["test", "message"]);
});

test("WPT format-field-event-empty: empty event name means message", () => {
  assert.deepEqual(parseEventStream("event: \ndata:data\n\n").map((e) => [e.type, e.data]), [
    ["message", "data"],
  ]);
});

test("an event type without data dispatches nothing and does not leak", () => {
  const events = parseEventStream("event: x\n\ndata: y\n\n");
  assert.deepEqual(events.map((e) => e.type), ["message"]);
});

test("WPT format-field-unknown: unknown fields and bare words are ignored", () => {
  const stream = "data:test\n data\ndata\nfoobar:xxx\njustsometext\n:thisisacommentyay\ndata:test\n\n";
  assert.deepEqual(data(parseEventStream(stream)), ["test\n\ntest"]);
});

test("WPT format-leading-space: only one leading space is removed, not tabs", () => {
  assert.deepEqual(data(parseEventStream("data:\ttest\rdata: \ndata:test\n\n")), ["\ttest\n\ntest"]);
});

test("WPT format-null-character: NUL in data is kept", () => {
  assert.deepEqual(data(parseEventStream("data:\0\n\n")), ["\0"]);
});

test("WPT format-utf-8: always UTF-8, even split inside a character", () => {
  // "ok…": the ellipsis is three bytes; split it between reads.
  const bytes = new TextEncoder().encode("data:ok…\n\n");
  const p = new EventStreamParser();
  const got = [...p.push(bytes.slice(0, 8)), ...p.push(bytes.slice(8, 9)), ...p.push(bytes.slice(9))];
  assert.deepEqual(data(got), ["ok…"]);
});

test("multi-byte Arabic and emoji split at every byte decode whole", () => {
  const events = parseAllSplits('data: {"content":"مرحبا بالعالم 👋🏽 日本語"}\n\n');
  assert.equal(JSON.parse(events[0].data).content, "مرحبا بالعالم 👋🏽 日本語");
});

test("WPT format-field-id: lastEventId is set and carried by the event", () => {
  const events = parseEventStream("id: 1\ndata: hello\n\n");
  assert.equal(events[0].lastEventId, "1");
});

test("WPT format-field-id-2: a non-ASCII id", () => {
  const p = new EventStreamParser();
  const events = p.push("id: …\ndata: hello\n\n");
  assert.equal(events[0].lastEventId, "…");
  assert.equal(p.lastEventId, "…");
});

test("WPT format-field-id-3: lastEventId persists across events", () => {
  const events = parseEventStream("id: 1\ndata: 1\n\ndata: 2\n\nid: 2\ndata:3\n\ndata:4\n\n");
  assert.deepEqual(events.map((e) => [e.data, e.lastEventId]), [
    ["1", "1"], ["2", "1"], ["3", "2"], ["4", "2"],
  ]);
});

test("WPT format-field-id-3: an empty id resets, with or without colon", () => {
  for (const reset of ["id: \n", "id\n"]) {
    const events = parseEventStream(`id: 1\ndata: 1\n\n${reset}data:2\n\ndata:3\n\n`);
    assert.deepEqual(events.map((e) => e.lastEventId), ["1", "", ""], JSON.stringify(reset));
  }
});

test("WPT format-field-id-null: an id containing NUL is ignored", () => {
  for (const value of ["\0\0", "x\0", "\0x", "x\0x", " \0"]) {
    const events = parseEventStream(`id: ${value}\ndata: hello\n\n`);
    assert.equal(events[0].lastEventId, "", JSON.stringify(value));
  }
  const kept = parseEventStream("id: 3\ndata: a\n\nid: 4\0\ndata: b\n\n");
  assert.deepEqual(kept.map((e) => e.lastEventId), ["3", "3"]);
});

test("an id in an event without data still moves lastEventId", () => {
  const p = new EventStreamParser();
  assert.deepEqual(p.push("id: 9\n\n"), []);
  assert.equal(p.lastEventId, "9");
});

test("WPT format-field-retry: digits set the reconnection time", () => {
  const p = new EventStreamParser();
  p.push("retry:03000\ndata:x\n\n");
  assert.equal(p.retry, 3000);
});

test("WPT format-field-retry-bogus: anything but digits is ignored", () => {
  const p = new EventStreamParser();
  p.push("retry:3000\nretry:1000x\ndata:x\n\n");
  assert.equal(p.retry, 3000);
  for (const bad of ["retry: 1e3\n", "retry: -1\n", "retry: 1.5\n", "retry:  10\n"]) {
    const q = new EventStreamParser();
    q.push(bad);
    assert.equal(q.retry, null, JSON.stringify(bad));
  }
});

test("WPT format-field-retry-empty: an empty retry is ignored, data still flows", () => {
  const p = new EventStreamParser();
  assert.deepEqual(data(p.push("retry\ndata:test\n\n")), ["test"]);
  assert.equal(p.retry, null);
});

test("WPT format-data-before-final-empty-line: an unterminated event is discarded", () => {
  const p = new EventStreamParser();
  const events = p.push("retry:1000\ndata:test1\n\nid:test\ndata:test2");
  p.end();
  assert.deepEqual(data(events), ["test1"]);
  // The id of the discarded event was never dispatched: resume from before it.
  assert.equal(p.lastEventId, "");
});

test("an incomplete event at the end is discarded even when its lines are whole", () => {
  const p = new EventStreamParser();
  const events = p.push("id: 1\ndata: a\n\nid: 2\ndata: b\n");
  assert.deepEqual(p.end(), []);
  assert.deepEqual(data(events), ["a"]);
  assert.equal(p.lastEventId, "1");
});

test("comments carry no event and count as heartbeats", () => {
  const p = new EventStreamParser();
  assert.deepEqual(p.push(": ping\n\n: ping\n"), []);
  assert.equal(p.comments, 2);
});

test("U+2028, U+2029 and U+0085 inside data are data, not line ends", () => {
  // The server escapes them inside its JSON; a raw one (another server, a
  // proxy that decodes) must still not cut the frame in two.
  const events = parseAllSplits("id: 1\ndata: a\u2028b\u2029c\u0085d\n\n");
  assert.deepEqual(events, [{ type: "message", data: "a\u2028b\u2029c\u0085d", lastEventId: "1" }]);
});

test("\": ping\" comments are counted as heartbeats, padding comments are not", () => {
  const p = new EventStreamParser();
  assert.deepEqual(p.push(`: ping\n\n:${" ".repeat(64)}\n\n:ping\n\n`), []);
  assert.deepEqual([p.comments, p.pings], [3, 2]);
});
