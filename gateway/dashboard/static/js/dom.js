// Building the page: every text goes in through textContent (never innerHTML), so data from the identity
// provider cannot inject markup.

export function h(tag, props, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") element.className = value;
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "value") element.value = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

// Re-render `container` without losing the keyboard focus of an element inside it that has a data-focus key.
export function rerender(container, ...children) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.focus : undefined;
  replace(container, ...children);
  if (key) container.querySelector(`[data-focus="${CSS.escape(key)}"]`)?.focus();
}

// "Run **Test Connection** with `userName`": bold and code spans from a tiny markup, still without innerHTML.
export function rich(text) {
  return text.split(/(\*\*[^*]+\*\*|`[^`]+`)/).map((part) => {
    if (part.startsWith("**")) return h("strong", null, part.slice(2, -2));
    if (part.startsWith("`")) return h("code", null, part.slice(1, -1));
    return part;
  });
}

export function heading(text) {
  return h("h1", { tabindex: "-1" }, text);
}

export function breadcrumbs(...items) {
  const last = items.length - 1;
  return h(
    "nav",
    { class: "breadcrumbs", "aria-label": "Breadcrumb" },
    h(
      "ol",
      null,
      items.map(([label, href], index) =>
        h("li", null, index === last ? h("span", { "aria-current": "page" }, label) : h("a", { href }, label)),
      ),
    ),
  );
}

/** A scrollable table: `columns` are `{ label, class }` (a column without a visible label is read by screen
 * readers only), `rows` the already built `<tr>` elements. */
export function dataTable({ id, caption, columns, rows }) {
  const header = columns.map((column) =>
    h(
      "th",
      column.class ? { scope: "col", class: column.class } : { scope: "col" },
      column.hidden ? h("span", { class: "visually-hidden" }, column.label) : column.label,
    ),
  );
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { id },
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", null, h("tr", null, ...header)),
      h("tbody", null, rows),
    ),
  );
}

export function badge(state) {
  const value = String(state).toLowerCase();
  return h("span", { class: `badge badge-${value}`, dataset: { state: value } }, value);
}

export function emptyState(title, text, ...actions) {
  return h("div", { class: "empty" }, h("p", { class: "empty-title" }, title), h("p", null, text), actions);
}

export function errorBox(message, retry) {
  return h(
    "div",
    { class: "error-box", role: "alert" },
    h("p", null, message),
    retry ? h("button", { type: "button", class: "secondary", onclick: retry }, "Try again") : null,
  );
}

export function copyButton(getText, label) {
  const button = h("button", { type: "button", class: "secondary copy", "aria-label": `Copy ${label}` }, "Copy");
  button.addEventListener("click", async () => {
    const copied = await copyText(getText());
    button.textContent = copied ? "Copied" : "Select and copy";
    setTimeout(() => (button.textContent = "Copy"), 2000);
  });
  return button;
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard API (plain http on a non-local address): copy through a selected, off-screen text area.
    const area = h("textarea", { class: "offscreen", readonly: true, "aria-hidden": "true" });
    area.value = text;
    document.body.append(area);
    area.select();
    const copied = document.execCommand("copy");
    area.remove();
    return copied;
  }
}

export function toast(message) {
  const region = document.getElementById("toast");
  const item = h("p", { class: "toast" }, message);
  region.append(item);
  setTimeout(() => item.remove(), 5000);
}

export function confirmAction({ title, message, confirmLabel, danger = false }) {
  return new Promise((resolve) => {
    const dialog = h(
      "dialog",
      { class: "confirm", "aria-labelledby": "confirm-title" },
      h(
        "form",
        { method: "dialog" },
        h("h2", { id: "confirm-title" }, title),
        h("p", null, message),
        h(
          "div",
          { class: "actions" },
          h("button", { value: "cancel", class: "secondary" }, "Cancel"),
          h("button", { value: "confirm", class: danger ? "danger" : "primary" }, confirmLabel),
        ),
      ),
    );
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "confirm");
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

export function formatTime(iso) {
  const date = new Date(iso);
  return date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function formatDate(iso) {
  return new Date(iso).toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
}

// Run `task` soon after `schedule()`; calls while it waits or runs collapse into one more run, so a burst of live
// events costs one refresh rather than one per event.
export function coalesce(task, delayMs = 100) {
  let timer = null;
  let running = false;
  let again = false;
  async function run() {
    timer = null;
    running = true;
    try {
      await task();
    } finally {
      running = false;
      if (again) {
        again = false;
        schedule();
      }
    }
  }
  function schedule() {
    if (running) again = true;
    else if (timer === null) timer = setTimeout(run, delayMs);
  }
  function cancel() {
    clearTimeout(timer);
    timer = null;
    again = false;
  }
  return { schedule, cancel };
}
