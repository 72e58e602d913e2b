// A short notice at the bottom of the page, with an optional action
// ("Conversation deleted. Undo"). One at a time: a new one replaces the old.

const $ = (id) => document.getElementById(id);

let current = null;

/**
 * @param {string} text
 * @param {{action?: {label: string, run: () => void}, ms?: number,
 *          onExpire?: () => void}} [opts] onExpire runs when the notice
 *   goes away without its action being taken (timeout or replaced)
 * @returns {{dismiss: () => void}}
 */
export function showToast(text, { action = null, ms = 6000, onExpire = () => {} } = {}) {
  current?.expire();
  const box = $("toast");
  const label = $("toast-text");
  const button = $("toast-action");
  label.textContent = text;
  button.hidden = !action;
  button.textContent = action?.label ?? "";
  box.hidden = false;
  let open = true;
  const close = () => {
    if (!open) return false;
    open = false;
    clearTimeout(timer);
    button.onclick = null;
    if (current === handle) {
      current = null;
      box.hidden = true;
    }
    return true;
  };
  const handle = {
    dismiss: () => close(),
    expire: () => {
      if (close()) onExpire();
    },
  };
  const timer = setTimeout(handle.expire, ms);
  button.onclick = () => {
    if (close()) action.run();
  };
  current = handle;
  return handle;
}
