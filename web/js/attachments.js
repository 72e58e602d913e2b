// Pictures to send with the next message: chosen by the button, pasted or
// dropped, shown as thumbnails that can be removed, checked against the
// server's limits before anything is uploaded.

const TYPE_NAMES = { "image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WebP", "image/gif": "GIF" };

/** The limits in words: "PNG, JPEG, WebP or GIF up to 5 MB, 4 at most." */
function limitsText({ image_types: types, max_image_bytes: bytes, max_images: count }) {
  const names = types.map((t) => TYPE_NAMES[t] ?? t);
  const listed = names.length > 1
    ? `${names.slice(0, -1).join(", ")} or ${names[names.length - 1]}` : names.join("");
  const mb = Math.round((bytes / 1048576) * 10) / 10;
  return `${listed} up to ${mb} MB, ${count} at most.`;
}

/** The file's bytes as base64 (what the API takes), without the data URL's head. */
function base64Of(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] ?? "");
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

/** The user's image parts as the page shows them: [{url, name}]. */
export function picturesOf(parts) {
  return (parts ?? [])
    .filter((p) => p.type === "image")
    .map((p, i) => ({ url: p.url ?? `data:${p.media_type};base64,${p.data}`, name: `Picture ${i + 1}` }));
}

export class Attachments {
  /**
   * @param {{button: HTMLElement, picker: HTMLInputElement, tray: HTMLElement,
   *          note: HTMLElement, limits: HTMLElement, onChange: () => void}} parts
   */
  constructor({ button, picker, tray, note, limits, onChange }) {
    this.button = button;
    this.limitsNote = limits;
    this.picker = picker;
    this.tray = tray;
    this.note = note;
    this.onChange = onChange;
    /** @type {{file: File, url: string, li: HTMLElement}[]} */
    this.items = [];
    this.limits = null; // until the server has said them, nothing can be added
    button.disabled = true;
    button.addEventListener("click", () => picker.click());
    picker.addEventListener("change", () => {
      this.add([...picker.files]);
      picker.value = ""; // the same file may be chosen again after removing it
    });
  }

  /** The server's limits (GET /api/me): said on the button, checked on each file. */
  useLimits(limits) {
    this.limits = limits;
    this.text = limitsText(limits);
    this.picker.accept = limits.image_types.join(",");
    this.button.title = `Attach pictures: ${this.text}`;
    this.limitsNote.textContent = this.text;
    this.button.disabled = false;
  }

  get count() {
    return this.items.length;
  }

  /** Add what fits; say plainly why the rest was not added. */
  add(files) {
    if (!this.limits) return;
    const refused = [];
    const { image_types: types, max_image_bytes: maxBytes, max_images: most } = this.limits;
    for (const file of files) {
      if (!types.includes(file.type) || file.size > maxBytes || this.items.length >= most) {
        refused.push(file.name || "That file");
        continue;
      }
      const url = URL.createObjectURL(file);
      const name = file.name || `Pasted picture ${this.items.length + 1}`;
      const li = document.createElement("li");
      li.className = "attachment";
      const img = document.createElement("img");
      img.src = url;
      img.alt = name;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "attachment-remove";
      remove.setAttribute("aria-label", `Remove ${name}`);
      remove.textContent = "×";
      const item = { file, url, li };
      remove.addEventListener("click", () => this.remove(item));
      li.append(img, remove);
      this.tray.append(li);
      this.items.push(item);
    }
    this.say(refused.length ? `${refused.join(", ")} not added: ${this.text}` : "", refused.length > 0);
    this.onChange();
  }

  remove(item) {
    this.items = this.items.filter((i) => i !== item);
    item.li.remove();
    URL.revokeObjectURL(item.url);
    this.say("", false);
    this.onChange();
  }

  say(text, refused) {
    this.tray.hidden = this.items.length === 0;
    this.note.textContent = text || (this.items.length ? this.text : "");
    this.note.hidden = !this.note.textContent;
    this.note.dataset.refused = refused ? "true" : "";
  }

  /**
   * Empty the tray: resolves to the pictures as the API takes them
   * ({data, media_type}) and as the page shows them ({url, name}).
   */
  async take() {
    const items = this.items;
    this.items = [];
    this.tray.replaceChildren();
    this.say("", false);
    this.onChange();
    const images = await Promise.all(
      items.map(async ({ file }) => ({ data: await base64Of(file), media_type: file.type })),
    );
    // The object URLs stay alive: the sent message shows them.
    return { images, shown: items.map(({ url, file }, i) => ({ url, name: file.name || `Picture ${i + 1}` })) };
  }

  /** Paste and drop on `target` add the pictures they carry. */
  listen(target, input) {
    input.addEventListener("paste", (e) => {
      const files = [...(e.clipboardData?.files ?? [])];
      if (!files.length) return; // text is pasted as text
      e.preventDefault();
      this.add(files);
    });
    const carriesFiles = (e) => [...(e.dataTransfer?.types ?? [])].includes("Files");
    target.addEventListener("dragover", (e) => {
      if (!carriesFiles(e)) return;
      e.preventDefault();
      target.dataset.dropping = "true";
    });
    target.addEventListener("dragleave", () => { delete target.dataset.dropping; });
    target.addEventListener("drop", (e) => {
      delete target.dataset.dropping;
      if (!carriesFiles(e)) return;
      e.preventDefault();
      this.add([...e.dataTransfer.files]);
    });
  }
}
