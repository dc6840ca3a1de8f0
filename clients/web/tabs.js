// The three views as an ARIA tab list: click, or arrow keys / Home / End when a tab has focus.

const NAMES = ["live", "library", "search"];

export function showTab(name, focus = false) {
  for (const other of NAMES) {
    const tab = document.getElementById(`tab-${other}`);
    const chosen = other === name;
    tab.setAttribute("aria-selected", String(chosen));
    tab.tabIndex = chosen ? 0 : -1;
    document.getElementById(`view-${other}`).hidden = !chosen;
    if (chosen && focus) tab.focus();
  }
  window.dispatchEvent(new CustomEvent("vx:tab", { detail: name }));
}

for (const [i, name] of NAMES.entries()) {
  const tab = document.getElementById(`tab-${name}`);
  tab.onclick = () => showTab(name);
  tab.onkeydown = (ev) => {
    const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: NAMES.length - 1 }[ev.key];
    if (next === undefined) return;
    ev.preventDefault();
    showTab(NAMES[(next + NAMES.length) % NAMES.length], true);
  };
}
