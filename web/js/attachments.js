// Pictures to send with the next message: chosen by the button, pasted or
// dropped, shown as thumbnails that can be removed, checked against the
// server's limits before anything is uploaded.

// The server's own limits (limits.max_image_bytes, limits.max_images and the
// types it accepts, checked there too: 413 / 415). Said to the person as LIMITS_TEXT.
export const IMAGE_TYPES = ["image/png", "image/jpeg", "image/webp", "image/gif"];
export const MAX_IMAGE_BYTES = 5 * 1024 * 1024;
export const MAX_IMAGES = 4;
export const LIMITS_TEXT = "PNG, JPEG, WebP or GIF up to 5 MB, 4 at most.";

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
    this.picker = picker;
    this.tray = tray;
    this.note = note;
    this.onChange = onChange;
    /** @type {{file: File, url: string, li: HTMLElement}[]} */
    this.items = [];
    picker.accept = IMAGE_TYPES.join(",");
    button.title = `Attach pictures: ${LIMITS_TEXT}`;
    limits.textContent = LIMITS_TEXT;
    button.addEventListener("click", () => picker.click());
    picker.addEventListener("change", () => {
      this.add([...picker.files]);
      picker.value = ""; // the same file may be chosen again after removing it
    });
  }

  get count() {
    return this.items.length;
  }

  /** Add what fits; say plainly why the rest was not added. */
  add(files) {
    const refused = [];
    for (const file of files) {
      if (!IMAGE_TYPES.includes(file.type) || file.size > MAX_IMAGE_BYTES
          || this.items.length >= MAX_IMAGES) {
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
    this.say(refused.length ? `${refused.join(", ")} not added: ${LIMITS_TEXT}` : "", refused.length > 0);
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
    this.note.textContent = text || (this.items.length ? LIMITS_TEXT : "");
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
