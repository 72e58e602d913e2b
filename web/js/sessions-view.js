// The list of past conversations in the sidebar.

const $ = (id) => document.getElementById(id);

function when(updatedAt) {
  const d = new Date(typeof updatedAt === "number" && updatedAt < 1e12 ? updatedAt * 1000 : updatedAt);
  if (Number.isNaN(d.getTime())) return "";
  const sameDay = d.toDateString() === new Date().toDateString();
  return sameDay
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : d.toLocaleDateString([], { month: "short", day: "numeric" });
}

/**
 * @param {Array<{session_id: string, title: string, updated_at: any}>} sessions
 * @param {string | null} currentId
 * @param {{open: (id: string) => void, remove: (id: string) => void}} actions
 */
export function renderSessions(sessions, currentId, actions) {
  const list = $("session-list");
  list.replaceChildren(
    ...sessions.map((s) => {
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
      title.textContent = s.title || "Untitled conversation";
      const time = document.createElement("span");
      time.className = "session-time";
      time.textContent = when(s.updated_at);
      open.append(title, time);
      open.addEventListener("click", () => actions.open(s.session_id));
      const del = document.createElement("button");
      del.type = "button";
      del.className = "session-delete";
      del.setAttribute("aria-label", `Delete “${s.title || "Untitled conversation"}”`);
      del.textContent = "×";
      del.addEventListener("click", () => actions.remove(s.session_id));
      li.append(open, del);
      return li;
    }),
  );
  $("session-empty").hidden = sessions.length > 0;
}
