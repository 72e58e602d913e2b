// The chat page: wires the API, the views and the user's input together.
// One turn at a time: a turn is one message and its answer.

import * as api from "./api.js";
import { describeError } from "./errors.js";
import { AnswerView, userMessage } from "./message-view.js";
import { renderSessions } from "./sessions-view.js";
import {
  ConnectionIndicator, StageStatus, renderContext, renderSuggestions,
} from "./status-view.js";

const $ = (id) => document.getElementById(id);
const STREAMING_KEY = "sluice.streaming";

const ui = {
  app: $("app"),
  list: $("message-list"),
  scroller: $("messages"),
  empty: $("empty-state"),
  form: $("composer"),
  input: $("input"),
  send: $("send"),
  stop: $("stop"),
  live: $("answer-live"),
  streaming: $("streaming-toggle"),
  sidebarToggle: $("sidebar-toggle"),
  scrim: $("scrim"),
  newChat: $("new-chat"),
};

const connection = new ConnectionIndicator();
const stage = new StageStatus();

const state = {
  userId: null,
  sessionId: null,
  turn: null, // {abort, streamId, stopRequested, view}
  autoScroll: true,
};

// ---- scrolling: follow the answer unless the reader scrolled up ----------

ui.scroller.addEventListener("scroll", () => {
  const s = ui.scroller;
  state.autoScroll = s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}, { passive: true });

function follow() {
  if (state.autoScroll) ui.scroller.scrollTop = ui.scroller.scrollHeight;
}

// ---- conversation state ---------------------------------------------------

function setSession(sessionId) {
  if (!sessionId || sessionId === state.sessionId) return;
  state.sessionId = sessionId;
  history.replaceState(null, "", `#session=${encodeURIComponent(sessionId)}`);
}

function clearConversation() {
  ui.list.replaceChildren();
  ui.empty.hidden = false;
  renderContext({});
  renderSuggestions([], send);
  stage.hide();
}

async function refreshSessions() {
  if (!state.userId) return;
  try {
    const sessions = await api.listSessions(state.userId);
    renderSessions(sessions, state.sessionId, { open: openSession, remove: removeSession });
  } catch {
    /* the list is a convenience: keep the old one */
  }
}

async function openSession(sessionId) {
  if (state.turn) return;
  closeSidebar();
  try {
    const session = await api.getSession(state.userId, sessionId);
    clearConversation();
    state.sessionId = null;
    setSession(session.session_id);
    ui.empty.hidden = session.messages.length > 0;
    for (const m of session.messages) {
      if (m.role === "user") {
        ui.list.append(userMessage(m.content));
      } else if (m.role === "assistant") {
        const view = new AnswerView();
        ui.list.append(view.li);
        view.show(m.content, m.status || "complete");
      }
    }
    renderContext(session.context);
    state.autoScroll = true;
    follow();
    refreshSessions();
  } catch (err) {
    if (err.status === 404) {
      history.replaceState(null, "", location.pathname);
      state.sessionId = null;
    }
    showBanner(describeError(err).text);
  }
}

async function removeSession(sessionId) {
  try {
    await api.deleteSession(state.userId, sessionId);
  } catch (err) {
    showBanner(describeError(err).text);
  }
  if (sessionId === state.sessionId) newChat();
  refreshSessions();
}

function newChat() {
  if (state.turn) stopAnswer();
  state.sessionId = null;
  history.replaceState(null, "", location.pathname);
  clearConversation();
  refreshSessions();
  ui.input.focus();
}

function showBanner(text) {
  const view = new AnswerView();
  ui.empty.hidden = true;
  ui.list.append(view.li);
  view.fail({ code: "internal", text, retryable: false, retryAfter: null }, null);
}

// ---- a turn ---------------------------------------------------------------

function setBusy(busy) {
  ui.send.hidden = busy;
  ui.stop.hidden = !busy;
  ui.app.dataset.busy = busy ? "true" : "false";
}

function announce(text) {
  ui.live.textContent = text;
}

function send(text, retryView = null) {
  const message = text.trim();
  if (!message || state.turn || !state.userId) return;
  ui.empty.hidden = true;
  renderSuggestions([], send);
  if (retryView) retryView.li.remove();
  else ui.list.append(userMessage(message));
  const view = new AnswerView({ onPaint: follow });
  ui.list.append(view.li);
  state.autoScroll = true;
  follow();
  const turn = { abort: new AbortController(), streamId: null, stopRequested: false, view };
  state.turn = turn;
  setBusy(true);
  const run = ui.streaming.checked ? runStreaming : runPlain;
  run(message, turn).finally(() => {
    state.turn = null;
    setBusy(false);
    stage.hide();
    refreshSessions();
  });
}

