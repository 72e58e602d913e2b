// Parse speed of the page's event-stream parser on a large sluice stream.
//
//   node bench/sse_parser.mjs [module.js ...]
//
// Each module must export EventStreamParser (push(bytes) -> events, end()),
// as web/js/sse.js does; the default is that one. To weigh the parser against
// an earlier one, pass both, e.g. the hand-written parser eventsource-parser
// replaced:
//
//   git show d81522c:web/js/sse.js > /tmp/sse-hand.js
//   node bench/sse_parser.mjs web/js/sse.js /tmp/sse-hand.js
//
// The stream: 20,000 chunk frames as the server writes them (id, event, one
// line of JSON, some of it Arabic, Japanese or emoji) with a ": ping" every
// 500, fed as bytes two ways: one read per frame (a live answer) and 64 KiB
// reads (a resume replaying the log). Rounds alternate between the modules,
// and their order, so a busy moment hits each alike; the figure is the
// median, in ms.
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const FRAMES = 20000;
const ROUNDS = 9;
const TEXTS = ["Hel", "lo", ", how", " can I help", " you today?", "\\n\\n", " مرحبا", " 日本語の", " 👩🏽‍💻"];

const paths = process.argv.slice(2);
if (paths.length === 0) paths.push("web/js/sse.js");
const parsers = [];
for (const path of paths) {
  const module = await import(pathToFileURL(resolve(path)).href);
  parsers.push({ path, Parser: module.EventStreamParser });
}

const frames = ["retry: 2000\n\n"];
for (let i = 1; i <= FRAMES; i++) {
  frames.push(`id: ${i}\nevent: chunk\ndata: {"type":"chunk","content":"${TEXTS[i % TEXTS.length]}"}\n\n`);
  if (i % 500 === 0) frames.push(": ping\n\n");
}
const encoder = new TextEncoder();
const perFrame = frames.map((f) => encoder.encode(f));
const whole = encoder.encode(frames.join(""));
const bigReads = [];
for (let at = 0; at < whole.length; at += 65536) bigReads.push(whole.subarray(at, at + 65536));

function run(Parser, reads) {
  const started = process.hrtime.bigint();
  const parser = new Parser();
  let events = 0;
  for (const read of reads) events += parser.push(read).length;
  parser.end();
  if (events !== FRAMES) throw new Error(`${events} events parsed, ${FRAMES} sent`);
  return Number(process.hrtime.bigint() - started) / 1e6;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
console.log(`${FRAMES} frames, ${(whole.length / 1e6).toFixed(2)} MB, ${ROUNDS} rounds, ms median [min-max]`);
for (const [name, reads] of [["one read per frame", perFrame], ["64 KiB reads", bigReads]]) {
  const times = parsers.map(() => []);
  for (let round = -3; round < ROUNDS; round++) {
    // Alternate the order too: the module run first in a round was slower.
    const order = parsers.map((_, i) => i);
    if (round % 2) order.reverse();
    for (const i of order) {
      const ms = run(parsers[i].Parser, reads);
      if (round >= 0) times[i].push(ms); // the first three warm the JIT
    }
  }
  const base = median(times[0]);
  parsers.forEach(({ path }, i) => {
    const m = median(times[i]);
    const range = `[${Math.min(...times[i]).toFixed(1)}-${Math.max(...times[i]).toFixed(1)}]`;
    const ratio = i === 0 ? "" : `  ${(m / base).toFixed(2)} x ${parsers[0].path}`;
    console.log(`${name.padEnd(20)} ${path.padEnd(24)} ${m.toFixed(1).padStart(6)} ${range}${ratio}`);
  });
}
