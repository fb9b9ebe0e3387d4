// Building the page without innerHTML: every piece of data reaches the DOM as textContent or
// as an attribute value, so a class named `<img src=x onerror=alert(1)>` stays a name.

/**
 * Create an element. `props` keys: class, text, on (event -> handler), dataset, and any
 * other key as an attribute (`false`/`null`/`undefined` leave it out, `true` sets it empty).
 * Children are nodes or strings (strings become text nodes); null/false/arrays are handled.
 */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key === "on") for (const [type, fn] of Object.entries(value)) node.addEventListener(type, fn);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "value") node.value = value;
    else if (key === "checked" || key === "selected" || key === "disabled") node[key] = Boolean(value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

/** Append children (nodes, strings, nested arrays; null and false are skipped). */
export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replace every child of `node` with `children`. */
export function replace(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

/** A <button type="button">; `onClick` may be async: the button is disabled while it runs. */
export function button(label, onClick, props = {}) {
  const node = h("button", { type: "button", ...props }, label);
  if (onClick) {
    node.addEventListener("click", async (event) => {
      if (node.dataset.busy) return;
      node.dataset.busy = "1";
      node.disabled = true;
      try {
        await onClick(event);
      } catch (error) {
        reportFailure(error);
      } finally {
        delete node.dataset.busy;
        node.disabled = false;
      }
    });
  }
  return node;
}

let failureReporter = (error) => console.error(error);

/** Where errors thrown by handlers go (app.js points it at the visible error region). */
export function onFailure(fn) {
  failureReporter = fn;
}

function reportFailure(error) {
  failureReporter(error);
}

/** A form whose submit runs `onSubmit` (errors to the visible region) instead of navigating. */
export function form(props, onSubmit, ...children) {
  const submit = async (event) => {
    event.preventDefault();
    try {
      await onSubmit(event);
    } catch (error) {
      reportFailure(error);
    }
  };
  return h("form", { ...props, on: { submit } }, ...children);
}

/**
 * A labelled text field and a submit button: `onName(text)` gets the trimmed text; empty
 * text shows `empty` instead and puts the focus back. `input` is exposed for focusing.
 */
export function nameForm({ label, submit, empty, onName, props = {}, buttonProps = {} }) {
  const input = h("input", { type: "text", maxlength: "80", autocomplete: "off" });
  const element = form(
    props,
    async () => {
      const text = input.value.trim();
      if (!text) {
        input.focus();
        throw new Error(empty);
      }
      if ((await onName(text)) !== false) input.value = "";
    },
    field(label, input),
    h("button", { type: "submit", ...buttonProps }, submit),
  );
  return { element, input };
}

/**
 * Edit a name where `title` stood: Save hands the new name to `onSave` (unless it is empty
 * or unchanged), Cancel puts `title` back; `restore()` also puts it back.
 */
export function renameInPlace(title, { label, value, onSave, restore }) {
  const input = h("input", { type: "text", value, maxlength: "80" });
  const back = restore || (() => element.replaceWith(title));
  const element = form(
    { class: "inline-form" },
    async () => {
      const name = input.value.trim();
      if (!name || name === value) return back();
      return onSave(name);
    },
    field(label, input),
    h("button", { type: "submit", class: "primary" }, "Save"),
    button("Cancel", () => back()),
  );
  title.replaceWith(element);
  input.focus();
  input.select();
}

let uid = 0;

/** A unique id for label/input pairs. */
export function newId(prefix = "f") {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled control: <label for> + the control, wrapped in a .field div. */
export function field(labelText, control, hint) {
  if (!control.id) control.id = newId();
  const parts = [h("label", { for: control.id }, labelText), control];
  if (hint) {
    const hintNode = h("span", { class: "hint", id: newId("hint") }, hint);
    control.setAttribute("aria-describedby", hintNode.id);
    parts.push(hintNode);
  }
  return h("div", { class: "field" }, parts);
}

let fileInputs = 0;

/** A file input behind a visible label that looks like a button (keyboard: Tab, Enter). */
export function fileButton(text, { multiple = false, accept, onFiles, id }) {
  fileInputs += 1;
  const input = h("input", { type: "file", class: "file-input", multiple, accept, id: id || `file-${fileInputs}` });
  input.addEventListener("change", () => {
    const files = [...input.files];
    input.value = "";
    if (files.length) onFiles(files);
  });
  return h("span", { class: "file-button" }, input, h("label", { for: input.id, class: "button" }, text));
}

/** A <select> of `choices` ([value, label] pairs or plain strings). */
export function select(choices, value, props = {}) {
  const node = h("select", props);
  for (const choice of choices) {
    const [v, label] = Array.isArray(choice) ? choice : [choice, choice];
    node.append(h("option", { value: v, selected: v === value }, label));
  }
  if (value !== undefined) node.value = value;
  return node;
}

/** A percentage from a 0-1 fraction: 0.9612 -> "96%", with `digits` decimals when asked. */
export function percent(fraction, digits = 0) {
  if (typeof fraction !== "number" || !Number.isFinite(fraction)) return "–";
  return `${(fraction * 100).toFixed(digits)}%`;
}

/** "3 images", "1 image". */
export function plural(n, word, many = `${word}s`) {
  return `${n} ${n === 1 ? word : many}`;
}

/** A short local time for an ISO 8601 string. */
export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

/** Seconds as "1 min 20 s" / "45 s". */
export function duration(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 0) return "";
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** An inline SVG icon drawn from path data (no icon font, nothing fetched). */
export function icon(pathData, label) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "18");
  svg.setAttribute("height", "18");
  svg.setAttribute("class", "icon");
  if (label) {
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", label);
  } else {
    svg.setAttribute("aria-hidden", "true");
  }
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", pathData);
  path.setAttribute("fill", "currentColor");
  svg.append(path);
  return svg;
}

export const ICONS = {
  camera: "M9 3 7.2 5H4a2 2 0 0 0-2 2v12a2 2 0 0 0 2 2h16a2 2 0 0 0 2-2V7a2 2 0 0 0-2-2h-3.2L15 3H9zm3 5a5 5 0 1 1 0 10 5 5 0 0 1 0-10zm0 2a3 3 0 1 0 0 6 3 3 0 0 0 0-6z",
  upload: "M12 3 6 9h4v6h4V9h4l-6-6zM4 17v3h16v-3h-2v1H6v-1H4z",
  trash: "M9 3h6l1 2h4v2H4V5h4l1-2zM6 9h12l-1 12H7L6 9z",
  check: "M9 16.2 4.8 12l-1.4 1.4L9 19 21 7l-1.4-1.4L9 16.2z",
  close: "M6.4 5 5 6.4 10.6 12 5 17.6 6.4 19 12 13.4 17.6 19 19 17.6 13.4 12 19 6.4 17.6 5 12 10.6 6.4 5z",
};
