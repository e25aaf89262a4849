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

// The YAML editor: line numbers follow the text, the box grows with it, and a problem's
// "Go to line N" link selects that line.
function editorLines(text) {
  return text.split("\n").length;
}

function editorSync(editor, clearMarks) {
  const area = editor.querySelector("textarea");
  const gutter = editor.querySelector(".code-gutter");
  if (!area || !gutter) return;
  const count = editorLines(area.value);
  if (clearMarks) {
    editor.querySelectorAll(".code-mark").forEach((mark) => mark.remove());
    gutter.querySelectorAll(".is-error").forEach((li) => li.classList.remove("is-error"));
  }
  while (gutter.children.length < count) {
    const li = document.createElement("li");
    li.textContent = String(gutter.children.length + 1);
    gutter.appendChild(li);
  }
  while (gutter.children.length > count) gutter.lastElementChild.remove();
  area.style.height = "auto";
  area.style.height = `${area.scrollHeight + area.offsetHeight - area.clientHeight}px`;
}

document.querySelectorAll("[data-code-editor]").forEach((editor) => {
  editorSync(editor, false);
  const area = editor.querySelector("textarea");
  if (area) area.addEventListener("input", () => editorSync(editor, true));
});

document.addEventListener("click", (event) => {
  const target = event.target instanceof Element ? event.target.closest("[data-goto-line]") : null;
  const area = document.querySelector("[data-code-editor] textarea");
  if (!target || !area) return;
  event.preventDefault();
  const wanted = Number(target.dataset.gotoLine);
  const lines = area.value.split("\n");
  let start = 0;
  for (let i = 0; i < wanted - 1 && i < lines.length; i += 1) start += lines[i].length + 1;
  const end = start + (lines[wanted - 1] || "").length;
  area.focus();
  area.setSelectionRange(start, end);
  area.scrollIntoView({ block: "center" });
});

// Fields marked data-show-when="<select id>:<value>[,<value>]" show only for those values.
function showWhenSync() {
  document.querySelectorAll("[data-show-when]").forEach((el) => {
    const [id, values] = el.dataset.showWhen.split(":");
    const select = document.getElementById(id);
    if (select) el.hidden = !values.split(",").includes(select.value);
  });
}
document.addEventListener("change", (event) => {
  if (event.target instanceof HTMLSelectElement) showWhenSync();
});
showWhenSync();
