// Server-Sent Events for a page that POSTs.
//
// EventSource can only GET, so the chat page reads the POST response with
// fetch() and a stream reader, and this module does the rest:
//
// - EventStreamParser: the WHATWG "event stream" format
//   (https://html.spec.whatwg.org/multipage/server-sent-events.html,
//   section "Parsing an event stream"), read by the vendored
//   eventsource-parser, with the state EventSource keeps around it (the last
//   event id, the reconnection time) and the UTF-8 decoding of network reads.
//   It knows nothing about the network.
// - streamEvents(): POST (or GET) a URL and yield its events; when the
//   connection drops before a terminal event, reconnect to the resume URL
//   with the last id seen, with backoff, so the caller sees one gap-free,
//   duplicate-free sequence.
//
// Why a library for the parsing: the 130 hand-written lines it replaced
// passed the same tests (tests/js/sse-parser.test.mjs: the web-platform-tests
// format cases, every split of a stream, BOMs, CRLF across reads), and
// eventsource-parser is faster: on 20,000 frames it took 0.48 of their time
// fed one frame a read and 0.40 fed 64 KiB reads (medians of 9 rounds; see
// bench/sse_parser.mjs for the command). Lines end only at CR and LF there
// too, so U+2028, U+2029 and U+0085 inside data stay data.
//
// Imports only the vendored parser; works in browsers and in Node 20 (tests).

import { createParser } from "../vendor/eventsource-parser/index.js";

/**
 * One parsed event, as EventSource would dispatch it.
 * @typedef {{type: string, data: string, lastEventId: string}} StreamEvent
 */

export class EventStreamParser {
  constructor() {
    /** The "last event ID string": set only when an event is dispatched. */
    this.lastEventId = "";
    /** The reconnection time from the last valid `retry:` field, or null. */
    this.retry = null;
    /** Comment lines seen (heartbeats); useful to know the link is alive. */
    this.comments = 0;
    /** Of those, ": ping" heartbeats (not padding). */
    this.pings = 0;
    this._decoder = null;
    /** @type {StreamEvent[]} completed by the current push() */
    this._events = [];
    this._parser = createParser({
      // onId comes first, at every dispatch that had an id field, with or
      // without data: EventSource's last event id moves even then.
      onId: (id) => {
        this.lastEventId = id;
      },
      onEvent: (ev) => {
        this._events.push({
          type: ev.event || "message",
          data: ev.data,
          lastEventId: this.lastEventId,
        });
      },
      onRetry: (ms) => {
        this.retry = ms;
      },
      onComment: (text) => {
        this.comments++;
        if (text.trim() === "ping") this.pings++;
      },
    });
  }

  /**
   * Feed the next piece of the stream: a string, or bytes (Uint8Array),
   * which are decoded as UTF-8 with `stream: true` so a character split
   * across network reads is decoded whole.
   * @param {string | Uint8Array} chunk
   * @returns {StreamEvent[]} the events completed by this piece
   */
  push(chunk) {
    let text = chunk;
    if (typeof chunk !== "string") {
      // ignoreBOM: the parser strips exactly one leading BOM itself (spec:
      // "One leading U+FEFF BYTE ORDER MARK character must be ignored"), so a
      // second one stays and spoils the first field name, as in WPT.
      this._decoder ??= new TextDecoder("utf-8", { ignoreBOM: true });
      text = this._decoder.decode(chunk, { stream: true });
    }
    this._parser.feed(text);
    const events = this._events;
    this._events = [];
    return events;
  }

  /**
   * The stream ended. Per the spec, an event not yet terminated by a blank
   * line is discarded, and so is an unterminated last line.
   * @returns {StreamEvent[]} always empty; here for symmetry with push()
   */
  end() {
    this._parser.reset();
    this._decoder = null;
    return [];
  }
}

/** Parse a whole event stream at once (tests, fixtures). */
export function parseEventStream(text) {
  const parser = new EventStreamParser();
  const events = parser.push(text);
  parser.end();
  return events;
}

/** An HTTP error answered before any event (JSON body per docs/api.md). */
export class HttpError extends Error {
  constructor(status, body, retryAfter, headers = null) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.name = "HttpError";
    this.status = status;
    this.code = err.code || `http_${status}`;
    this.retryAfter = err.retry_after ?? retryAfter ?? null;
    /** The server's own sentence for a person, when it sent one. */
    this.serverMessage = typeof err.message === "string" && err.message ? err.message : null;
    /** 409 turn_in_progress names the answer being written, to follow it instead. */
    this.streamId = err.stream_id ?? headers?.get?.("X-Stream-Id") ?? null;
  }
}

/** The connection was lost and could not be resumed. */
export class StreamLostError extends Error {
  constructor(message, cause, { expired = false } = {}) {
    super(message);
    this.name = "StreamLostError";
    this.code = "connection_lost";
    this.cause = cause;
    /** The stream log is gone (404): the answer, if any, is in the session's history. */
    this.expired = expired;
  }
}

