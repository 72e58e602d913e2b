// Following an answer already being written, the stall watchdog, the nudge
// that skips the backoff, and the 409 that names the running answer.
import { test } from "node:test";
import assert from "node:assert/strict";
import { HttpError, Nudge, StreamLostError, streamEvents } from "../../web/js/sse.js";

const enc = new TextEncoder();

function frame(id, type, fields) {
  return `id: ${id}\nevent: ${type}\ndata: ${JSON.stringify({ type, ...fields })}\n\n`;
}

function turnFrames(words) {
  const frames = [frame(1, "status", { stage: "llm", state: "start", progress: 80, stream_id: "s1" })];
  words.forEach((w, i) => frames.push(frame(i + 2, "chunk", { content: w })));
  frames.push(frame(words.length + 2, "complete", { message: words.join(""), suggestions: [] }));
  return frames;
}

/** A body that yields `pieces`, then ends, fails, or hangs without a byte (a stall). */
function sseResponse(pieces, { then = "end", headers = {}, status = 200 } = {}, signal = null) {
  const bytes = pieces.map((p) => enc.encode(p));
  let i = 0;
  const body = new ReadableStream({
    pull(controller) {
      if (i < bytes.length) return controller.enqueue(bytes[i++]);
      if (then === "end") return controller.close();
      if (then === "fail") return controller.error(new TypeError("network error"));
      // "hang": no byte ever again, until the request is aborted
      return new Promise((resolve) => {
        signal?.addEventListener("abort", () => {
          controller.error(signal.reason);
          resolve();
        });
      });
    },
  });
  return new Response(body, {
    status,
    headers: { "Content-Type": "text/event-stream", "X-Stream-Id": "s1", ...headers },
  });
}

function fakeFetch(handlers) {
  const calls = [];
  const fn = async (url, init = {}) => {
    calls.push({ url, init });
    const h = handlers[calls.length - 1];
    if (!h) throw new Error(`unexpected request ${calls.length}: ${url}`);
    return h(url, init);
  };
  fn.calls = calls;
  return fn;
}

async function collect(iter) {
  const out = [];
  for await (const ev of iter) out.push(ev);
  return out;
}

const noWait = { backoff: () => 0, waitOnline: async () => {} };
const resumeUrl = (id) => `/api/streams/${id}`;

test("following a stream starts with a GET from the first event, no Last-Event-ID", async () => {
  const frames = turnFrames(["a", "b", "c"]);
  const fetch = fakeFetch([
    () => sseResponse(frames.slice(0, 3), { then: "fail" }),
    () => sseResponse(frames.slice(3)),
  ]);
  const events = await collect(streamEvents({ streamId: "s1", resumeUrl, fetch, ...noWait }));
  assert.deepEqual(events.map((e) => e.id), [1, 2, 3, 4, 5]);
  assert.equal(fetch.calls[0].url, "/api/streams/s1");
  assert.equal(fetch.calls[0].init.method, "GET");
  assert.equal(fetch.calls[0].init.headers["Last-Event-ID"], undefined);
  assert.equal(fetch.calls[1].init.headers["Last-Event-ID"], "3");
});

test("following a stream that has expired (404) says so, marked expired", async () => {
  const fetch = fakeFetch([() => new Response("{}", { status: 404 })]);
  await assert.rejects(
    collect(streamEvents({ streamId: "gone", resumeUrl, fetch, ...noWait })),
    (err) => err instanceof StreamLostError && err.expired === true,
  );
});

test("a connection silent for twice the heartbeat is dropped and resumed", async () => {
  const frames = turnFrames(["one ", "two ", "three"]);
  const states = [];
  const fetch = fakeFetch([
    // The server says it pings every 20 ms; then nothing comes at all.
    (url, init) => sseResponse(frames.slice(0, 2), {
      then: "hang", headers: { "X-Heartbeat-Seconds": "0.02" },
    }, init.signal),
    () => sseResponse(frames.slice(2)),
  ]);
  const started = Date.now();
  const events = await collect(streamEvents({
    url: "/post", init: { method: "POST" }, resumeUrl, fetch, ...noWait,
    backoff: () => 60_000, // a stall reconnects at once, whatever the backoff says
    onConnection: (s) => states.push(s),
  }));
  assert.deepEqual(events.map((e) => e.id), [1, 2, 3, 4, 5]);
  assert.equal(fetch.calls[1].init.headers["Last-Event-ID"], "2");
  assert.ok(Date.now() - started < 5000);
  assert.ok(states.some((s) => s.state === "waiting" && s.stalled === true));
});

test("comments keep a quiet connection alive: no reconnect while pings arrive", async () => {
  const frames = turnFrames(["x"]);
  let sent = 0;
  const body = new ReadableStream({
    async pull(controller) {
      // 6 pings 10 ms apart (60 ms of quiet, over twice the 20 ms heartbeat), then the rest
      if (sent < 6) {
        await new Promise((r) => setTimeout(r, 10));
        sent++;
        controller.enqueue(enc.encode(sent === 1 ? frames[0] : ": ping\n\n"));
      } else {
        controller.enqueue(enc.encode(frames.slice(1).join("")));
        controller.close();
      }
    },
  });
  const fetch = fakeFetch([
    () => new Response(body, { headers: { "X-Stream-Id": "s1", "X-Heartbeat-Seconds": "0.02" } }),
  ]);
  const events = await collect(streamEvents({ url: "/post", resumeUrl, fetch, ...noWait }));
  assert.equal(events.at(-1).type, "complete");
  assert.equal(fetch.calls.length, 1);
});

test("a nudge (tab visible again, network back) skips the backoff", async () => {
  const frames = turnFrames(["a", "b"]);
  const nudge = new Nudge();
  const fetch = fakeFetch([
    () => sseResponse(frames.slice(0, 2), { then: "fail" }),
    () => sseResponse(frames.slice(2)),
  ]);
  const started = Date.now();
  const events = await collect(streamEvents({
    url: "/post", resumeUrl, fetch, nudge,
    waitOnline: async () => {},
    backoff: () => 60_000,
    onConnection: (s) => {
      if (s.state === "waiting") setTimeout(() => nudge.fire(), 5);
    },
  }));
  assert.equal(events.at(-1).type, "complete");
  assert.ok(Date.now() - started < 5000);
});

test("409 turn_in_progress names the answer being written", async () => {
  const body = {
    error: { code: "turn_in_progress", message: "An answer is being written.", stream_id: "st_busy" },
  };
  const fetch = fakeFetch([
    () => new Response(JSON.stringify(body), {
      status: 409, headers: { "Content-Type": "application/json" },
    }),
  ]);
  await assert.rejects(
    collect(streamEvents({ url: "/post", resumeUrl, fetch, ...noWait })),
    (err) => err instanceof HttpError && err.code === "turn_in_progress"
      && err.streamId === "st_busy" && err.serverMessage === "An answer is being written.",
  );
});

test("back online after waiting for it: the reconnect goes without the backoff", async () => {
  const frames = turnFrames(["a", "b"]);
  const fetch = fakeFetch([
    () => sseResponse(frames.slice(0, 2), { then: "fail" }),
    () => sseResponse(frames.slice(2)),
  ]);
  const started = Date.now();
  const events = await collect(streamEvents({
    url: "/post", resumeUrl, fetch,
    waitOnline: async () => true, // it was offline, and now is not
    backoff: () => 60_000,
  }));
  assert.equal(events.at(-1).type, "complete");
  assert.ok(Date.now() - started < 5000);
});
