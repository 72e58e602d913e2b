// The steps of an answer on the page: each tool call is a <details>
// (collapsed), its summary saying what and how it went; a call waiting for
// approval has Allow and Deny beside it. Each stretch of reasoning looks the
// same but is a disclosure button (aria-expanded) over its text: its label
// changes as it streams ("Thinking…", then "Thought for 4 s"), and a button
// announces both the label and the expanded state wherever it is read.
//
// Names, arguments, results and reasoning are set with textContent only:
// they come from the model and from tools, and are never parsed as HTML.

import {
  StepLog, formatArguments, reasoningLabel, toolPhase, toolStatusText,
} from "./tool-steps.js";

let reasoningIds = 0; // for aria-controls: unique on the page

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export class StepsView {
  /**
   * @param {{onDecide?: (callId: string, approve: boolean) => Promise<void>,
   *   onChange?: () => void}} [hooks] onDecide posts the decision (rejects
   *   with the HTTP error); onChange runs after the steps changed
   */
  constructor(hooks = {}) {
    this.onDecide = hooks.onDecide ?? null;
    this.onChange = hooks.onChange ?? (() => {});
    this.log = new StepLog();
    this.list = el("ol", "steps");
    this.list.setAttribute("aria-label", "Steps");
    this.list.hidden = true;
    /** @type {Map<object, HTMLElement>} step -> its <li> */
    this._items = new Map();
  }

  /** A stream event; returns true when it was a step event. */
  apply(type, data) {
    const changed = this.log.apply(type, data);
    for (const step of changed) this._render(step);
    if (changed.length) this.onChange();
    return type === "tool_call" || type === "tool_result" || type === "reasoning";
  }

  /** A saved message's parts. */
  applyParts(parts) {
    this.log.applyParts(parts);
    for (const step of this.log.steps) this._render(step);
  }

  /** The turn ended: close reasoning still open; nothing can be decided any more. */
  end() {
    for (const step of this.log.apply("end", null)) this._render(step);
    for (const li of this._items.values()) li.querySelector(".step-approval")?.remove();
  }

  awaitingApproval() {
    return this.log.awaitingApproval();
  }

  _render(step) {
    let li = this._items.get(step);
    if (!li) {
      li = step.kind === "tool" ? this._toolItem(step) : this._reasoningItem();
      this._items.set(step, li);
      this.list.append(li);
      this.list.hidden = false;
    }
    if (step.kind === "tool") this._updateTool(li, step);
    else this._updateReasoning(li, step);
  }

  _toolItem(step) {
    const li = el("li", "step tool");
    li.dataset.callId = step.callId;
    li.dataset.tool = step.name;
    const details = el("details", "step-details");
    const summary = el("summary", "step-summary");
    summary.append(
      el("span", "step-icon"),
      el("span", "step-name", step.name),
      el("span", "step-status"),
    );
    const body = el("div", "step-body");
    body.append(
      el("p", "step-label", "Arguments"),
      el("pre", "step-text step-arguments", formatArguments(step.arguments)),
    );
    details.append(summary, body);
    li.append(details);
    return li;
  }

  _updateTool(li, step) {
    const phase = toolPhase(step);
    li.dataset.phase = phase;
    li.querySelector(".step-status").textContent = toolStatusText(step);
    const body = li.querySelector(".step-body");
    if (step.result && !body.querySelector(".step-result")) {
      body.append(
        el("p", "step-label", step.result.ok ? "Result" : "What the model was told"),
        el("pre", "step-text step-result", step.result.content),
      );
    }
    let approval = li.querySelector(".step-approval");
    if (phase === "awaiting" && !approval && this.onDecide) {
      approval = this._approvalControls(step);
      li.append(approval);
      // What is asked is shown at once: no one should allow a call unseen.
      li.querySelector("details").open = true;
    } else if (phase !== "awaiting" && approval) {
      approval.remove();
    }
  }

  _approvalControls(step) {
    const box = el("div", "step-approval");
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", `Run the tool ${step.name}?`);
    const question = el("span", "step-question", "Run this tool?");
    const allow = el("button", "step-button allow", "Allow");
    const deny = el("button", "step-button deny", "Deny");
    for (const [button, approve] of [[allow, true], [deny, false]]) {
      button.type = "button";
      button.setAttribute("aria-label", `${approve ? "Allow" : "Deny"} ${step.name}`);
      button.addEventListener("click", () => this._decide(step, approve, box));
    }
    const note = el("span", "step-approval-note");
    note.setAttribute("role", "status");
    box.append(question, allow, deny, note);
    return box;
  }

  async _decide(step, approve, box) {
    const buttons = box.querySelectorAll("button");
    for (const b of buttons) b.disabled = true;
    try {
      await this.onDecide(step.callId, approve);
      this.log.decide(step.callId, approve);
      this._render(step);
      this.onChange();
    } catch (err) {
      if (err?.status === 409) {
        // Decided already (another tab, or the wait ran out): the result says how.
        box.querySelector(".step-approval-note").textContent = "Already decided.";
        return;
      }
      for (const b of buttons) b.disabled = false;
      box.querySelector(".step-approval-note").textContent = err?.status === 404
        ? "This call is no longer waiting."
        : "The decision could not be sent. Try again.";
    }
  }

  _reasoningItem() {
    const li = el("li", "step reasoning");
    const toggle = el("button", "step-summary step-toggle");
    toggle.type = "button";
    toggle.setAttribute("aria-expanded", "false");
    toggle.append(el("span", "step-icon"), el("span", "step-name"));
    const body = el("div", "step-body");
    body.id = `reasoning-${++reasoningIds}`;
    body.hidden = true;
    toggle.setAttribute("aria-controls", body.id);
    const text = el("p", "step-text step-reasoning");
    text.dir = "auto";
    body.append(text);
    toggle.addEventListener("click", () => {
      const open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", String(open));
      body.hidden = !open;
    });
    li.append(toggle, body);
    return li;
  }

  _updateReasoning(li, step) {
    li.dataset.phase = step.endedAt === null ? "running" : "done";
    li.querySelector(".step-name").textContent = reasoningLabel(step);
    li.querySelector(".step-reasoning").textContent = step.text;
  }
}
