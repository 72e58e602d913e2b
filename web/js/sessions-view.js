// The list of past conversations in the sidebar: open, rename in place, delete; with a
// snippet of the matching message when the list is a search's result.

const $ = (id) => document.getElementById(id);

function when(updatedAt) {
  const d = new Date(typeof updatedAt === "number" && updatedAt < 1e12 ? updatedAt * 1000 : updatedAt);
  if (Number.isNaN(d.getTime())) return "";
  const sameDay = d.toDateString() === new Date().toDateString();
  return sameDay
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : d.toLocaleDateString([], { month: "short", day: "numeric" });
}

function button(className, label, text, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.setAttribute("aria-label", label);
  b.textContent = text;
  b.addEventListener("click", onClick);
  return b;
}

/**
 * The title becomes a text box: Enter or leaving it saves, Escape puts the title back.
 * `rename` resolves once the server kept it (or rejects, and the old title stays).
 */
function editTitle(li, open, title, rename) {
  const input = document.createElement("input");
  input.type = "text";
  input.className = "session-title-input";
  input.value = title;
  input.maxLength = 200;
  input.dir = "auto";
  input.setAttribute("aria-label", "Conversation title");
  let done = false;
  const finish = async (save) => {
    if (done) return;
    done = true;
    const wanted = input.value.trim();
    if (save && wanted && wanted !== title) {
      input.disabled = true;
      input.dataset.saving = "";
      try {
        await rename(wanted);
      } catch {
        /* rename reports it; the list is redrawn either way */
      }
    }
    input.replaceWith(open);
    open.focus();
  };
  input.addEventListener("keydown", (e) => {
    // Escape here cancels the edit; it must not also close the drawer or stop an answer.
    if (e.key === "Escape" || e.key === "Enter") {
      e.preventDefault();
      e.stopPropagation();
      finish(e.key === "Enter");
    }
  });
  input.addEventListener("blur", () => finish(true));
  open.replaceWith(input);
  input.focus();
  input.select();
}

/**
 * @param {Array<{session_id: string, title: string, updated_at: any, snippet?: string|null}>} sessions
 * @param {string | null} currentId
 * @param {{open: (id: string) => void, remove: (id: string) => void,
 *          rename: (id: string, title: string) => Promise<void>}} actions
 * @param {{searching?: boolean}} [opts] searching: the list is a search's result
 */
export function renderSessions(sessions, currentId, actions, { searching = false } = {}) {
  const list = $("session-list");
  // A title being edited is not swept away by a redraw (an answer ending meanwhile); the
  // edit's own save redraws the list once it is done.
  if (document.activeElement?.matches(".session-title-input:not([data-saving])")
    && list.contains(document.activeElement)) {
    return;
  }
  list.replaceChildren(
    ...sessions.map((s) => {
      const name = s.title || "Untitled conversation";
      const li = document.createElement("li");
      li.className = "session";
      li.dataset.sessionId = s.session_id;
      const open = document.createElement("button");
      open.type = "button";
      open.className = "session-open";
      if (s.session_id === currentId) open.setAttribute("aria-current", "true");
      const title = document.createElement("span");
      title.className = "session-title";
      title.dir = "auto";
      title.textContent = name;
      open.append(title);
      if (s.snippet) {
        const snippet = document.createElement("span");
        snippet.className = "session-snippet";
        snippet.dir = "auto";
        snippet.textContent = s.snippet;
        open.append(snippet);
      }
      const time = document.createElement("span");
      time.className = "session-time";
      time.textContent = when(s.updated_at);
      open.append(time);
      open.addEventListener("click", () => actions.open(s.session_id));
      const rename = button("session-rename", `Rename “${name}”`, "✎", () =>
        editTitle(li, open, s.title, (t) => actions.rename(s.session_id, t)));
      const del = button("session-delete", `Delete “${name}”`, "×", () => actions.remove(s.session_id));
      li.append(open, rename, del);
      return li;
    }),
  );
  const empty = $("session-empty");
  empty.textContent = searching ? "No conversation matches." : "No conversations yet.";
  empty.hidden = sessions.length > 0;
}
