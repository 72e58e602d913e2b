// Errors as a person would want to read them.
//
// Sources: `error` events in a stream (docs/api.md), JSON error bodies
// (docs/api.md, via HttpError), and a lost connection (StreamLostError). Each becomes
// {text, retryable, retryAfter}: the sentence to show, whether a Retry
// button makes sense, and the seconds to wait before it does.
//
// The server's own message comes first: it knows what went wrong ("the
// server's operator must set a valid API key"), and a guess from the code
// alone would hide that. The page's wording below is for what the server
// could not say: the network failing, or an answer without a message.

const MESSAGES = {
  rate_limited: "You're sending messages faster than allowed.",
  too_many_streams: "Another answer is still being written.",
  budget_exhausted: "Your usage budget is used up for now.",
  upstream_unavailable: "The answer service is unavailable right now.",
  upstream_interrupted: "The answer was interrupted before it finished.",
  timeout: "The answer took too long.",
  cancelled: "Stopped.",
  internal: "Something went wrong on the server.",
  connection_lost: "The connection was lost.",
  http_400: "That message could not be sent.",
  http_401: "Your session has expired. Reload the page.",
  http_403: "This page is not allowed to send messages. Reload the page.",
  http_404: "That conversation no longer exists.",
  http_413: "That message is too long.",
  http_415: "That message could not be sent.",
  http_429: "You're sending messages faster than allowed.",
  http_502: "The answer service is unavailable right now.",
  http_503: "The server is not ready. Try again shortly.",
  http_504: "The answer took too long.",
};

const RETRYABLE_CODES = new Set([
  "rate_limited", "too_many_streams", "upstream_unavailable", "upstream_interrupted",
  "timeout", "internal", "connection_lost", "http_429", "http_502", "http_503", "http_504",
]);

/** "12 s", "1 min 5 s": how long, for a person. */
export function formatWait(seconds) {
  const s = Math.max(1, Math.ceil(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  const r = s % 60;
  return r ? `${m} min ${r} s` : `${m} min`;
}

/**
 * @param {{code?: string, message?: string, retryable?: boolean,
 *          retry_after?: number, retryAfter?: number, status?: number}} err
 * @returns {{code: string, text: string, retryable: boolean, retryAfter: number | null}}
 */
export function describeError(err) {
  const code = err?.code || (err?.status ? `http_${err.status}` : "internal");
  const retryAfterRaw = err?.retry_after ?? err?.retryAfter ?? null;
  const retryAfter = retryAfterRaw != null && Number.isFinite(Number(retryAfterRaw))
    ? Math.max(0, Number(retryAfterRaw))
    : null;
  const retryable = typeof err?.retryable === "boolean" ? err.retryable : RETRYABLE_CODES.has(code);
  // A JavaScript Error's message is ours (or the browser's: "Failed to
  // fetch"), never shown; an HttpError carries the server's separately.
  const fromServer = err instanceof Error ? err.serverMessage : err?.message;
  const serverText = typeof fromServer === "string" && fromServer.trim() ? fromServer.trim() : null;
  // A stop is the person's own doing: one word for it, whoever ended it.
  let text = code === "cancelled"
    ? MESSAGES.cancelled
    : serverText || MESSAGES[code] || "Something went wrong.";
  if (retryable && retryAfter) {
    if (!/try again in/i.test(text)) text += ` Try again in ${formatWait(retryAfter)}.`;
  } else if (retryable && !serverText && code !== "cancelled") {
    text += " You can try again.";
  }
  return { code, text, retryable, retryAfter };
}
