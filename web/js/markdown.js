// Model output -> safe DOM.
//
// Model output is text, never markup (docs/api.md). It is parsed as Markdown
// by marked, with raw HTML in it shown as literal text rather than passed
// through, and the result goes through DOMPurify with a short allow-list
// (no script, no event handlers, no styles, no images or media, links only
// to http(s) and mailto). The page's CSP forbids inline script as a last
// line of defence.

import { Marked } from "../vendor/marked/marked.esm.js";
import DOMPurify from "../vendor/dompurify/purify.es.mjs";
import { decorateCode } from "./code-blocks.js";
import { closeDangling, settledBoundary } from "./md-blocks.js";

function escapeHtml(s) {
  return String(s)
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&#39;");
}

const marked = new Marked({
  gfm: true,
  breaks: false,
  renderer: {
    // Raw HTML in an answer is shown as the text it is.
    html(token) {
      return escapeHtml(token.text);
    },
    // Images from model output would load third-party URLs (a tracking
    // channel); show them as links instead.
    image(token) {
      const label = token.text || token.href;
      return `<a href="${escapeHtml(token.href)}">${escapeHtml(label)}</a>`;
    },
  },
});

const SANITIZE = {
  ALLOWED_TAGS: [
    "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6",
    "hr", "li", "ol", "p", "pre", "s", "strong", "sub", "sup", "table", "tbody", "td",
    "th", "thead", "tr", "ul",
  ],
  ALLOWED_ATTR: ["href", "title", "start", "align", "class"],
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:)/i,
  ALLOW_DATA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName === "A") {
    if (node.hasAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow");
    }
  } else if (node.nodeName === "CODE" && node.hasAttribute("class")) {
    // keep only marked's language-xxx class
    const cls = node.getAttribute("class");
    if (!/^language-[\w+#.-]{1,40}$/.test(cls)) node.removeAttribute("class");
  } else if (node.hasAttribute && node.hasAttribute("class")) {
    node.removeAttribute("class");
  }
});

const DIR_AUTO = "p, li, h1, h2, h3, h4, h5, h6, blockquote, td, th";

/**
 * Render Markdown to a sanitized DocumentFragment. Each block takes its own
 * direction (Arabic right to left, English left to right); code stays LTR and
 * is highlighted (guessing the language of blocks that name none when `guess`).
 */
export function renderMarkdown(text, { guess = true } = {}) {
  const html = marked.parse(text, { async: false });
  const fragment = DOMPurify.sanitize(html, SANITIZE);
  for (const el of fragment.querySelectorAll(DIR_AUTO)) el.setAttribute("dir", "auto");
  for (const el of fragment.querySelectorAll("pre")) el.setAttribute("dir", "ltr");
  return decorateCode(fragment, { guess });
}

/**
 * Renders a growing answer into `container`, touching only what changed:
 * settled blocks are rendered once and kept; the tail is re-rendered.
 */
export class IncrementalMarkdown {
  constructor(container) {
    this.container = container;
    this.settled = 0; // text.slice(0, settled) is rendered for good
    this.tailNodes = [];
    this.text = "";
  }

  update(text, { complete = false } = {}) {
    if (!text.startsWith(this.text.slice(0, this.settled))) {
      this.reset();
    }
    this.text = text;
    const boundary = settledBoundary(text, this.settled);
    this._clearTail();
    if (boundary > this.settled) {
      this.container.append(renderMarkdown(text.slice(this.settled, boundary)));
      this.settled = boundary;
    }
    // The tail is still arriving: an emphasis opened but not yet closed is
    // shown closed, not as a stray "*" (the complete answer renders as sent).
    const rest = text.slice(this.settled);
    const tail = renderMarkdown(complete ? rest : closeDangling(rest), { guess: complete });
    this.tailNodes = [...tail.childNodes];
    this.container.append(tail);
  }

  /**
   * The answer is complete. Block-by-block rendering equals rendering the
   * whole except for reference-style link definitions, which reach back
   * into earlier blocks: only then render once more as one document.
   */
  finish(text) {
    if (/^ {0,3}\[[^\]\n]+\]:/m.test(text)) this.finalize(text);
    else this.update(text, { complete: true });
  }

  /** Render the complete text once, as one document. */
  finalize(text) {
    this.reset();
    this.text = text;
    this.settled = text.length;
    this.container.append(renderMarkdown(text));
  }

  reset() {
    this.container.replaceChildren();
    this.settled = 0;
    this.tailNodes = [];
    this.text = "";
  }

  _clearTail() {
    for (const node of this.tailNodes) node.remove();
    this.tailNodes = [];
  }
}
