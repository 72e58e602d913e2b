// Code blocks in an answer: coloured by highlight.js (vendored, its common languages) and
// given a bar with the language and a Copy button that copies exactly the code.
//
// The bar's words ("python", "Copy") are drawn by CSS from attributes, not written as
// text: the answer's text stays the answer's alone, for the live region that reads it out
// and for a reader who selects and copies it by hand.
//
// highlight.js turns the code's *text* into markup of its own (spans with hljs-* classes,
// everything else escaped), so nothing of the model's output becomes markup here: the
// sanitized block is read as text and replaced by highlight.js's rendering of that text.

import hljs from "../vendor/highlight/highlight.min.js";

// Guessing the language tries every grammar: only for a block that is complete, never for
// the tail still being written (re-rendered at each frame).
const MAX_GUESS_CHARS = 20_000;
// A guess below this relevance is a guess at a line or two ("x = 1" reads as INI): left
// uncoloured rather than coloured wrong.
const MIN_GUESS_RELEVANCE = 3;

function codeText(code) {
  // marked ends every block with one newline the fence did not have.
  return code.textContent.replace(/\n$/, "");
}

async function copyCode(button, text) {
  const label = button.getAttribute("aria-label");
  try {
    await navigator.clipboard.writeText(text);
    button.dataset.state = "copied";
    button.setAttribute("aria-label", "Copied");
  } catch {
    // No clipboard permission: select the code so Ctrl+C works.
    button.dataset.state = "selected";
    button.setAttribute("aria-label", "Selected: press Ctrl+C");
    const code = button.closest(".code-block")?.querySelector("code");
    if (code) getSelection().selectAllChildren(code);
  }
  setTimeout(() => {
    delete button.dataset.state;
    button.setAttribute("aria-label", label);
  }, 1800);
}

function highlight(code, text, guess) {
  const lang = /^language-([\w+#.-]+)$/.exec(code.className)?.[1]?.toLowerCase();
  let result = null;
  if (lang && hljs.getLanguage(lang)) {
    result = hljs.highlight(text, { language: lang, ignoreIllegals: true });
  } else if (!lang && guess && text.length <= MAX_GUESS_CHARS) {
    result = hljs.highlightAuto(text);
    if (result.relevance < MIN_GUESS_RELEVANCE) result = null;
  }
  if (!result) return lang ?? "";
  code.innerHTML = result.value; // highlight.js escapes the text; only its spans are markup
  code.classList.add("hljs");
  return lang ?? result.language ?? "";
}

/**
 * Highlight each code block of a rendered (sanitized) fragment and give it its bar.
 * @param {DocumentFragment} fragment
 * @param {{guess?: boolean}} [opts] guess: find the language of blocks that name none
 */
export function decorateCode(fragment, { guess = false } = {}) {
  for (const pre of fragment.querySelectorAll("pre")) {
    const code = pre.querySelector("code");
    if (!code) continue;
    const text = codeText(code);
    const lang = highlight(code, text, guess);
    const block = document.createElement("div");
    block.className = "code-block";
    const bar = document.createElement("div");
    bar.className = "code-bar";
    const label = document.createElement("span");
    label.className = "code-lang";
    label.dataset.lang = lang || "code";
    label.setAttribute("aria-hidden", "true"); // the button's name says it
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "code-copy";
    copy.setAttribute("aria-label", lang ? `Copy ${lang} code` : "Copy code");
    copy.addEventListener("click", () => copyCode(copy, text));
    bar.append(label, copy);
    pre.replaceWith(block);
    block.append(bar, pre);
  }
  return fragment;
}
