// The chat page: wires the API, the views and the user's input together.
// One turn at a time: a turn is one message and its answer.

import * as api from "./api.js";
import { factsFor, rememberFacts } from "./answer-facts.js";
import { Branches } from "./branches.js";
import { runCheck } from "./check.js";
import { refreshBudget } from "./budget-note.js";
import { describeError } from "./errors.js";
import { HistorySearch } from "./history-search.js";
import { Attachments, picturesOf } from "./attachments.js";
import { AnswerView, userMessage } from "./message-view.js";
import { ModelPicker } from "./model-picker.js";
import { renderSessions } from "./sessions-view.js";
import { Nudge } from "./sse.js";
import {
  ConnectionIndicator, StageStatus, renderContext, renderSuggestions, stageLabel,
} from "./status-view.js";
import { pickSuggestions } from "./suggestions.js";
import { setUpTheme } from "./theme.js";
import { showToast } from "./toast.js";

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
  checkOpen: $("check-open"),
  checkDialog: $("check-dialog"),
};

const connection = new ConnectionIndicator();
const stage = new StageStatus();

const state = {
  userId: null,
  sessionId: null,
  turn: null, // {abort, streamId, stopRequested, view, message}
  autoScroll: true,
  shownMessages: 0, // stored messages of this session on screen (user and assistant)
  pendingDeletes: new Set(), // deleted, but still undoable: the DELETE waits
  lastSent: "", // the last message sent from this page: ↑ in an empty box brings it back
  listRequests: 0, // the newest history request: an older answer arriving late is dropped
};

const models = new ModelPicker($("model-picker"), () => state.sessionId);
const search = new HistorySearch($("session-search"), () => refreshSessions());
const attachments = new Attachments({
  button: $("attach"),
  picker: $("attach-input"),
  tray: $("attachments"),
  note: $("attach-note"),
  limits: $("attach-limits"),
  // A message may be pictures alone: the box is not required while some wait.
  onChange: () => { ui.input.required = attachments.count === 0; },
});
attachments.listen(ui.form, ui.input);
setUpTheme();

// Fired when the tab comes back into view or the network returns: a stream
// waiting to reconnect goes at once, and a silent one is replaced.
const nudge = new Nudge();
const UNDO_MS = 6000;

// ---- scrolling: follow the answer unless the reader scrolled up ----------

ui.scroller.addEventListener("scroll", () => {
  const s = ui.scroller;
  state.autoScroll = s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}, { passive: true });

function follow() {
  if (state.autoScroll) ui.scroller.scrollTop = ui.scroller.scrollHeight;
}

// Suggestions appearing under the list, the status line going away, an
// answer's Copy button showing up: each changes a size without a scroll.
// Whoever was at the end stays at the end, so nothing is left under the
// composer or the suggestions.
if (typeof ResizeObserver === "function") {
  const ro = new ResizeObserver(() => follow());
  ro.observe(ui.scroller);
  ro.observe(ui.list);
}

// ---- conversation state ---------------------------------------------------

function setSession(sessionId) {
  if (!sessionId || sessionId === state.sessionId) return;
  state.sessionId = sessionId;
  history.replaceState(null, "", `#session=${encodeURIComponent(sessionId)}`);
  models.forSession(sessionId);
}

function clearConversation() {
  state.shownMessages = 0;
  state.lastSent = "";
  ui.list.replaceChildren();
  ui.empty.hidden = false;
  renderContext({});
  renderSuggestions([], send);
  stage.hide();
}

async function refreshSessions() {
  if (!state.userId) return;
  const request = ++state.listRequests;
  const query = search.query;
  try {
    const found = query
      ? await api.searchSessions(state.userId, query)
      : await api.listSessions(state.userId);
    if (request !== state.listRequests) return undefined;
    const sessions = found.filter((s) => !state.pendingDeletes.has(s.session_id));
    renderSessions(
      sessions,
      state.sessionId,
      { open: openSession, remove: removeSession, rename: renameSession },
      { searching: Boolean(query) },
    );
    return sessions;
  } catch {
    /* the list is a convenience: keep the old one */
  }
}

async function openSession(sessionId) {
  if (state.turn) return;
  closeSidebar();
  try {
    showSession(await api.getSession(state.userId, sessionId));
    refreshSessions();
  } catch (err) {
    if (err.status === 404) {
      history.replaceState(null, "", location.pathname);
      state.sessionId = null;
    }
    showBanner(describeError(err).text);
  }
}

