// Edit and regenerate: a conversation is a tree (docs/api.md, "Edits and
// regenerations"). Each message drawn from history gets its controls here: an
// Edit button on the user's messages (an inline editor: Save & send starts a
// new branch beside the message), Regenerate on the last answer (a new
// variant), and ‹ 2/2 › arrows on a message with alternatives, which switch
// the branch on the server (so a reload keeps it) and redraw.

const enc = encodeURIComponent;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(className, text, label) {
  const b = el("button", `meta-button ${className}`, text);
  b.type = "button";
  if (label) b.setAttribute("aria-label", label);
  return b;
}

/** POST .../branch: the session as GET gives it, on the branch through messageId. */
export async function switchBranch(userId, sessionId, messageId) {
  const r = await fetch(`/api/sessions/${enc(userId)}/${enc(sessionId)}/branch`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ message_id: messageId }),
  });
  const body = await r.json().catch(() => null);
  if (!r.ok) {
    const error = new Error(body?.error?.message ?? `HTTP ${r.status}`);
    error.status = r.status;
    throw error;
  }
  return body;
}

export class Branches {
  /**
   * @param {{
   *   list: HTMLElement,
   *   userId: () => string | null,
   *   sessionId: () => string | null,
   *   busy: () => boolean,
   *   send: (text: string, replaced: {li: HTMLElement} | null, extra: object) => void,
   *   show: (session: object) => void,
   *   fail: (text: string) => void,
   * }} hooks
   */
  constructor(hooks) {
    this.hooks = hooks;
  }

  /**
   * Give the drawn messages their controls, from the session as the API gave
   * it. The list must hold exactly the session's messages in order; when it
   * does not (an answer refused before it was stored, or not stored yet),
   * nothing is added and it says so (false).
   */
  apply(session) {
    const items = [...this.hooks.list.querySelectorAll(":scope > li.message")];
    const messages = session.messages ?? [];
    if (items.length !== messages.length) return false;
    const lastAnswer = messages.length - 1;
    items.forEach((li, i) => {
      li.querySelector(":scope > .branch-controls")?.remove();
      const m = messages[i];
      li.dataset.messageId = String(m.id);
      const controls = el("div", "branch-controls");
      const siblings = m.siblings;
      if (siblings && siblings.count > 1) controls.append(this._arrows(m, siblings));
      if (m.role === "user") {
        const edit = button("edit", "Edit", "Edit message");
        edit.addEventListener("click", () => this._edit(li, m));
        controls.append(edit);
      } else if (m.role === "assistant" && i === lastAnswer) {
        const again = button("regenerate", "Regenerate", "Regenerate the answer");
        again.addEventListener("click", () => this._regenerate(li, m, messages[i - 1]));
        controls.append(again);
      }
      if (controls.childElementCount) li.append(controls);
    });
    return true;
  }

  /** ↑ in an empty box: the editor on your last message, when it is stored (has Edit). */
  editLast() {
    const edits = this.hooks.list.querySelectorAll(":scope > li.message .branch-controls .edit");
    const last = edits[edits.length - 1];
    if (!last || this.hooks.busy()) return false;
    last.click();
    return true;
  }

  _arrows(message, { index, count, ids }) {
    const group = el("div", "branch-nav");
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", `Version ${index} of ${count}`);
    const previous = button("branch-previous", "‹", "Previous version");
    const next = button("branch-next", "›", "Next version");
    const position = el("span", "branch-position", `${index}/${count}`);
    position.setAttribute("aria-hidden", "true");
    previous.disabled = index <= 1;
    next.disabled = index >= count;
    previous.addEventListener("click", () => this._switch(ids[index - 2]));
    next.addEventListener("click", () => this._switch(ids[index]));
    group.append(previous, position, next);
    return group;
  }

  async _switch(messageId) {
    const { userId, sessionId, busy, show, fail } = this.hooks;
    if (busy() || messageId === undefined || !sessionId()) return;
    try {
      show(await switchBranch(userId(), sessionId(), messageId));
    } catch (err) {
      fail(`That version could not be shown. ${err.message}`);
    }
  }

  _edit(li, message) {
    if (this.hooks.busy() || li.querySelector(".branch-editor")) return;
    const bubble = li.querySelector(".bubble");
    const form = el("form", "branch-editor");
    const box = el("textarea", "branch-editor-input");
    box.value = message.content;
    box.dir = "auto";
    box.rows = Math.min(8, message.content.split("\n").length + 1);
    box.setAttribute("aria-label", "Edit your message");
    const save = el("button", "meta-button retry branch-save", "Save & send");
    save.type = "submit";
    const cancel = button("branch-cancel", "Cancel");
    const actions = el("div", "branch-editor-actions");
    actions.append(cancel, save);
    form.append(box, actions);
    const close = () => {
      form.remove();
      bubble.hidden = false;
      li.querySelector(".branch-controls")?.removeAttribute("hidden");
    };
    cancel.addEventListener("click", close);
    box.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.stopPropagation();
        close();
        li.querySelector(".edit")?.focus();
      } else if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const text = box.value.trim();
      if (!text || this.hooks.busy()) return;
      // The new branch replaces, on screen, the edited message and all after it.
      while (li.nextElementSibling) li.nextElementSibling.remove();
      li.remove();
      this.hooks.send(text, null, { edit_of: message.id });
    });
    bubble.hidden = true;
    li.querySelector(".branch-controls")?.setAttribute("hidden", "");
    li.append(form);
    box.focus();
  }

  _regenerate(li, answer, question) {
    if (this.hooks.busy() || question?.role !== "user") return;
    this.hooks.send(question.content, { li }, { regenerate: answer.id });
  }
}
