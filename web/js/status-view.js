// The small indicators around the conversation: connection state, the
// pipeline's current stage, what the session remembers, and suggestions.

const STAGE_LABELS = {
  rate_limit: "Checking limits",
  session: "Loading the conversation",
  intent: "Understanding your message",
  context: "Gathering context",
  llm: "Writing the answer",
};

export function stageLabel(stage) {
  return STAGE_LABELS[stage] ?? String(stage).replaceAll("_", " ");
}

const $ = (id) => document.getElementById(id);

export class ConnectionIndicator {
  constructor() {
    this.el = $("connection");
    this.text = $("connection-text");
    this.state = "idle";
    globalThis.addEventListener("online", () => this._refresh());
    globalThis.addEventListener("offline", () => this._refresh());
    this._refresh();
  }

  /** state from sse.js onConnection, or "idle". */
  set(info) {
    this.state = info.state;
    this.info = info;
    this._refresh();
  }

  _refresh() {
    const info = this.info ?? {};
    let state = this.state;
    let text;
    if (navigator.onLine === false) {
      state = "offline";
      text = this.state === "idle" ? "Offline" : "Offline: waiting for the network…";
    } else {
      switch (state) {
        case "connecting":
          text = "Connecting…";
          break;
        case "open":
          text = info.attempt > 0 ? "Reconnected" : "Live";
          break;
        case "waiting":
          text = `Connection lost: retrying (${info.attempt} of ${info.maxRetries})…`;
          break;
        case "reconnecting":
          text = `Reconnecting (${info.attempt} of ${info.maxRetries})…`;
          break;
        case "failed":
          text = "Disconnected";
          break;
        default:
          state = "idle";
          text = "Ready";
      }
    }
    this.el.dataset.state = state;
    this.text.textContent = text;
  }
}

export class StageStatus {
  constructor() {
    this.el = $("status-line");
    this.label = $("stage-label");
    this.bar = $("progress-bar");
    this.pct = $("progress-text");
    this.progress = 0;
    this.writingFrom = null; // progress when the llm stage started
  }

  waiting(text) {
    this.el.hidden = false;
    this.el.dataset.indeterminate = "true";
    this.label.textContent = text;
    this.pct.textContent = "";
    this.bar.style.width = "0%";
  }

  update({ stage, state, progress }) {
    this.el.hidden = false;
    delete this.el.dataset.indeterminate;
    // progress never decreases (docs/api.md); hold it if a server disagrees
    if (typeof progress === "number") this.progress = Math.max(this.progress, progress);
    if (stage === "llm" && state === "start") this.writingFrom = this.progress;
    this.label.textContent = state === "done" && stage !== "llm"
      ? `${stageLabel(stage)} ✓`
      : `${stageLabel(stage)}…`;
    this._paint();
  }

  /** Say what the turn waits on (a tool, a decision) without moving the bar. */
  say(text) {
    if (this.el.hidden) return;
    this.label.textContent = text;
  }

  /**
   * The answer is being written: the llm stage's share of the bar fills as
   * text arrives. How long the answer will be is unknown, so the share
   * fills along a curve that never reaches its end (half of it at 600
   * characters); `complete` takes it to 100.
   * @param {number} chars characters received so far
   */
  writing(chars) {
    if (this.writingFrom === null || this.el.hidden) return;
    const share = 100 - this.writingFrom;
    const filled = share * (chars / (chars + 600));
    this.progress = Math.max(this.progress, Math.min(99, this.writingFrom + filled));
    this._paint();
  }

  _paint() {
    this.pct.textContent = `${Math.floor(this.progress)}%`;
    this.bar.style.width = `${this.progress}%`;
    this.el.dataset.progress = String(Math.floor(this.progress));
  }

  hide() {
    this.el.hidden = true;
    this.progress = 0;
    this.writingFrom = null;
  }
}

function describeValue(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "object") {
    return Array.isArray(value) ? value.map(describeValue).join(", ") : JSON.stringify(value);
  }
  return String(value);
}

// What the session remembers, in a person's words. Keys and intent names are
// the pipeline's identifiers ("last_intent: find_restaurant"): known ones get
// a label, unknown ones lose their underscores, and intents that say nothing
// about the conversation (a greeting, small talk) are not shown.
const CONTEXT_LABELS = { last_intent: "topic" };
const TOPIC_LABELS = { find_restaurant: "restaurants", weather: "weather" };
const SILENT_TOPICS = new Set(["chat", "greeting"]);

function humanize(identifier) {
  return String(identifier).replaceAll("_", " ").trim();
}

/** [label, value] pairs to show for a session's remembered context. */
export function describeContext(context) {
  const out = [];
  for (const [key, raw] of Object.entries(context ?? {})) {
    let value = describeValue(raw);
    if (value === "") continue;
    if (key === "last_intent") {
      if (SILENT_TOPICS.has(value)) continue;
      value = TOPIC_LABELS[value] ?? humanize(value);
    }
    out.push([CONTEXT_LABELS[key] ?? humanize(key), value]);
  }
  return out;
}

/** "location: Tokyo" chips from the session's remembered context. */
export function renderContext(context) {
  const bar = $("context-bar");
  const list = $("context-items");
  const entries = describeContext(context);
  list.replaceChildren(
    ...entries.map(([label, value]) => {
      const li = document.createElement("li");
      li.className = "context-item";
      li.dir = "auto";
      li.textContent = `${label}: ${value}`;
      return li;
    }),
  );
  bar.hidden = entries.length === 0;
}

/** Suggestion buttons; a click sends the suggestion as the next message. */
export function renderSuggestions(suggestions, onPick) {
  const box = $("suggestions");
  const items = (suggestions ?? []).filter((s) => typeof s === "string" && s.trim());
  box.replaceChildren(
    ...items.map((text) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "suggestion";
      b.dir = "auto";
      b.textContent = text;
      b.addEventListener("click", () => onPick(text));
      return b;
    }),
  );
  box.hidden = items.length === 0;
}
