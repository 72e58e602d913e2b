// One message in the list. User messages are plain text; answers are
// Markdown, revealed by the typewriter and rendered incrementally, at most
// once per animation frame.

import { IncrementalMarkdown } from "./markdown.js";
import { Typewriter } from "./typewriter.js";
import { formatWait } from "./errors.js";
import { StepsView } from "./steps-view.js";

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A message of the person's: its text, and the pictures sent with it ({url, name}). */
export function userMessage(text, pictures = []) {
  const li = el("li", "message user");
  li.dataset.role = "user";
  li.append(el("span", "visually-hidden", "You said:"));
  if (pictures.length) {
    const row = el("div", "pictures");
    for (const { url, name } of pictures) {
      const img = el("img");
      img.src = url;
      img.alt = name;
      img.loading = "lazy";
      row.append(img);
    }
    li.append(row);
  }
  if (text || !pictures.length) {
    const bubble = el("div", "bubble");
    const content = el("div", "content plain", text);
    content.dir = "auto";
    bubble.append(content);
    li.append(bubble);
  }
  return li;
}

export class AnswerView {
  /**
   * @param {{onPaint?: () => void}} [hooks] onPaint runs after each render
   */
  constructor(hooks = {}) {
    this.onPaint = hooks.onPaint ?? (() => {});
    this.raw = "";
    /** Posts a decision on a tool call; set by whoever follows the turn's stream. */
    this.decideTool = null;
    this.li = el("li", "message assistant");
    this.li.dataset.role = "assistant";
    this.li.dataset.status = "pending";
    const bubble = el("div", "bubble");
    this.content = el("div", "content markdown");
    this.content.dir = "auto";
    this.typing = el("div", "typing");
    this.typing.setAttribute("aria-label", "Waiting for the answer");
    this.typing.append(el("span"), el("span"), el("span"));
    this.note = el("p", "message-note");
    this.note.hidden = true;
    this.steps = new StepsView({
      onDecide: (callId, approve) => {
        if (!this.decideTool) return Promise.reject(new Error("not following this answer"));
        return this.decideTool(callId, approve);
      },
      onChange: () => {
        this._showTyping();
        this.onPaint();
      },
    });
    bubble.append(this.steps.list, this.content, this.typing, this.note);
    this.meta = el("div", "message-meta");
    this.metaText = el("span", "meta-text");
    this.copyButton = el("button", "meta-button copy", "Copy");
    this.copyButton.type = "button";
    this.copyButton.addEventListener("click", () => this._copy());
    this.copyButton.hidden = true;
    this.retryButton = el("button", "meta-button retry", "Retry");
    this.retryButton.type = "button";
    this.retryButton.hidden = true;
    this.meta.append(this.metaText, this.copyButton, this.retryButton);
    this.li.append(el("span", "visually-hidden", "Answer:"), bubble, this.meta);
    this.markdown = new IncrementalMarkdown(this.content);
    this.typewriter = null;
  }

  _startTypewriter() {
    this.typewriter ??= new Typewriter((text, { done }) => {
      if (done) this.markdown.finish(text);
      else this.markdown.update(text);
      this.onPaint();
    });
    return this.typewriter;
  }

  /** Dots while nothing shows progress: no text yet, and no call waiting for the reader. */
  _showTyping() {
    if (!["pending", "streaming"].includes(this.li.dataset.status)) return;
    this.typing.hidden = this.raw !== "" || this.steps.awaitingApproval();
  }

  /** Streaming: a tool call, a tool result or reasoning. */
  step(type, data) {
    this.steps.apply(type, data);
  }

  /** Streaming: the next piece of the answer. */
  push(content) {
    if (!content) return;
    this.steps.apply("chunk", null);
    this.raw += content;
    this.typing.hidden = true;
    this.li.dataset.status = "streaming";
    this._startTypewriter().push(content);
  }

  /** The answer is complete: type out the rest, then settle. */
  async complete(message, meta) {
    if (typeof message === "string" && message.startsWith(this.raw)) this.raw = message;
    this.typing.hidden = true;
    const tw = this._startTypewriter();
    this.steps.end();
    tw.finish(this.raw);
    await tw.done;
    this.li.dataset.status = "complete";
    this.copyButton.hidden = this.raw === "";
    this._setMeta(meta);
  }

  /**
   * Show a whole answer at once (history, streaming off), with the tool
   * calls and results of its parts when it has some.
   */
  show(text, status = "complete", meta = null, parts = null) {
    this.raw = text ?? "";
    this.steps.applyParts(parts);
    this.steps.end();
    this.typing.hidden = true;
    this.markdown.finalize(this.raw);
    this.li.dataset.status = status;
    this.copyButton.hidden = this.raw === "";
    if (status === "incomplete") this._showNote("This answer was not finished.", "incomplete");
    if (status === "error" && !this.raw) this._showNote("This answer failed.", "error");
    this._setMeta(meta);
    this.onPaint();
  }

  /**
   * The turn failed or was stopped: keep what arrived, say what happened.
   * @param {{code: string, text: string, retryable: boolean, retryAfter: number|null}} desc
   * @param {(() => void) | null} onRetry
   */
  fail(desc, onRetry) {
    this.typing.hidden = true;
    this.steps.end();
    if (this.typewriter) this.typewriter.flush();
    else if (this.raw) this.markdown.finalize(this.raw);
    this.li.dataset.status = desc.code === "cancelled" ? "stopped" : "error";
    this.copyButton.hidden = this.raw === "";
    const kind = desc.code === "cancelled" ? "stopped" : "error";
    this._showNote(desc.text, kind);
    if (desc.retryable && onRetry) this._offerRetry(desc, onRetry);
    this.onPaint();
  }

  _showNote(text, kind) {
    this.note.hidden = false;
    this.note.dataset.kind = kind;
    this.note.textContent = text;
    if (kind === "error") this.note.setAttribute("role", "alert");
  }

  _offerRetry(desc, onRetry) {
    const btn = this.retryButton;
    btn.hidden = false;
    btn.onclick = () => {
      btn.disabled = true;
      onRetry();
    };
    if (!desc.retryAfter) return;
    // Count down on the button; the sentence keeps the first figure.
    let left = Math.ceil(desc.retryAfter);
    btn.disabled = true;
    btn.textContent = `Retry in ${formatWait(left)}`;
    const timer = setInterval(() => {
      left -= 1;
      if (left <= 0 || !btn.isConnected) {
        clearInterval(timer);
        btn.disabled = false;
        btn.textContent = "Retry";
      } else {
        btn.textContent = `Retry in ${formatWait(left)}`;
      }
    }, 1000);
  }

  _setMeta(meta) {
    if (!meta) return;
    const parts = [];
    if (meta.provider === "demo") parts.push("demo answer");
    else if (meta.provider) parts.push(meta.model ? `${meta.provider} · ${meta.model}` : meta.provider);
    if (meta.fallback) parts.push("via fallback");
    this.metaText.textContent = parts.join(" · ");
  }

  async _copy() {
    const btn = this.copyButton;
    try {
      await navigator.clipboard.writeText(this.raw);
      btn.textContent = "Copied";
    } catch {
      // No clipboard permission: select the answer so Ctrl+C works.
      const range = document.createRange();
      range.selectNodeContents(this.content);
      const sel = getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      btn.textContent = "Selected: press Ctrl+C";
    }
    setTimeout(() => {
      btn.textContent = "Copy";
    }, 1800);
  }
}
