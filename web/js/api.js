// The sluice HTTP API as the page uses it (docs/api.md). Same-origin fetch:
// the identity cookie goes along, and POST/DELETE carry Origin by themselves.

import { HttpError, streamEvents } from "./sse.js";

const enc = encodeURIComponent;

async function json(response) {
  if (response.ok) return response.json();
  let body = null;
  try {
    body = await response.json();
  } catch {
    /* not JSON */
  }
  throw new HttpError(response.status, body, Number(response.headers.get("Retry-After")) || null);
}

function post(url, body) {
  return fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body ?? {}),
  });
}

export async function getMe() {
  return json(await fetch("/api/me", { headers: { Accept: "application/json" } }));
}

export async function listSessions(userId) {
  const body = await json(await fetch(`/api/sessions/${enc(userId)}`));
  return body.sessions ?? [];
}

export async function getSession(userId, sessionId) {
  return json(await fetch(`/api/sessions/${enc(userId)}/${enc(sessionId)}`));
}

export async function deleteSession(userId, sessionId) {
  const r = await fetch(`/api/sessions/${enc(userId)}/${enc(sessionId)}`, { method: "DELETE" });
  if (!r.ok && r.status !== 404) await json(r);
}

export async function cancelStream(streamId) {
  const r = await post(`/api/streams/${enc(streamId)}/cancel`);
  if (!r.ok && r.status !== 404) await json(r);
}

/**
 * Allow or deny a tool call waiting for approval. Rejects with an HttpError:
 * 404 when no such call waits, 409 (already_decided) when it was decided.
 */
export async function decideTool(streamId, callId, approve) {
  const r = await post(`/api/streams/${enc(streamId)}/tools/${enc(callId)}`, { approve });
  if (!r.ok) await json(r);
}

/** The models a turn may name (OpenAI's list: `sluice`, then each provider and model). */
export async function listModels() {
  const body = await json(await fetch("/v1/models", { headers: { Accept: "application/json" } }));
  return body.data ?? [];
}

/** Rename a conversation; resolves to its title as the server kept it. */
export async function renameSession(userId, sessionId, title) {
  const r = await fetch(`/api/sessions/${enc(userId)}/${enc(sessionId)}`, {
    method: "PATCH",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ title }),
  });
  return (await json(r)).title;
}

/** The caller's conversations holding every word of `query`, with a snippet of each. */
export async function searchSessions(userId, query, signal) {
  const r = await fetch(`/api/sessions/${enc(userId)}?q=${enc(query)}`, { signal });
  return (await json(r)).sessions ?? [];
}

/** The non-streaming turn: resolves to the whole answer. */
export async function converse(
  userId, message, sessionId, signal, model = null, images = [], extra = null,
) {
  const body = { message, ...extra };
  if (sessionId) body.session_id = sessionId;
  if (model) body.model = model;
  if (images.length) body.images = images;
  const r = await fetch(`/api/conversation/${enc(userId)}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
    signal,
  });
  return json(r);
}

/** The streaming turn: an async iterator of {type, id, data}. */
export function streamConversation(
  userId, message, sessionId,
  { signal, onConnection, nudge, model = null, images = [], extra } = {},
) {
  // extra: edit_of or regenerate (branches.js)
  const body = { message, ...extra };
  if (sessionId) body.session_id = sessionId;
  if (model) body.model = model;
  if (images.length) body.images = images; // [{data: base64, media_type}]
  return streamEvents({
    url: `/api/conversation-stream/${enc(userId)}`,
    init: {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(body),
    },
    resumeUrl: (streamId) => `/api/streams/${enc(streamId)}`,
    signal,
    onConnection,
    nudge,
  });
}

/**
 * An answer already being written (after a reload, in another tab): its
 * events from the first, the text so far then live, resumed like any stream.
 */
export function followStream(streamId, { signal, onConnection, nudge } = {}) {
  return streamEvents({
    streamId,
    resumeUrl: (id) => `/api/streams/${enc(id)}`,
    signal,
    onConnection,
    nudge,
  });
}

/** Delete when the page is going away: the request must outlive it. */
export function deleteSessionOnExit(userId, sessionId) {
  fetch(`/api/sessions/${enc(userId)}/${enc(sessionId)}`, { method: "DELETE", keepalive: true })
    .catch(() => {});
}