export const TERMINAL_TYPES = new Set(["complete", "error"]);

/** How often a quiet sluice stream sends ": ping" unless it says otherwise. */
export const DEFAULT_HEARTBEAT_MS = 15000;

/**
 * The reconnection policy: exponential backoff from the server's `retry:`
 * (or 1 s), doubling per attempt, capped, with ±20% jitter.
 * @param {number} attempt 1-based
 * @param {number} baseMs
 * @param {() => number} random
 */
export function backoffDelay(attempt, baseMs = 1000, random = Math.random) {
  const raw = Math.min(baseMs * 2 ** (attempt - 1), 15000);
  return Math.round(raw * (0.8 + 0.4 * random()));
}

/**
 * A wake-up call for a stream: the page fires it when the tab comes back
 * into view or the network returns, so a reconnect waiting out its backoff
 * goes now, and a connection that has been silent too long is replaced.
 */
export class Nudge {
  constructor() {
    this._waiters = new Set();
  }

  fire() {
    const waiters = [...this._waiters];
    this._waiters.clear();
    for (const w of waiters) w();
  }

  /** Calls `fn` once, at the next fire(); returns a function that forgets it. */
  once(fn) {
    this._waiters.add(fn);
    return () => this._waiters.delete(fn);
  }
}

function sleep(ms, signal, nudge) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(done, ms);
    const forget = nudge ? nudge.once(done) : () => {};
    function done() {
      clearTimeout(t);
      forget();
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }
    function onAbort() {
      clearTimeout(t);
      forget();
      reject(signal.reason);
    }
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