/** Is the session's active turn still being written, or already saved? */
function answerPending(session) {
  const active = session.active_turn;
  if (!active?.stream_id) return false;
  // The answer is saved just before its stream ends: an assistant message
  // written after the turn started means there is nothing left to follow.
  const last = session.messages[session.messages.length - 1];
  return !(last?.role === "assistant" && Number(last.created_at) >= Number(active.started_at));
}

/** Draw a stored conversation; follow the answer being written in it, if any. */
function showSession(session) {
  if (state.turn) return;
  clearConversation();
  state.sessionId = null;
  setSession(session.session_id);
  ui.empty.hidden = session.messages.length > 0;
  let lastQuestion = "";
  for (const m of session.messages) {
    if (m.role === "user") {
      ui.list.append(userMessage(m.content, picturesOf(m.parts)));
      lastQuestion = m.content;
    } else if (m.role === "assistant") {
      const view = new AnswerView();
      ui.list.append(view.li);
      view.show(m.content, m.status || "complete", factsFor(session.session_id, m), m.parts);
    }
  }
  state.shownMessages = session.messages.length;
  state.lastSent = lastQuestion;
  branches.apply(session);
  renderContext(session.context);
  state.autoScroll = true;
  follow();
  if (answerPending(session)) {
    // The question is saved an instant after the turn starts: caught in between, it is
    // not in this history yet, so the conversation is read again once the answer ends.
    const last = session.messages[session.messages.length - 1];
    const asked = last?.role === "user"
      && Number(last.created_at) >= Number(session.active_turn.started_at);
    followAnswer(session.active_turn.stream_id, asked ? lastQuestion : "", !asked);
  }
}

/**
 * Back in view, or back online, with no answer of ours running: the
 * conversation may have moved on in another tab. Redraw it if it did.
 */
async function refreshConversation() {
  if (state.turn || !state.sessionId || !state.userId) return;
  try {
    const session = await api.getSession(state.userId, state.sessionId);
    if (state.turn || session.session_id !== state.sessionId) return;
    if (answerPending(session) || session.messages.length > state.shownMessages) {
      showSession(session);
    }
  } catch {
    /* the next wake-up tries again */
  }
}

function wake() {
  if (document.visibilityState === "hidden") return;
  if (state.turn) nudge.fire();
  else refreshConversation();
}
document.addEventListener("visibilitychange", wake);
globalThis.addEventListener("online", wake);

// ---- renaming ---------------------------------------------------------------

async function renameSession(sessionId, title) {
  try {
    await api.renameSession(state.userId, sessionId, title);
  } catch (err) {
    showToast(`The conversation could not be renamed. ${describeError(err).text}`);
  }
  await refreshSessions();
}

// ---- deleting, with a few seconds to undo ----------------------------------

function removeSession(sessionId) {
  const wasCurrent = sessionId === state.sessionId;
  state.pendingDeletes.add(sessionId);
  if (wasCurrent) newChat({ cancel: false });
  else refreshSessions();
  showToast("Conversation deleted.", {
    ms: UNDO_MS,
    action: {
      label: "Undo",
      run: () => {
        state.pendingDeletes.delete(sessionId);
        // Back where it was, unless something else is on screen by now.
        if (wasCurrent && !state.turn && !state.sessionId) openSession(sessionId);
        else refreshSessions();
      },
    },
    onExpire: () => commitDelete(sessionId),
  });
}

async function commitDelete(sessionId) {
  if (!state.pendingDeletes.has(sessionId)) return;
  try {
    await api.deleteSession(state.userId, sessionId);
  } catch (err) {
    showToast(`The conversation could not be deleted. ${describeError(err).text}`);
  } finally {
    state.pendingDeletes.delete(sessionId);
    refreshSessions();
  }
}

// Leaving the page before the undo time is over still deletes.
globalThis.addEventListener("pagehide", () => {
  for (const sessionId of state.pendingDeletes) api.deleteSessionOnExit(state.userId, sessionId);
  state.pendingDeletes.clear();
});

/**
 * @param {{cancel?: boolean}} [opts] cancel: stop the answer being written
 *   (New chat); without it only this page stops following it (a delete that
 *   may still be undone)
 */
