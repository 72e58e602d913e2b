// Which suggestions to offer after an answer. Pure: no DOM, tested under node.
//
// The server's suggestions come from its configuration, usually in one
// language. They are offered only when they are written in the script the
// conversation uses (an Arabic conversation is not offered English
// follow-ups), and never the message that was just sent. Languages that share
// a script (English and French) cannot be told apart this way: both pass.

const SCRIPTS = [
  ["arabic", /[\u0600-\u06FF\u0750-\u077F\u08A0-\u08FF\uFB50-\uFDFF\uFE70-\uFEFF]/gu],
  ["hebrew", /[\u0590-\u05FF]/gu],
  ["cyrillic", /[\u0400-\u04FF]/gu],
  ["greek", /[\u0370-\u03FF]/gu],
  ["han", /[\u3040-\u30FF\u3400-\u4DBF\u4E00-\u9FFF]/gu], // with kana: Japanese too
  ["hangul", /[\uAC00-\uD7AF\u1100-\u11FF]/gu],
  ["devanagari", /[\u0900-\u097F]/gu],
  ["thai", /[\u0E00-\u0E7F]/gu],
  ["latin", /[A-Za-z\u00C0-\u024F]/gu],
];

/** The script most of the letters of `text` are written in, or null. */
export function dominantScript(text) {
  let best = null;
  let bestCount = 0;
  for (const [name, re] of SCRIPTS) {
    const count = (String(text).match(re) ?? []).length;
    if (count > bestCount) {
      best = name;
      bestCount = count;
    }
  }
  return best;
}

function normal(text) {
  return String(text).toLocaleLowerCase().replace(/[\s\p{P}]+/gu, " ").trim();
}

/**
 * @param {string[]} suggestions from the `complete` event
 * @param {string} lastMessage the user's message this answer answered
 * @returns {string[]}
 */
export function pickSuggestions(suggestions, lastMessage) {
  const script = dominantScript(lastMessage ?? "");
  const sent = normal(lastMessage ?? "");
  return (suggestions ?? []).filter((s) => {
    if (typeof s !== "string" || !s.trim()) return false;
    if (normal(s) === sent) return false;
    const own = dominantScript(s);
    return script === null || own === null || own === script;
  });
}
