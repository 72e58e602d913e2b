// The typewriter's pacing, on a fake clock: steady, pausing at sentence
// ends, catching up when behind, never dropping, reordering or splitting a
// character.
import { test } from "node:test";
import assert from "node:assert/strict";
import { DEFAULTS, pauseAfter, step, Typewriter } from "../../web/js/typewriter.js";

/** A manual animation-frame scheduler with a clock. */
function fakeFrames() {
  let now = 0;
  let queue = [];
  return {
    scheduler: { request: (cb) => queue.push(cb), now: () => now },
    /** run frames of `ms` each until idle or `max` frames */
    run(ms = 16, max = 10000) {
      let n = 0;
      while (queue.length && n < max) {
        now += ms;
        const q = queue;
        queue = [];
        for (const cb of q) cb(now);
        n++;
      }
      return n;
    },
    get pending() { return queue.length; },
  };
}

test("reveals at least the floor pace, smoothly", () => {
  const s = step({ text: "x".repeat(10), shown: 0, pauseMs: 0, carry: 0, finished: false }, 100);
  // backlog 10 / 0.35 s is below the floor of 90 cps: 9 characters in 100 ms
  assert.equal(s.shown, 9);
});

test("falls behind -> speeds up to drain the backlog in about catchUpSeconds", () => {
  const text = "y".repeat(3500);
  const s = step({ text, shown: 0, pauseMs: 0, carry: 0, finished: false }, 50);
  // 3500 / 0.35 = 10000 cps -> 500 characters in 50 ms
  assert.equal(s.shown, 500);
});

test("pauses after a sentence end while keeping up, not when behind", () => {
  assert.equal(pauseAfter("Hi. There", 3), DEFAULTS.sentencePauseMs);
  assert.equal(pauseAfter("a\n\nb", 2), DEFAULTS.paragraphPauseMs);
  assert.equal(pauseAfter("3.14", 2), 0);
  assert.equal(pauseAfter("مرحبا؟ نعم", 6), DEFAULTS.sentencePauseMs);
  const small = step({ text: "Hi. There", shown: 0, pauseMs: 0, carry: 0, finished: false }, 100);
  assert.equal(small.shown, 3);
  assert.equal(small.pauseMs, DEFAULTS.sentencePauseMs);
  const behind = "Hi. " + "z".repeat(200);
  const big = step({ text: behind, shown: 0, pauseMs: 0, carry: 0, finished: false }, 100);
  assert.ok(big.shown > 4, "no pause while behind");
  // an ongoing pause holds the text back until it runs out
  const held = step({ text: "Hi. There", shown: 3, pauseMs: 140, carry: 0, finished: false }, 50);
  assert.deepEqual([held.shown, held.pauseMs], [3, 90]);
});

test("never splits a surrogate pair", () => {
  const text = "😀😀😀😀😀";
  for (let dt = 1; dt < 60; dt++) {
    const s = step({ text, shown: 0, pauseMs: 0, carry: 0, finished: false }, dt);
    assert.equal(s.shown % 2, 0, `dt=${dt} shown=${s.shown}`);
  }
});

test("Typewriter: renders prefixes only, ends with every character in order", async () => {
  const f = fakeFrames();
  const renders = [];
  const tw = new Typewriter((text, info) => renders.push([text, info.done]), { scheduler: f.scheduler });
  const pieces = ["Hel", "lo, wor", "ld! ", "مرحبا ", "👋🏽", " and more text. ", "x".repeat(300)];
  const full = pieces.join("");
  pieces.forEach((p, i) => {
    tw.push(p);
    f.run(16, 2 + i); // a few frames between network reads
  });
  tw.finish(full);
  f.run(16);
  await tw.done;
  assert.ok(renders.length > 5, `several paints, got ${renders.length}`);
  let prev = "";
  for (const [text] of renders) {
    assert.ok(full.startsWith(text), "every paint is a prefix of the answer");
    assert.ok(text.length >= prev.length, "never goes backwards");
    prev = text;
  }
  assert.deepEqual(renders.at(-1), [full, true]);
  assert.equal(f.pending, 0, "no frames requested once done");
});

test("Typewriter: one render per frame however many chunks arrive", () => {
  const f = fakeFrames();
  let renders = 0;
  const tw = new Typewriter(() => renders++, { scheduler: f.scheduler });
  for (let i = 0; i < 50; i++) tw.push("word ");
  assert.equal(f.pending, 1, "a single frame is scheduled");
  f.run(16, 1);
  assert.equal(renders, 1);
});

test("Typewriter: idle when caught up, no frames wasted", () => {
  const f = fakeFrames();
  const tw = new Typewriter(() => {}, { scheduler: f.scheduler });
  tw.push("ab");
  f.run(16);
  assert.equal(f.pending, 0);
  assert.equal(tw.shown, 2);
});

test("Typewriter: finish() with a longer final message keeps every character", async () => {
  const f = fakeFrames();
  let last = "";
  const tw = new Typewriter((t) => { last = t; }, { scheduler: f.scheduler });
  tw.push("Hello");
  tw.finish("Hello world");
  f.run(16);
  await tw.done;
  assert.equal(last, "Hello world");
});

test("Typewriter: flush() shows everything at the next frame", async () => {
  const f = fakeFrames();
  let last = "";
  const tw = new Typewriter((t) => { last = t; }, { scheduler: f.scheduler });
  tw.push("a".repeat(1000));
  tw.flush();
  f.run(16, 1);
  await tw.done;
  assert.equal(last.length, 1000);
});

test("Typewriter: a scheduler that says instant (hidden tab, reduced motion) shows each burst whole", () => {
  const f = fakeFrames();
  const renders = [];
  const scheduler = { ...f.scheduler, instant: () => true };
  const tw = new Typewriter((t) => renders.push(t.length), { scheduler });
  tw.push("a".repeat(1000));
  f.run(16, 1);
  tw.push("b".repeat(500));
  f.run(16, 1);
  assert.deepEqual(renders, [1000, 1500], "one render a burst, all of it");
  assert.equal(f.pending, 0);
});
