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

/**
 * The unfinished tail of a streaming answer, made safe to render: an
 * emphasis or code span that has opened but not yet closed ("*Demo mo")
 * would show its marker as a stray "*" until the closer arrives. This
 * closes what is open ("*Demo mo*") and drops a marker run the text ends
 * on, which may be either an opener or a closer still arriving. Inside an
 * open code fence nothing is changed: there, asterisks are text.
 *
 * Only for rendering while the answer streams; the complete answer is
 * rendered as it is.
 * @param {string} text the tail (a block or a few) as received so far
 * @returns {string}
 */
export function closeDangling(text) {
  let fence = null;
  let lineStart = 0;
  for (;;) {
    const nl = text.indexOf("\n", lineStart);
    const line = text.slice(lineStart, nl === -1 ? text.length : nl);
    const m = FENCE.exec(line);
    if (m) {
      if (!fence) fence = m[1];
      else if (m[1][0] === fence[0] && m[1].length >= fence.length && !line.slice(m[0].length).trim()) fence = null;
    }
    if (nl === -1) break;
    lineStart = nl + 1;
  }
  if (fence) return text;
  // Work on the last paragraph only: emphasis never spans a blank line.
  const para = text.search(/\n[ \t]*\n(?![\s\S]*\n[ \t]*\n)/);
  const head = para === -1 ? "" : text.slice(0, para);
  let tail = para === -1 ? text : text.slice(para);
  // A marker run at the very end may still become an opener or a closer:
  // hide it until the next character tells.
  tail = tail.replace(/(?:\*+|_+|~~+|`+)$/, "");
  const stack = []; // open delimiter runs: "*", "**", "_", "__", "~~", "`"
  let i = 0;
  while (i < tail.length) {
    const c = tail[i];
    if (c === "\\") {
      i += 2;
      continue;
    }
    if (c === "`") {
      let j = i;
      while (tail[j] === "`") j++;
      const run = tail.slice(i, j);
      const close = tail.indexOf(run, j);
      if (close === -1) {
        stack.push({ run, at: i });
        break; // the rest is code until the closer comes
      }
      i = close + run.length;
      continue;
    }
    if (c === "*" || c === "_" || c === "~") {
      let j = i;
      while (tail[j] === c) j++;
      let run = tail.slice(i, j);
      if (c === "~" && run.length < 2) {
        i = j;
        continue;
      }
      const before = i === 0 ? "\n" : tail[i - 1];
      const after = j < tail.length ? tail[j] : "";
      const atLineStart = /(^|\n)[ \t]*$/.test(tail.slice(0, i));
      if (c === "*" && atLineStart && /[ \t]/.test(after)) {
        i = j; // a list bullet, not emphasis
        continue;
      }
      const canOpen = after !== "" && !/\s/.test(after)
        && !(c === "_" && /[\p{L}\p{N}]/u.test(before));
      const canClose = !/\s/.test(before) && !(c === "_" && /[\p{L}\p{N}]/u.test(after));
      // Close what matches, innermost first ("***x" then "**" closes the bold).
      while (run && canClose && stack.length) {
        const top = stack[stack.length - 1];
        if (top.run[0] !== c) break;
        if (top.run.length <= run.length) {
          stack.pop();
          run = run.slice(top.run.length);
        } else {
          top.run = top.run.slice(run.length);
          run = "";
        }
      }
      if (run && canOpen) stack.push({ run, at: j - run.length });
      i = j;
      continue;
    }
    i++;
  }
  if (!stack.length) return head + tail;
  let closers = "";
  for (let k = stack.length - 1; k >= 0; k--) closers += stack[k].run;
  return head + tail.replace(/\s+$/, "") + closers;
}
