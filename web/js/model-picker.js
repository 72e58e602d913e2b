// The model picker: what GET /v1/models lists ("sluice", the configured fallback chain,
// then each provider and its model). The choice goes with the next turn as its `model`.
//
// Remembered per conversation in this browser (localStorage, by session id), and the last
// choice made is where a new conversation starts. The server keeps who answered each
// message (provider and model, with the answer), so what matters across devices is already
// in history; the picker's setting is this reader's preference for their next message.

const LAST_KEY = "sluice.model";
const keyFor = (sessionId) => `sluice.model.${sessionId}`;
const CHAIN = "sluice";

function read(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

function write(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {
    /* not remembered, but used for this turn */
  }
}

function label(model) {
  if (model.id === CHAIN) return "Automatic (fallback chain)";
  return model.owned_by && model.owned_by !== model.id ? `${model.id} · ${model.owned_by}` : model.id;
}

export class ModelPicker {
  /**
   * @param {HTMLSelectElement} select
   * @param {() => string | null} currentSession the conversation on screen, if any
   */
  constructor(select, currentSession) {
    this.select = select;
    this.currentSession = currentSession;
    this.ids = [CHAIN];
    select.addEventListener("change", () => {
      const sessionId = this.currentSession();
      if (sessionId) write(keyFor(sessionId), select.value);
      write(LAST_KEY, select.value);
    });
  }

  /** Fill the list from the server; on failure, only the fallback chain is offered. */
  async load(fetchModels) {
    let models = [];
    try {
      models = await fetchModels();
    } catch {
      /* the chain needs no list */
    }
    if (!models.some((m) => m.id === CHAIN)) models.unshift({ id: CHAIN, owned_by: "sluice" });
    this.ids = models.map((m) => m.id);
    this.select.replaceChildren(...models.map((m) => new Option(label(m), m.id)));
    this._show(read(LAST_KEY));
    const sessionId = this.currentSession();
    if (sessionId) this.forSession(sessionId);
  }

  _show(id) {
    this.select.value = this.ids.includes(id) ? id : CHAIN;
  }

  /**
   * A conversation is on screen: show its choice, or, when it has none (new, or from
   * another browser), give it the one showing.
   */
  forSession(sessionId) {
    const stored = read(keyFor(sessionId));
    if (stored !== null) this._show(stored);
    else write(keyFor(sessionId), this.select.value);
  }

  /** A new chat starts with the last choice made. */
  forNewChat() {
    this._show(read(LAST_KEY));
  }

  /** The `model` for the next turn: null for the fallback chain. */
  chosen() {
    return this.select.value && this.select.value !== CHAIN ? this.select.value : null;
  }
}