function newChat({ cancel = true } = {}) {
  if (state.turn && cancel) stopAnswer();
  else if (state.turn) {
    state.turn.stopRequested = true;
    state.turn.abort.abort();
  }
  state.sessionId = null;
  history.replaceState(null, "", location.pathname);
  models.forNewChat();
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

function startTurn(view, message) {
  const turn = {
    abort: new AbortController(), streamId: null, stopRequested: false, view, message,
  };
  state.turn = turn;
  setBusy(true);
  return turn;
}

function endTurn() {
  state.turn = null;
  setBusy(false);
  stage.hide();
  // Only a conversation the server has stored (listed) is read back for its branches.
  refreshSessions().then((sessions) => {
    if (sessions?.some((s) => s.session_id === state.sessionId)) refreshBranches();
  });
}

// Edit, regenerate and ‹ 2/2 ›: the turn's messages get their ids and controls
// once it is stored.
const branches = new Branches({
  list: ui.list,
  userId: () => state.userId,
  sessionId: () => state.sessionId,
  busy: () => Boolean(state.turn),
  send: (text, replaced, extra) => send(text, replaced, extra),
  show: (session) => showSession(session),
  fail: (text) => showToast(text),
});

// A stopped answer is stored by the server an instant after the page stops reading: until
// then the history lacks it and the drawn list cannot get its controls. Read again a few
// times, further apart each time, rather than leave the turn without Edit for good.
const BRANCH_RETRIES_MS = [100, 250, 500, 1000, 2000];

async function refreshBranches() {
  const sessionId = state.sessionId;
  for (let attempt = 0; ; attempt++) {
    if (!sessionId || !state.userId) return;
    try {
      const session = await api.getSession(state.userId, sessionId);
      if (state.turn || state.sessionId !== sessionId) return;
      state.shownMessages = session.messages.length;
      if (branches.apply(session)) return;
    } catch {
      /* the controls come with the next redraw */
      return;
    }
    if (attempt >= BRANCH_RETRIES_MS.length) return;
    await new Promise((resolve) => setTimeout(resolve, BRANCH_RETRIES_MS[attempt]));
  }
}

const NO_PICTURES = Object.freeze({ images: [], shown: [] });

/**
 * Send a message; `extra` the branch it starts (edit_of or regenerate), `pictures`
 * {images, shown} as the attachments gave them.
 */
function send(text, retryView = null, extra = null, pictures = NO_PICTURES) {
  const message = text.trim();
  if ((!message && !pictures.images.length) || state.turn || !state.userId) return;
  state.lastSent = message;
  ui.empty.hidden = true;
  renderSuggestions([], send);
  if (retryView) retryView.li.remove();
  const question = retryView ? null : userMessage(message, pictures.shown);
  if (question) ui.list.append(question);
  const view = new AnswerView({ onPaint: follow });
  ui.list.append(view.li);
  state.autoScroll = true;
  follow();
  const turn = startTurn(view, message);
  turn.extra = extra;
  turn.pictures = pictures;
  const run = ui.streaming.checked ? runStreaming : runPlain;
  run(message, turn).then((outcome) => {
    endTurn();
    refreshBudget(state.userId);
    if (outcome?.busyWith) answerElsewhere(message, question, view);
  });
}

/**
 * The conversation already has an answer being written (another tab, or
 * this one before a reload): the server refused a second turn with 409
 * turn_in_progress. Show that answer instead of an error, with its question
 * before it, and give the message back to be sent when it is done.
 */
function answerElsewhere(message, question, view) {
  question?.remove();
  view.li.remove();
  if (!ui.input.value.trim()) {
    ui.input.value = message;
    autoGrow();
  }
  showToast("An answer is still being written in this conversation, so it is shown here. "
    + "Your message is back in the box: send it when the answer is done.", { ms: 8000 });
  if (state.sessionId) openSession(state.sessionId);
}

/** Follow an answer that is already being written, from its first event. */
function followAnswer(streamId, question, redrawAfter = false) {
  if (state.turn) return;
  ui.empty.hidden = true;
  const view = new AnswerView({ onPaint: follow });
  ui.list.append(view.li);
  view.li.dataset.streamId = streamId;
  state.autoScroll = true;
  follow();
  const turn = startTurn(view, question);
  turn.streamId = streamId;
  turn.followed = true;
  stage.waiting("Catching up with the answer…");
  const events = api.followStream(streamId, {
    signal: turn.abort.signal,
    nudge,
    onConnection: (info) => connection.set(info),
  });
  consume(events, turn, () => openSession(state.sessionId))
    .then(async (outcome) => {
      endTurn();
      // The answer ended while nobody was reading (its log expired): history has it.
      if ((outcome?.expired || redrawAfter) && state.sessionId) await openSession(state.sessionId);
    });
}

async function runStreaming(message, turn) {
  stage.waiting("Sending…");
  const events = api.streamConversation(state.userId, message, state.sessionId, {
    extra: turn.extra,
    signal: turn.abort.signal,
    model: models.chosen(),
    images: turn.pictures.images,
    nudge,
    onConnection: (info) => {
      if (info.streamId) turn.streamId = info.streamId;
      connection.set(info);
    },
  });
  return consume(events, turn, () => send(message, turn.view, turn.extra, turn.pictures));
}

/**
 * Show a turn's events as they come. Resolves to what the caller must still
 * do: {busyWith} when the server said another answer is being written,
 * {expired} when a followed answer was no longer there to follow.
 */
async function consume(events, turn, retry) {
  const { view } = turn;
  view.decideTool = async (callId, approve) => {
    await api.decideTool(turn.streamId, callId, approve);
    if (state.turn === turn) stage.say(approve ? "Running the tool…" : `${stageLabel("llm")}…`);
  };
  try {
    for await (const { type, data } of events) {
      if (type === "status") {
        if (data.stream_id) turn.streamId = data.stream_id;
        view.li.dataset.streamId = turn.streamId ?? "";
        stage.update(data);
      } else if (type === "context") {
        setSession(data.session_id);
        renderContext(data.context);
      } else if (type === "tool_call" || type === "tool_result" || type === "reasoning") {
        view.step(type, data);
        stage.say(stepStatus(type, data, view));
      } else if (type === "chunk") {
        view.push(data.content);
        stage.writing(view.raw.length);
      } else if (type === "complete") {
        view.li.dataset.received = "complete";
        stage.hide();
        setSession(data.session_id);
        connection.set({ state: "idle" });
        state.shownMessages += turn.followed ? 1 : 2; // the question was shown already
        rememberFacts(data.session_id, data.message, data);
        await view.complete(data.message, data);
        renderSuggestions(pickSuggestions(data.suggestions, turn.message), send);
        announce(view.content.textContent);
      } else if (type === "error") {
        view.li.dataset.received = "error";
        stage.hide();
        // Refused before any model was asked: nothing of this turn is stored.
        if (!["rate_limited", "too_many_streams", "budget_exhausted"].includes(data.code)) {
          state.shownMessages += turn.followed ? 1 : 2;
        }
        const desc = describeError(data);
        view.fail(desc, desc.retryable ? retry : null);
        announce(desc.text);
      }
    }
  } catch (err) {
    if (turn.stopRequested) {
      view.fail(describeError({ code: "cancelled" }), null);
    } else if (err?.code === "turn_in_progress") {
      return { busyWith: err.streamId };
    } else if (err?.expired && turn.followed) {
      return { expired: true };
    } else {
      const desc = describeError(err);
      view.fail(desc, desc.retryable ? retry : null);
      announce(desc.text);
    }
  } finally {
    connection.set({ state: "idle" });
  }
  return null;
}

/** The status line while the turn is on a step rather than writing. */
function stepStatus(type, data, view) {
  if (view.steps.awaitingApproval()) return "Waiting for your approval…";
  if (type === "tool_call") return `Running ${data?.name ?? "a tool"}…`;
  if (type === "reasoning") return "Thinking…";
  return `${stageLabel("llm")}…`;
}

async function runPlain(message, turn) {
  const { view } = turn;
  stage.waiting("Waiting for the whole answer…");
  connection.set({ state: "connecting", attempt: 0 });
  try {
    const answer = await api.converse(
      state.userId, message, state.sessionId, turn.abort.signal, models.chosen(),
      turn.pictures.images, turn.extra,
    );
    setSession(answer.session_id);
    view.li.dataset.received = "complete";
    state.shownMessages += 2;
    rememberFacts(answer.session_id, answer.message, answer);
    view.show(answer.message, "complete", answer);
    renderSuggestions(pickSuggestions(answer.suggestions, message), send);
    announce(view.content.textContent);
    // The JSON answer has no context: read what the session remembers.
    api.getSession(state.userId, answer.session_id)
      .then((s) => renderContext(s.context))
      .catch(() => {});
  } catch (err) {
    if (turn.stopRequested) {
      view.fail(describeError({ code: "cancelled" }), null);
    } else if (err?.code === "turn_in_progress") {
      return { busyWith: err.streamId };
    } else {
      const desc = describeError(err);
      view.fail(desc, desc.retryable ? () => send(message, view, turn.extra, turn.pictures) : null);
      announce(desc.text);
    }
  } finally {
    connection.set({ state: "idle" });
  }
  return null;
}

async function stopAnswer() {
  const turn = state.turn;
  if (!turn || turn.stopRequested) return;
  turn.stopRequested = true;
  ui.stop.disabled = true;
  const abortSoon = () => setTimeout(() => turn.abort.abort(), 3000);
  if (turn.streamId) {
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

ui.form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = ui.input.value;
  if ((!text.trim() && !attachments.count) || state.turn) return;
  ui.input.value = "";
  autoGrow();
  send(text, null, null, await attachments.take());
});

ui.input.addEventListener("keydown", (e) => {
  // Enter sends; Shift+Enter is a new line; Enter that confirms an IME
  // composition (Japanese, Chinese…) must not send.
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
    e.preventDefault();
    ui.form.requestSubmit();
  } else if (e.key === "ArrowUp" && !ui.input.value && !e.isComposing) {
    // As in ChatGPT: ↑ edits your last message (a new branch from it). Before it is stored
    // (no Edit yet), the text comes back to the box, as in a terminal.
    if (branches.editLast()) {
      e.preventDefault();
      return;
    }
    if (!state.lastSent) return;
    e.preventDefault();
    ui.input.value = state.lastSent;
    autoGrow();
    ui.input.setSelectionRange(ui.input.value.length, ui.input.value.length);
  }
});
ui.input.addEventListener("input", autoGrow);

