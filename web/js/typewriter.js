// The typewriter: reveals streamed text at a readable, even pace.
//
// Network chunks arrive in bursts; painting them as they land looks jumpy.
// The typewriter keeps everything received (`target`) and how much of it is
// shown (`shown`, always a prefix of target: text is never dropped or
// reordered). Each animation frame reveals a few more characters:
//
// - at least `cps` characters per second;
// - faster when it falls behind, so the backlog drains in about
//   `catchUpSeconds` (a burst never leaves the reader far behind);
// - with a short pause after a sentence or a paragraph ends, only while it is
//   keeping up (pauses are skipped when there is a backlog to clear);
// - never inside a surrogate pair (an emoji or rare CJK character is shown
//   whole).
//
// Nobody watches a hidden tab type, and a reader who asked the system for
// reduced motion does not want to: for both, each frame shows all received.
//
// Rendering is coalesced: onRender runs at most once per frame, with the
// shown text, and never while nothing changed.

export const DEFAULTS = Object.freeze({
  cps: 90, // floor pace, characters per second
  catchUpSeconds: 0.35, // drain a backlog within about this long
  sentencePauseMs: 140,
  paragraphPauseMs: 220,
  pauseBacklog: 40, // pause only when fewer characters than this wait
  maxFrameMs: 100, // a long frame (tab in background) counts as this
});

const SENTENCE_END = /[.!?。！？؟…]/;

/**
 * How long to pause after revealing text up to `index` (exclusive).
 * Pure. Returns 0 when the character just shown does not end a sentence.
 */
export function pauseAfter(text, index, opts = DEFAULTS) {
  if (index <= 0 || index >= text.length) return 0;
  const prev = text[index - 1];
  const next = text[index];
  if (prev === "\n" && next === "\n") return opts.paragraphPauseMs;
  if (SENTENCE_END.test(prev) && (next === " " || next === "\n")) return opts.sentencePauseMs;
  return 0;
}

/**
 * One step of pacing. Pure: given the state and the elapsed time, returns
 * the new shown length and the pause still to wait.
 * @param {{text: string, shown: number, pauseMs: number, carry: number, finished: boolean}} s
 * @param {number} dtMs time since the last step
 */
export function step(s, dtMs, opts = DEFAULTS) {
  const dt = Math.min(Math.max(dtMs, 0), opts.maxFrameMs);
  const backlog = s.text.length - s.shown;
  if (backlog <= 0) return { shown: s.shown, pauseMs: 0, carry: 0 };
  let pauseMs = s.pauseMs;
  let budgetMs = dt;
  if (pauseMs > 0) {
    if (backlog >= opts.pauseBacklog || s.finished) {
      pauseMs = 0; // behind, or the answer is all here: no dawdling
    } else {
      const used = Math.min(pauseMs, budgetMs);
      pauseMs -= used;
      budgetMs -= used;
      if (pauseMs > 0) return { shown: s.shown, pauseMs, carry: s.carry };
    }
  }
  const rate = Math.max(opts.cps, backlog / opts.catchUpSeconds); // chars per second
  const exact = s.carry + (rate * budgetMs) / 1000;
  let n = Math.floor(exact);
  const carry = exact - n;
  if (n <= 0) return { shown: s.shown, pauseMs, carry };
  let shown = s.shown;
  const limit = Math.min(s.text.length, shown + n);
  // Reveal up to `limit`, stopping at the first sentence end while keeping up.
  while (shown < limit) {
    shown++;
    const code = s.text.charCodeAt(shown - 1);
    if (code >= 0xd800 && code <= 0xdbff && shown < s.text.length) shown++;
    if (backlog < opts.pauseBacklog && !s.finished) {
      const p = pauseAfter(s.text, shown, opts);
      if (p > 0) return { shown, pauseMs: p, carry: 0 };
    }
  }
  return { shown, pauseMs: 0, carry };
}

function defaultScheduler() {
  const g = globalThis;
  if (typeof g.requestAnimationFrame === "function") {
    // A background tab gets no animation frames: fall back to a timer there,
    // and show everything at once (nobody is watching it type).
    const hidden = () => g.document?.visibilityState === "hidden";
    const reducedMotion = g.matchMedia?.("(prefers-reduced-motion: reduce)");
    return {
      request: (cb) => (hidden() ? setTimeout(() => cb(g.performance.now()), 50) : g.requestAnimationFrame(cb)),
      now: () => g.performance.now(),
      instant: () => hidden() || reducedMotion?.matches === true,
    };
  }
  return {
    request: (cb) => setTimeout(() => cb(Date.now()), 16),
    now: () => Date.now(),
  };
}

export class Typewriter {
  /**
   * @param {(text: string, info: {done: boolean}) => void} onRender
   * @param {{scheduler?: {request: Function, now: Function}, options?: object}} [config]
   */
  constructor(onRender, config = {}) {
    this.onRender = onRender;
    this.scheduler = config.scheduler ?? defaultScheduler();
    this.options = { ...DEFAULTS, ...(config.options ?? {}) };
    this.text = "";
    this.shown = 0;
    this.finished = false;
    this._pauseMs = 0;
    this._carry = 0;
    this._scheduled = false;
    this._last = null;
    this._rendered = -1;
    this._resolveDone = null;
    this.done = new Promise((resolve) => {
      this._resolveDone = resolve;
    });
  }

  /** Append received text. */
  push(text) {
    if (!text) return;
    this.text += text;
    this._schedule();
  }

  /** No more text will come; resolves `done` once everything is shown. */
  finish(finalText) {
    // The complete event carries the whole message: if it holds more than
    // the chunks did (it must not, but never lose text), take it.
    if (typeof finalText === "string" && finalText.startsWith(this.text)) {
      this.text = finalText;
    }
    this.finished = true;
    this._schedule();
  }

  /** Show everything received now (stop, error, hidden tab). */
  flush() {
    this.finished = true;
    this.shown = this.text.length;
    this._schedule();
  }

  _schedule() {
    if (this._scheduled) return;
    this._scheduled = true;
    this.scheduler.request(() => this._frame());
  }

  _frame() {
    this._scheduled = false;
    const now = this.scheduler.now();
    const dt = this._last === null ? 16 : now - this._last;
    this._last = now;
    if (this.scheduler.instant?.()) this.shown = this.text.length;
    const next = step(
      {
        text: this.text,
        shown: this.shown,
        pauseMs: this._pauseMs,
        carry: this._carry,
        finished: this.finished,
      },
      dt,
      this.options,
    );
    this.shown = next.shown;
    this._pauseMs = next.pauseMs;
    this._carry = next.carry;
    const caughtUp = this.shown >= this.text.length;
    const done = caughtUp && this.finished;
    if (this.shown !== this._rendered || done) {
      this._rendered = this.shown;
      this.onRender(this.text.slice(0, this.shown), { done });
    }
    if (done) {
      this._resolveDone();
      return;
    }
    if (!caughtUp) this._schedule();
    else this._last = null; // idle until more text: the next frame starts fresh
  }
}
