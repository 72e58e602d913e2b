// Where a growing Markdown text can be cut into "settled" blocks.
//
// While an answer streams, re-rendering the whole text on every frame costs
// time proportional to its length, frame after frame. Instead the renderer
// renders each finished block once and re-renders only the tail. A block is
// finished at a blank line outside a fenced code block, once enough of the
// next line has arrived to see that it starts a new top-level block: not indented (that
// would continue a list item or be indented code), and not a list item
// right after a list (a list with blank lines between items stays one list).
//
// Pure: no DOM, testable under node.

const FENCE = /^ {0,3}(`{3,}|~{3,})/;
const LIST_ITEM = /^(?:[-*+]|\d{1,9}[.)])(?:[ \t]|$)/;

/**
 * Find how far `text` can be settled, scanning from `from` (a line start
 * outside any fence, as returned by a previous call).
 * @returns {number} an index >= from; text.slice(from, index) is made of
 *   whole blocks that later text cannot change (up to reference links, which
 *   the final render of the complete answer takes care of)
 */
export function settledBoundary(text, from = 0) {
  let boundary = from;
  let fence = null; // the opening marker while inside a fence
  let prevBlank = false;
  let blockIsList = false; // the current block holds a top-level list item
  let pos = from;
  for (;;) {
    const nl = text.indexOf("\n", pos);
    if (nl === -1) {
      // The last line is still arriving: its start may be enough to decide,
      // unless it could still become a list marker ("1" -> "1. item").
      const partial = text.slice(pos);
      if (!fence && prevBlank && pos > from && partial !== "" && !/^[ \t]/.test(partial)
          && !/^(?:[-*+]|\d{1,9}[.)]?)$/.test(partial)
          && !(LIST_ITEM.test(partial) && blockIsList)) {
        boundary = pos;
      }
      break;
    }
    const line = text.slice(pos, nl);
    if (fence) {
      const m = FENCE.exec(line);
      if (m && m[1][0] === fence[0] && m[1].length >= fence.length && !line.slice(m[0].length).trim()) {
        fence = null;
      }
      prevBlank = false;
    } else {
      const blank = line.trim() === "";
      const item = LIST_ITEM.test(line);
      if (!blank && prevBlank && pos > from && !/^[ \t]/.test(line) && !(item && blockIsList)) {
        boundary = pos;
        blockIsList = false;
      }
      if (item) blockIsList = true;
      const m = FENCE.exec(line);
      if (m) fence = m[1];
      prevBlank = blank;
    }
    pos = nl + 1;
  }
  return boundary;
}