ui.stop.addEventListener("click", stopAnswer);
document.addEventListener("keydown", (e) => {
  if (e.key !== "Escape" || ui.checkDialog.open) return; // the dialog closes itself
  if (ui.app.dataset.sidebar === "open") {
    closeSidebar();
    ui.sidebarToggle.focus();
  } else if (state.turn) stopAnswer();
});

ui.streaming.checked = localStorage.getItem(STREAMING_KEY) !== "off";
ui.streaming.addEventListener("change", () => {
  localStorage.setItem(STREAMING_KEY, ui.streaming.checked ? "on" : "off");
});

ui.newChat.addEventListener("click", () => newChat());

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

// ---- connection check -------------------------------------------------------

let checking = null;

ui.checkOpen.addEventListener("click", () => {
  closeSidebar();
  ui.checkDialog.showModal();
  $("check-run").focus();
});
$("check-close").addEventListener("click", () => ui.checkDialog.close());
ui.checkDialog.addEventListener("close", () => checking?.abort());
$("check-run").addEventListener("click", async () => {
  const run = $("check-run");
  const progress = $("check-progress");
  const result = $("check-result");
  checking = new AbortController();
  run.disabled = true;
  result.hidden = true;
  progress.textContent = "Streaming test events…";
  try {
    const report = await runCheck({
      signal: checking.signal,
      onTick: (seq, of) => {
        progress.textContent = `Streaming test events… ${seq} of ${of} arrived`;
      },
    });
    const verdicts = {
      streaming: "Streaming works.",
      buffered: "Something buffers the stream.",
      compressed: "Something compresses the stream.",
      cut: "Something cuts the stream off.",
      failed: "The check could not run.",
    };
    result.dataset.verdict = report.verdict;
    $("check-verdict").textContent = verdicts[report.verdict] ?? report.verdict;
    $("check-lines").replaceChildren(...report.lines.map((line) => {
      const li = document.createElement("li");
      li.textContent = line;
      return li;
    }));
    result.hidden = false;
    progress.textContent = "";
  } catch {
    progress.textContent = "";
  } finally {
    run.disabled = false;
    checking = null;
  }
});

// ---- start ----------------------------------------------------------------

async function start() {
  setBusy(false);
  try {
    const me = await api.getMe();
    state.userId = me.user_id;
    attachments.useLimits(me.limits);
  } catch (err) {
    showBanner(`Can't reach the server. ${describeError(err).text}`);
    return;
  }
  await models.load(api.listModels);
  ui.app.dataset.ready = "true";
  const m = /^#session=(.+)$/.exec(location.hash);
  if (m) await openSession(decodeURIComponent(m[1]));
  else refreshSessions();
  refreshBudget(state.userId);
  ui.input.focus();
}

start();
