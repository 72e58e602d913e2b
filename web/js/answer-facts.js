// Which provider and model wrote an answer, kept for when the conversation is
// reopened from history. The session API may return these facts with each
// stored answer; where it does not, this browser remembers them from the
// `complete` event, keyed by the session and a hash of the answer's text (the
// stored answer is exactly `complete.message`). Bounded: the oldest go first.

const KEY = "sluice.answer-facts";
const LIMIT = 500;

function hash(text) {
  // FNV-1a, 32 bits: a key, not a secret.
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(36) + ":" + text.length.toString(36);
}

function load(storage) {
  try {
    const value = JSON.parse(storage.getItem(KEY) ?? "[]");
    return Array.isArray(value) ? value : [];
  } catch {
    return [];
  }
}

/** Remember the facts of an answer just completed. */
export function rememberFacts(sessionId, text, facts, storage = globalThis.localStorage) {
  if (!storage || !sessionId || typeof text !== "string" || !facts?.provider) return;
  const key = `${sessionId}|${hash(text)}`;
  const entries = load(storage).filter(([k]) => k !== key);
  entries.push([key, { provider: facts.provider, model: facts.model ?? null, fallback: !!facts.fallback }]);
  try {
    storage.setItem(KEY, JSON.stringify(entries.slice(-LIMIT)));
  } catch {
    /* storage full or off: the label is a convenience */
  }
}

/** The facts of a stored answer: the server's when it sent them, else remembered ones. */
export function factsFor(sessionId, message, storage = globalThis.localStorage) {
  const own = message?.facts ?? message;
  if (own?.provider) return { provider: own.provider, model: own.model ?? null, fallback: !!own.fallback };
  if (!storage || !sessionId || typeof message?.content !== "string") return null;
  const key = `${sessionId}|${hash(message.content)}`;
  const found = load(storage).find(([k]) => k === key);
  return found ? found[1] : null;
}
