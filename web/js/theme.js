// The theme: the system's (the default: dark follows prefers-color-scheme), or light or
// dark as the reader chose, remembered in this browser. The CSS reads data-theme on the
// root; theme-boot.js sets it before the first paint.

const KEY = "sluice.theme";
const CHOICES = ["system", "light", "dark"];

function stored() {
  try {
    const value = localStorage.getItem(KEY);
    return CHOICES.includes(value) ? value : "system";
  } catch {
    return "system";
  }
}

function apply(choice) {
  const root = document.documentElement;
  if (choice === "system") delete root.dataset.theme;
  else root.dataset.theme = choice;
}

/** Wire the radio buttons named `theme` to the stored choice. */
export function setUpTheme() {
  const current = stored();
  apply(current);
  for (const radio of document.querySelectorAll('input[name="theme"]')) {
    radio.checked = radio.value === current;
    radio.addEventListener("change", () => {
      if (!radio.checked) return;
      apply(radio.value);
      try {
        if (radio.value === "system") localStorage.removeItem(KEY);
        else localStorage.setItem(KEY, radio.value);
      } catch {
        /* not remembered, but applied */
      }
    });
  }
}
