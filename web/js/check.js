// The connection check: is something between this browser and the server
// buffering or compressing event streams? GET /api/check-stream sends timed
// `tick` events with the server's elapsed time in each and ": ping" comments
// between them; noting when each arrives tells the answer. The same check runs
// from a terminal (`python -m server check URL`) with the same thresholds.

import { EventStreamParser } from "./sse.js";

// An event is late when it arrives this much later than the earliest did,
// relative to when each was sent; bursts are arrivals closer together than a
// quarter of the sending interval.
export const LATE_MS = 400;

function seconds(ms) {
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

/**
 * The verdict, from what arrived when. Pure.
 * @param {{arrivals: {seq: number, sentMs: number, arrivedMs: number}[],
 *   expected: number, intervalMs: number, encoding: string | null,
 *   finished: boolean, pingsSent: number | null, pingsReceived: number}} run
 * @returns {{verdict: string, lines: string[], maxDelayMs: number, bursts: number}}
 */
export function analyse(run) {
  const { arrivals, expected, intervalMs, encoding, finished, pingsSent, pingsReceived } = run;
  let maxDelayMs = 0;
  let bursts = 0;
  if (arrivals.length) {
    const lags = arrivals.map((a) => a.arrivedMs - a.sentMs);
    const base = Math.min(...lags);
    maxDelayMs = Math.max(...lags.map((l) => l - base));
    bursts = 1;
    for (let i = 1; i < arrivals.length; i++) {
      if (arrivals[i].arrivedMs - arrivals[i - 1].arrivedMs >= intervalMs / 4) bursts++;
    }
  }
  const late = maxDelayMs > Math.max(LATE_MS, intervalMs);
  const compressed = (encoding || "identity").toLowerCase() !== "identity";
  const got = `${arrivals.length} of ${expected} events`;
  const lines = [];
  let verdict = "streaming";
  if (!finished) {
    verdict = "cut";
    lines.push(`The stream was cut off: ${got} arrived before the connection ended. `
      + "Something in front of the server ends long responses (an idle or total timeout).");
  } else if (compressed) {
    verdict = "compressed";
    lines.push(`The stream arrives compressed (Content-Encoding: ${encoding}): something in front `
      + "of the server compresses text/event-stream, which holds events back.");
    if (late) lines.push(`They were also late: the latest by ${seconds(maxDelayMs)}.`);
  } else if (late) {
    verdict = "buffered";
    const b = bursts === 1 ? "one burst" : `${bursts} bursts`;
    lines.push(`Events arrive late, in ${b}: something in front of the server buffers the stream. `
      + `The latest event was ${seconds(maxDelayMs)} behind.`);
  } else {
    lines.push(`Events arrive at once: ${got} came as they were sent `
      + `(none more than ${seconds(maxDelayMs)} behind).`);
  }
  if (pingsSent) {
    if (pingsReceived >= pingsSent) lines.push(`Heartbeats pass: ${pingsReceived} of ${pingsSent} arrived.`);
    else if (pingsReceived === 0) {
      lines.push(`Heartbeats do not pass: none of ${pingsSent} arrived, so a quiet answer may be cut by an idle timeout.`);
    } else lines.push(`Some heartbeats were lost: ${pingsReceived} of ${pingsSent} arrived.`);
  }
  if (verdict !== "streaming") {
    lines.push("What to change is in the server's docs/deploy.md, under “Connection check”.");
  }
  return { verdict, lines, maxDelayMs, bursts };
}

/**
 * Run the check against this page's server.
 * @param {{events?: number, intervalMs?: number, signal?: AbortSignal,
 *          onTick?: (seq: number, of: number) => void, fetch?: typeof fetch}} [opts]
 */
export async function runCheck(opts = {}) {
  const { events = 10, intervalMs = 500, signal, onTick = () => {} } = opts;
  const fetchImpl = opts.fetch ?? globalThis.fetch.bind(globalThis);
  const started = performance.now();
  const arrivals = [];
  let finished = false;
  let pingsSent = null;
  let encoding = null;
  const parser = new EventStreamParser();
  try {
    const response = await fetchImpl(
      `/api/check-stream?events=${events}&interval_ms=${intervalMs}`,
      { headers: { Accept: "text/event-stream" }, cache: "no-store", signal },
    );
    if (!response.ok) {
      return { verdict: "failed", lines: [`The server answered ${response.status} to the check.`] };
    }
    encoding = response.headers.get("Content-Encoding");
    const reader = response.body.getReader();
    while (!finished) {
      const { value, done } = await reader.read();
      if (done) break;
      const now = performance.now() - started;
      for (const ev of parser.push(value)) {
        const data = JSON.parse(ev.data);
        if (data.type === "tick") {
          arrivals.push({ seq: data.seq, sentMs: data.elapsed_ms, arrivedMs: now });
          onTick(data.seq, events);
        } else if (data.type === "done") {
          finished = true;
          pingsSent = data.pings;
        }
      }
    }
    reader.cancel().catch(() => {});
  } catch (err) {
    if (signal?.aborted) throw err;
    if (!arrivals.length) {
      return { verdict: "failed", lines: ["The check could not reach the server (the network?)."] };
    }
  }
  return analyse({
    arrivals, expected: events, intervalMs, encoding, finished, pingsSent, pingsReceived: parser.pings,
  });
}
