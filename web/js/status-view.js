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
    this.label.textContent = state === "done" && stage !== "llm"
      ? `${stageLabel(stage)} ✓`
      : `${stageLabel(stage)}…`;
    this.pct.textContent = `${Math.round(this.progress)}%`;
    this.bar.style.width = `${this.progress}%`;
  }

  hide() {
    this.el.hidden = true;
    this.progress = 0;
  }
}

function describeValue(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "object") {
    return Array.isArray(value) ? value.map(describeValue).join(", ") : JSON.stringify(value);
  }
  return String(value);
}

/** "location: Tokyo" chips from the session's remembered context. */
export function renderContext(context) {
  const bar = $("context-bar");
  const list = $("context-items");
  const entries = Object.entries(context ?? {}).filter(([, v]) => describeValue(v) !== "");
  list.replaceChildren(
    ...entries.map(([key, value]) => {
      const li = document.createElement("li");
      li.className = "context-item";
      li.dir = "auto";
      li.textContent = `${key.replaceAll("_", " ")}: ${describeValue(value)}`;
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
