// Before the first paint (a classic script in <head>, not a module): the reader's chosen
// theme, so that a page set to dark never flashes light. theme.js does the rest.
try {
  const theme = localStorage.getItem("sluice.theme");
  if (theme === "light" || theme === "dark") document.documentElement.dataset.theme = theme;
} catch {
  /* no storage (a locked-down browser): the system's choice */
}
