/* Gateway console: small progressive enhancements (every page works without them). */
"use strict";

// Forms marked data-confirm ask before submitting (removals, deactivation).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});

async function copyFrom(selector) {
  const input = document.querySelector(selector);
  if (!input) return false;
  try {
    await navigator.clipboard.writeText(input.value);
    return true;
  } catch {
    input.select();
    return document.execCommand("copy");
  }
}

document.addEventListener("click", async (event) => {
  const target = event.target instanceof Element ? event.target : null;
  const copy = target && target.closest("[data-copy]");
  if (copy) {
    const ok = await copyFrom(copy.dataset.copy);
    const label = copy.textContent;
    copy.textContent = ok ? "Copied" : "Press Ctrl+C";
    setTimeout(() => { copy.textContent = label; }, 1800);
    return;
  }
  const dismiss = target && target.closest("[data-dismiss]");
  if (dismiss && dismiss.parentElement) dismiss.parentElement.remove();
});
