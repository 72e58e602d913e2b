// The fetch-based client: resume after a drop with Last-Event-ID, backoff,
// no gap and no duplicate, and errors before the stream.
import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay, HttpError, StreamLostError, streamEvents } from "../../web/js/sse.js";

const enc = new TextEncoder();

function frame(id, type, fields) {
  return `id: ${id}\nevent: ${type}\ndata: ${JSON.stringify({ type, ...fields })}\n\n`;
}

/** The frames of one turn: status(with stream_id), chunks, complete. */
function turnFrames(words) {
  const frames = [frame(1, "status", { stage: "llm", state: "start", progress: 80, stream_id: "s1" })];
  words.forEach((w, i) => frames.push(frame(i + 2, "chunk", { content: w })));
  frames.push(frame(words.length + 2, "complete", { message: words.join(""), suggestions: [] }));
  return frames;
}

/**
 * A Response whose body yields `pieces` (strings, sliced at arbitrary byte
 * offsets) and then either ends or fails like a dropped connection.
 */
function sseResponse(pieces, { fail = false, status = 200, headers = {} } = {}) {
  const bytes = pieces.map((p) => (typeof p === "string" ? enc.encode(p) : p));
  let i = 0;
  const body = new ReadableStream({
    pull(controller) {
      if (i < bytes.length) controller.enqueue(bytes[i++]);
      else if (fail) controller.error(new TypeError("network error"));
      else controller.close();
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

test("a whole stream: events in order, JSON parsed, ends at complete", async () => {
  const frames = turnFrames(["Hel", "lo"]);
  const fetch = fakeFetch([() => sseResponse(frames)]);
  const events = await collect(streamEvents({
    url: "/post", init: { method: "POST" }, resumeUrl: (id) => `/api/streams/${id}`, fetch, ...noWait,
  }));
  assert.deepEqual(events.map((e) => e.type), ["status", "chunk", "chunk", "complete"]);
  assert.deepEqual(events.map((e) => e.id), [1, 2, 3, 4]);
  assert.equal(events[3].data.message, "Hello");
  assert.equal(fetch.calls.length, 1);
});

test("a drop mid-answer resumes with Last-Event-ID; no gap, no duplicate", async () => {
  const words = ["The ", "quick ", "brown ", "fox ", "jumps."];
  const frames = turnFrames(words);
  const all = frames.join("");
  // First connection: status + 2 chunks, then half of the third chunk's
  // frame, then the network fails.
  const cutAt = frames.slice(0, 3).join("").length + 10;
  const fetch = fakeFetch([
    () => sseResponse([all.slice(0, 40), all.slice(40, cutAt)], { fail: true }),
    // The server replays from id 3 on; it repeats event 3 on purpose here,
    // as a misbehaving proxy might: the client must drop the duplicate.
    (url, init) => {
      assert.equal(url, "/api/streams/s1");
      assert.equal(init.method, "GET");
      assert.equal(init.headers["Last-Event-ID"], "3");
      return sseResponse([frames.slice(2).join("")]);
    },
  ]);
  const states = [];
  const events = await collect(streamEvents({
    url: "/post", init: { method: "POST" }, resumeUrl: (id) => `/api/streams/${id}`,
    fetch, onConnection: (s) => states.push(s.state), ...noWait,
  }));
  const text = events.filter((e) => e.type === "chunk").map((e) => e.data.content).join("");
  assert.equal(text, words.join(""));
  assert.deepEqual(events.map((e) => e.id), [1, 2, 3, 4, 5, 6, 7]);
  assert.equal(events.at(-1).data.message, text);
  assert.equal(fetch.calls.length, 2);
  assert.ok(states.includes("waiting") && states.includes("reconnecting"), states.join());
});

test("a response that ends cleanly without a terminal event is resumed too", async () => {
  const frames = turnFrames(["a", "b"]);
  const fetch = fakeFetch([
    () => sseResponse(frames.slice(0, 2)),
    (url, init) => {
      assert.equal(init.headers["Last-Event-ID"], "2");
      return sseResponse(frames.slice(2));
    },
  ]);
  const events = await collect(streamEvents({
    url: "/post", resumeUrl: (id) => `/r/${id}`, fetch, ...noWait,
  }));
  assert.equal(events.at(-1).type, "complete");
  assert.equal(events.length, 4);
});

test("a gap in ids is not passed on: the client reconnects to fill it", async () => {
  const frames = turnFrames(["a", "b", "c"]);
  const fetch = fakeFetch([
    () => sseResponse([frames[0], frames[1], frames[3]]), // 1, 2, then 4: 3 is missing
    (url, init) => {
      assert.equal(init.headers["Last-Event-ID"], "2");
      return sseResponse(frames.slice(2));
    },
  ]);
  const events = await collect(streamEvents({ url: "/p", resumeUrl: (id) => `/r/${id}`, fetch, ...noWait }));
  assert.deepEqual(events.map((e) => e.id), [1, 2, 3, 4, 5]);
});

test("gives up after 5 failed tries, with growing backoff, and says so", async () => {
  const frames = turnFrames(["a"]);
  const fail = () => { throw new TypeError("Failed to fetch"); };
  const fetch = fakeFetch([() => sseResponse(frames.slice(0, 1), { fail: true }), fail, fail, fail, fail, fail]);
  const delays = [];
  const states = [];
  await assert.rejects(
    collect(streamEvents({
      url: "/p", resumeUrl: (id) => `/r/${id}`, fetch, waitOnline: async () => {},
      backoff: (attempt, base) => { delays.push([attempt, base]); return 0; },
      onConnection: (s) => states.push(s.state),
    })),
    StreamLostError,
  );
  assert.equal(fetch.calls.length, 6); // the POST and 5 resumes
  assert.deepEqual(delays.map((d) => d[0]), [1, 2, 3, 4, 5]);
  assert.equal(states.at(-1), "failed");
});

test("the try counter resets once a resume delivers events", async () => {
  const frames = turnFrames(["a", "b", "c", "d", "e", "f"]);
  const handlers = [];
  // each connection delivers one new event and then drops: 8 connections
  for (let i = 0; i < frames.length; i++) {
    handlers.push(() => sseResponse([frames[i]], { fail: i < frames.length - 1 }));
  }
  const fetch = fakeFetch(handlers);
  const events = await collect(streamEvents({ url: "/p", resumeUrl: (id) => `/r/${id}`, fetch, ...noWait }));
  assert.equal(events.length, frames.length);
  assert.ok(fetch.calls.length > 6);
});

test("the server's retry: sets the backoff base", async () => {
  const frames = turnFrames(["a"]);
  const fetch = fakeFetch([
    () => sseResponse(["retry: 250\n\n", frames[0]], { fail: true }),
    () => sseResponse(frames.slice(1)),
  ]);
  const bases = [];
  await collect(streamEvents({
    url: "/p", resumeUrl: (id) => `/r/${id}`, fetch, waitOnline: async () => {},
    backoff: (attempt, base) => { bases.push(base); return 0; },
  }));
  assert.deepEqual(bases, [250]);
});

test("backoff doubles, is capped and jittered within ±20%", () => {
  assert.equal(backoffDelay(1, 1000, () => 0.5), 1000);
  assert.equal(backoffDelay(3, 1000, () => 0.5), 4000);
  assert.equal(backoffDelay(10, 1000, () => 0.5), 15000);
  assert.equal(backoffDelay(1, 1000, () => 0), 800);
  assert.equal(backoffDelay(1, 1000, () => 1), 1200);
});

test("an HTTP error before the stream is an HttpError with the server's fields", async () => {
  const fetch = fakeFetch([
    () => new Response(JSON.stringify({ error: { code: "too_large", message: "Too long." } }), {
      status: 413, headers: { "Content-Type": "application/json" },
    }),
  ]);
  await assert.rejects(
    collect(streamEvents({ url: "/p", resumeUrl: () => "", fetch, ...noWait })),
    (err) => err instanceof HttpError && err.status === 413 && err.message === "Too long.",
  );
  assert.equal(fetch.calls.length, 1);
});

test("a resume answered 404 (the log expired) stops with a clear error", async () => {
  const frames = turnFrames(["a"]);
  const fetch = fakeFetch([
    () => sseResponse(frames.slice(0, 1), { fail: true }),
    () => new Response("{}", { status: 404 }),
  ]);
  await assert.rejects(
    collect(streamEvents({ url: "/p", resumeUrl: (id) => `/r/${id}`, fetch, ...noWait })),
    /expired/,
  );
});

test("a drop before the stream id is known cannot resume", async () => {
  const fetch = fakeFetch([() => sseResponse([], { fail: true, headers: { "X-Stream-Id": "" } })]);
  await assert.rejects(
    collect(streamEvents({ url: "/p", resumeUrl: (id) => `/r/${id}`, fetch, ...noWait })),
    StreamLostError,
  );
  assert.equal(fetch.calls.length, 1);
});

test("abort stops the stream and does not reconnect", async () => {
  const ac = new AbortController();
  const frames = turnFrames(["a", "b"]);
  const fetch = fakeFetch([(url, init) => {
    const body = new ReadableStream({
      start(controller) {
        controller.enqueue(enc.encode(frames[0]));
        init.signal.addEventListener("abort", () => controller.error(init.signal.reason));
      },
    });
    return new Response(body, { headers: { "X-Stream-Id": "s1" } });
  }]);
  const seen = [];
  await assert.rejects(async () => {
    for await (const ev of streamEvents({ url: "/p", resumeUrl: () => "/r", fetch, signal: ac.signal, ...noWait })) {
      seen.push(ev.type);
      ac.abort();
    }
  });
  assert.deepEqual(seen, ["status"]);
  assert.equal(fetch.calls.length, 1);
});

test("a resume answered 204 (nothing will follow) stops instead of retrying", async () => {
  const frames = turnFrames(["a"]);
  const fetch = fakeFetch([
    () => sseResponse(frames.slice(0, 1), { fail: true }),
    () => new Response(null, { status: 204 }),
  ]);
  await assert.rejects(
    collect(streamEvents({ url: "/p", resumeUrl: (id) => `/r/${id}`, fetch, ...noWait })),
    StreamLostError,
  );
  assert.equal(fetch.calls.length, 2);
});
