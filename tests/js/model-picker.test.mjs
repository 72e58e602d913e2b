// The model picker's memory: per conversation, the last choice for a new one, and only
// what the server lists. Node has no DOM: a <select> and localStorage are stood in for.
import { test, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { ModelPicker } from "../../web/js/model-picker.js";

class FakeSelect {
  constructor() {
    this.options = [];
    this._value = "";
    this.listeners = [];
  }
  replaceChildren(...options) {
    this.options = options;
    this._value = options[0]?.value ?? "";
  }
  get value() {
    return this._value;
  }
  set value(v) {
    // As a real <select>: a value no option has selects nothing.
    this._value = this.options.some((o) => o.value === v) ? v : "";
  }
  addEventListener(_type, fn) {
    this.listeners.push(fn);
  }
  choose(v) {
    this.value = v;
    for (const fn of this.listeners) fn();
  }
}

globalThis.Option = class {
  constructor(text, value) {
    this.text = text;
    this.value = value;
  }
};

const MODELS = [
  { id: "sluice", owned_by: "sluice" },
  { id: "openai", owned_by: "openai" },
  { id: "gpt-4o-mini", owned_by: "openai" },
  { id: "gemini", owned_by: "gemini" },
];

beforeEach(() => {
  const store = new Map();
  globalThis.localStorage = {
    getItem: (k) => (store.has(k) ? store.get(k) : null),
    setItem: (k, v) => store.set(k, String(v)),
    removeItem: (k) => store.delete(k),
  };
});

async function picker(session = { id: null }) {
  const select = new FakeSelect();
  const p = new ModelPicker(select, () => session.id);
  await p.load(async () => MODELS);
  return { p, select, session };
}

test("lists what the server lists, the chain first, and names it", async () => {
  const { p, select } = await picker();
  assert.deepEqual(select.options.map((o) => o.value), MODELS.map((m) => m.id));
  assert.equal(select.options[0].text, "Automatic (fallback chain)");
  assert.equal(select.options[2].text, "gpt-4o-mini · openai");
  assert.equal(p.chosen(), null); // the chain: the turn names no model
});

test("each conversation keeps its choice; a new one starts from the last made", async () => {
  const { p, select, session } = await picker();
  session.id = "a";
  p.forSession("a"); // a new conversation takes the choice showing
  select.choose("gemini");
  assert.equal(p.chosen(), "gemini");
  session.id = "b";
  p.forSession("b");
  assert.equal(select.value, "gemini"); // none of its own yet: keeps what shows
  select.choose("openai");
  session.id = "a";
  p.forSession("a");
  assert.equal(select.value, "gemini");
  session.id = null;
  p.forNewChat();
  assert.equal(select.value, "openai"); // the last choice made
});

test("a remembered model no longer listed falls back to the chain", async () => {
  localStorage.setItem("sluice.model", "retired-model");
  localStorage.setItem("sluice.model.a", "retired-model");
  const { p, select } = await picker({ id: "a" });
  assert.equal(select.value, "sluice");
  assert.equal(p.chosen(), null);
});

test("without the list, only the chain is offered", async () => {
  const select = new FakeSelect();
  const p = new ModelPicker(select, () => null);
  await p.load(async () => {
    throw new Error("offline");
  });
  assert.deepEqual(select.options.map((o) => o.value), ["sluice"]);
  assert.equal(p.chosen(), null);
});