async function runStreaming(message, turn) {
  const { view } = turn;
  const retry = () => send(message, view);
  stage.waiting("Sending…");
  try {
    const events = api.streamConversation(state.userId, message, state.sessionId, {
      signal: turn.abort.signal,
      onConnection: (info) => {
        if (info.streamId) turn.streamId = info.streamId;
        connection.set(info);
      },
    });
    for await (const { type, data } of events) {
      if (type === "status") {
        if (data.stream_id) turn.streamId = data.stream_id;
        view.li.dataset.streamId = turn.streamId ?? "";
        stage.update(data);
      } else if (type === "context") {
        setSession(data.session_id);
        renderContext(data.context);
      } else if (type === "chunk") {
        view.push(data.content);
      } else if (type === "complete") {
        view.li.dataset.received = "complete";
        stage.hide();
        setSession(data.session_id);
        connection.set({ state: "idle" });
        await view.complete(data.message, data);
        renderSuggestions(data.suggestions, send);
        announce(view.content.textContent);
      } else if (type === "error") {
        view.li.dataset.received = "error";
        const desc = describeError(data);
        view.fail(desc, desc.retryable ? retry : null);
        announce(desc.text);
      }
    }
  } catch (err) {
    if (turn.stopRequested) {
      view.fail(describeError({ code: "cancelled" }), null);
    } else {
      const desc = describeError(err);
      view.fail(desc, desc.retryable ? retry : null);
      announce(desc.text);
    }
  } finally {
    connection.set({ state: "idle" });
  }
}

async function runPlain(message, turn) {
  const { view } = turn;
  stage.waiting("Waiting for the whole answer…");
  connection.set({ state: "connecting", attempt: 0 });
  try {
    const answer = await api.converse(state.userId, message, state.sessionId, turn.abort.signal);
    setSession(answer.session_id);
    view.li.dataset.received = "complete";
    view.show(answer.message, "complete", answer);
    renderSuggestions(answer.suggestions, send);
    announce(view.content.textContent);
    // The JSON answer has no context: read what the session remembers.
    api.getSession(state.userId, answer.session_id)
      .then((s) => renderContext(s.context))
      .catch(() => {});
  } catch (err) {
    if (turn.stopRequested) {
      view.fail(describeError({ code: "cancelled" }), null);
    } else {
      const desc = describeError(err);
      view.fail(desc, desc.retryable ? () => send(message, view) : null);
      announce(desc.text);
    }
  } finally {
    connection.set({ state: "idle" });
  }
}

async function stopAnswer() {
  const turn = state.turn;
  if (!turn || turn.stopRequested) return;
  turn.stopRequested = true;
  ui.stop.disabled = true;
  const abortSoon = () => setTimeout(() => turn.abort.abort(), 3000);
  if (turn.streamId && ui.streaming.checked) {
    // The server ends the stream with error `cancelled`; the partial answer
    // stays. If that does not come promptly, drop the connection anyway.
    try {
      await api.cancelStream(turn.streamId);
      abortSoon();
    } catch {
      turn.abort.abort();
    }
  } else {
    turn.abort.abort();
  }
  ui.stop.disabled = false;
}

// ---- input ----------------------------------------------------------------

function autoGrow() {
  ui.input.style.height = "auto";
  ui.input.style.height = `${Math.min(ui.input.scrollHeight, 200)}px`;
}

ui.form.addEventListener("submit", (e) => {
  e.preventDefault();
  const text = ui.input.value;
  if (!text.trim() || state.turn) return;
  ui.input.value = "";
  autoGrow();
  send(text);
});

ui.input.addEventListener("keydown", (e) => {
  // Enter sends; Shift+Enter is a new line; Enter that confirms an IME
  // composition (Japanese, Chinese…) must not send.
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
    e.preventDefault();
    ui.form.requestSubmit();
  }
});
ui.input.addEventListener("input", autoGrow);

ui.stop.addEventListener("click", stopAnswer);
document.addEventListener("keydown", (e) => {
  if (e.key !== "Escape") return;
  if (ui.app.dataset.sidebar === "open") {
    closeSidebar();
    ui.sidebarToggle.focus();
  } else if (state.turn) stopAnswer();
});

ui.streaming.checked = localStorage.getItem(STREAMING_KEY) !== "off";
ui.streaming.addEventListener("change", () => {
  localStorage.setItem(STREAMING_KEY, ui.streaming.checked ? "on" : "off");
});

ui.newChat.addEventListener("click", newChat);

function openSidebar() {
  ui.app.dataset.sidebar = "open";
  ui.sidebarToggle.setAttribute("aria-expanded", "true");
  ui.scrim.hidden = false;
  // after the drawer is visible, or focus() does nothing
  requestAnimationFrame(() => ui.newChat.focus());
}

function closeSidebar() {
  if (ui.app.dataset.sidebar !== "open") return;
  delete ui.app.dataset.sidebar;
  ui.sidebarToggle.setAttribute("aria-expanded", "false");
  ui.scrim.hidden = true;
}

ui.sidebarToggle.addEventListener("click", () => {
  if (ui.app.dataset.sidebar === "open") closeSidebar();
  else openSidebar();
});
ui.scrim.addEventListener("click", closeSidebar);

// ---- start ----------------------------------------------------------------

async function start() {
  setBusy(false);
  try {
    const me = await api.getMe();
    state.userId = me.user_id;
  } catch (err) {
    showBanner(`Can't reach the server. ${describeError(err).text}`);
    return;
  }
  ui.app.dataset.ready = "true";
  const m = /^#session=(.+)$/.exec(location.hash);
  if (m) await openSession(decodeURIComponent(m[1]));
  else refreshSessions();
  ui.input.focus();
}

start();
