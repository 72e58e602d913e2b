// The search box above the history: the list becomes the conversations whose title or
// messages hold every word typed (the server searches; see GET /api/sessions/{user}?q=).

const PAUSE_MS = 200; // typing pauses this long before a search goes

export class HistorySearch {
  /**
   * @param {HTMLInputElement} input
   * @param {() => void} onChange redraw the list (reads `query`)
   */
  constructor(input, onChange) {
    this.input = input;
    let timer = null;
    input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(onChange, PAUSE_MS);
    });
    input.addEventListener("keydown", (e) => {
      // Escape empties the box first; only an empty box lets it through (closing the drawer).
      if (e.key === "Escape" && input.value) {
        e.stopPropagation();
        input.value = "";
        clearTimeout(timer);
        onChange();
      }
    });
  }

  /** What to search for, or "" for the whole list. */
  get query() {
    return this.input.value.trim();
  }
}