async function errorBody(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

/**
 * Open an event stream and yield its events, resuming across drops.
 *
 * Events are yielded as {type, id, data} with `data` JSON-parsed when it
 * parses (sluice always sends JSON). Ids are numbers rising by one; an
 * event whose id is not above the last one seen is a replay and is dropped,
 * and a gap ends the connection so the resume fills it: together these make
 * "no gap, no duplicate" hold even against a misbehaving server.
 *
 * A connection that delivers no byte (no event, no ": ping") for twice the
 * server's heartbeat interval has stalled without failing (a sleeping laptop,
 * a proxy that lost the upstream): it is dropped and resumed like any other.
 * The interval comes from the X-Heartbeat-Seconds response header.
 *
 * @param {object} opts
 * @param {string} [opts.url]            the first request; without it, follow `streamId`
 * @param {RequestInit} [opts.init]      its method, headers, body
 * @param {(streamId: string) => string} opts.resumeUrl  GET URL to resume
 * @param {string} [opts.streamId]       follow this stream from its first event
 *                                       (an answer already being written)
 * @param {number} [opts.maxRetries=5]   reconnect tries per drop
 * @param {AbortSignal} [opts.signal]    aborts everything
 * @param {(state: object) => void} [opts.onConnection]  connection state
 * @param {typeof fetch} [opts.fetch]
 * @param {(attempt: number, baseMs: number) => number} [opts.backoff]
 * @param {(signal?: AbortSignal) => Promise<boolean|void>} [opts.waitOnline]  resolves when
 *   online: true when it had to wait (then the reconnect goes without the backoff)
 * @param {Nudge} [opts.nudge]           reconnect now rather than after the backoff
 * @param {number} [opts.heartbeatMs]    until the server tells its own
 */
export async function* streamEvents(opts) {
  const {
    resumeUrl,
    maxRetries = 5,
    signal,
    onConnection = () => {},
    backoff = backoffDelay,
    waitOnline = defaultWaitOnline,
    nudge = null,
  } = opts;
  const fetchImpl = opts.fetch ?? globalThis.fetch.bind(globalThis);
  let streamId = opts.streamId ?? null;
  let lastId = 0; // numeric ids per docs/api.md: 1, 2, 3…
  let retryBase = 1000;
  let heartbeatMs = opts.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
  let attempt = 0; // tries since the last event received
  const resumeRequest = () => ({
    url: resumeUrl(streamId),
    init: {
      method: "GET",
      headers: lastId > 0
        ? { Accept: "text/event-stream", "Last-Event-ID": String(lastId) }
        : { Accept: "text/event-stream" },
      credentials: opts.init?.credentials,
    },
  });
  let request = opts.url ? { url: opts.url, init: opts.init ?? {} } : resumeRequest();

  for (;;) {
    onConnection({ state: attempt === 0 ? "connecting" : "reconnecting", attempt, maxRetries });
    // One controller per connection: the watchdog (or a nudge) aborts this
    // connection only, and the caller's signal aborts it too.
    const conn = new AbortController();
    const onOuterAbort = () => conn.abort(signal.reason);
    signal?.addEventListener("abort", onOuterAbort, { once: true });
    let lastByteAt = Date.now();
    let stalled = false;
    let watchdog = null;
    const arm = () => {
      clearTimeout(watchdog);
      lastByteAt = Date.now();
      watchdog = setTimeout(() => {
        stalled = true;
        conn.abort(new StreamLostError("The connection stalled: nothing arrived."));
      }, 2 * heartbeatMs);
    };
    // Back in view or back online: a connection silent for longer than a
    // heartbeat may be dead without knowing it; replace it now.
    const onNudge = () => {
      if (Date.now() - lastByteAt > heartbeatMs) {
        stalled = true;
        conn.abort(new StreamLostError("The connection went quiet."));
      } else forgetNudge = nudge.once(onNudge);
    };
    let forgetNudge = nudge ? nudge.once(onNudge) : () => {};
    arm();
    let response;
    let lost = null;
    try {
      try {
        response = await fetchImpl(request.url, { ...request.init, signal: conn.signal });
      } catch (err) {
        if (signal?.aborted) throw err;
        lost = err;
      }
      if (response && !lost) {
        const hb = Number(response.headers.get("X-Heartbeat-Seconds"));
        if (Number.isFinite(hb) && hb > 0) heartbeatMs = hb * 1000;
        arm();
      }
      if (response && !lost && !response.ok) {
        const body = await errorBody(response);
        const retryAfter = Number(response.headers.get("Retry-After")) || null;
        if (streamId !== null && response.status === 404) {
          throw new StreamLostError("The answer could not be resumed: it has expired.", null, {
            expired: true,
          });
        }
        if (streamId === null || response.status < 500) {
          throw new HttpError(response.status, body, retryAfter, response.headers);
        }
        lost = new HttpError(response.status, body, retryAfter, response.headers);
      }
      if (response && !lost && response.status === 204) {
        // The server says nothing will follow (it already sent the terminal
        // event, which we never saw): resuming again cannot help.
        throw new StreamLostError("The answer ended while the connection was down.", null, {
          expired: true,
        });
      }
      if (response && !lost) {
        streamId ??= response.headers.get("X-Stream-Id") || null;
        onConnection({ state: "open", attempt, maxRetries, streamId });
        const parser = new EventStreamParser();
        const reader = response.body.getReader();
        try {
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            arm();
            for (const ev of parser.push(value)) {
              const id = Number(ev.lastEventId);
              if (ev.lastEventId !== "" && Number.isInteger(id)) {
                if (id <= lastId) continue; // replayed: already delivered
                if (lastId > 0 && id > lastId + 1) {
                  throw new StreamLostError(`event ${lastId + 1} missing`);
                }
                lastId = id;
              }
              attempt = 0;
              let data = ev.data;
              try {
                data = JSON.parse(ev.data);
              } catch {
                /* not JSON: hand over the text */
              }
              if (streamId === null && data && typeof data.stream_id === "string") {
                streamId = data.stream_id;
              }
              yield { type: ev.type, id: lastId, data };
              if (TERMINAL_TYPES.has(ev.type)) {
                onConnection({ state: "closed", streamId });
                return;
              }
            }
            if (parser.retry !== null) retryBase = parser.retry;
          }
          parser.end();
          lost = new StreamLostError("The connection closed before the answer finished.");
        } catch (err) {
          if (signal?.aborted) throw err;
          lost = err;
        } finally {
          // Also runs when the consumer stops iterating: release the socket.
          reader.cancel().catch(() => {});
        }
      }
    } finally {
      clearTimeout(watchdog);
      forgetNudge();
      signal?.removeEventListener("abort", onOuterAbort);
    }
    // The connection is gone without a terminal event: resume if we can.
    if (streamId === null) {
      throw new StreamLostError("The connection was lost before the answer started.", lost);
    }
    attempt++;
    if (attempt > maxRetries) {
      onConnection({ state: "failed", attempt: attempt - 1, maxRetries, streamId });
      throw new StreamLostError("The connection was lost and could not be restored.", lost);
    }
    // A stall already waited twice the heartbeat: reconnect at once.
    const delay = stalled ? 0 : backoff(attempt, retryBase);
    onConnection({ state: "waiting", attempt, maxRetries, delay, streamId, stalled });
    // Back online after waiting for it: the cause of the drop is gone, go now.
    if (!(await waitOnline(signal))) await sleep(delay, signal, nudge);
    request = resumeRequest();
  }
}

function defaultWaitOnline(signal) {
  const nav = globalThis.navigator;
  if (!nav || nav.onLine !== false || typeof globalThis.addEventListener !== "function") {
    return Promise.resolve(false);
  }
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      globalThis.removeEventListener("online", onOnline);
      reject(signal.reason);
    };
    const onOnline = () => {
      signal?.removeEventListener("abort", onAbort);
      resolve(true);
    };
    globalThis.addEventListener("online", onOnline, { once: true });
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
