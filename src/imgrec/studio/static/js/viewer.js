// The one place a full-size image is loaded: a modal <dialog> with previous/next. Closing
// it drops the image (src removed), so the page never keeps full-size photos around.

import { ICONS, button, h, icon, replace } from "./dom.js";

let dialog = null;

function build() {
  const img = h("img", { class: "viewer-image", alt: "" });
  const caption = h("p", { class: "viewer-caption", id: "viewer-caption" });
  const prev = button("‹ Previous", null, { class: "viewer-prev" });
  const next = button("Next ›", null, { class: "viewer-next" });
  const close = button(icon(ICONS.close), () => dialog.close(), {
    class: "icon-button viewer-close",
    "aria-label": "Close the viewer",
  });
  const node = h(
    "dialog",
    { class: "viewer", "aria-labelledby": "viewer-caption" },
    h("div", { class: "viewer-bar" }, caption, close),
    h("div", { class: "viewer-body" }, img),
    h("div", { class: "viewer-nav" }, prev, next),
  );
  node.addEventListener("close", () => {
    img.removeAttribute("src");
    node.state = null;
  });
  node.addEventListener("keydown", (event) => {
    if (event.key === "ArrowLeft") step(-1);
    if (event.key === "ArrowRight") step(1);
  });
  prev.addEventListener("click", () => step(-1));
  next.addEventListener("click", () => step(1));
  document.body.append(node);
  return Object.assign(node, { img, caption, prev, next });
}

async function show(index) {
  const state = dialog.state;
  if (!state) return;
  const image = await state.get(index);
  if (!image || dialog.state !== state) return;
  state.index = index;
  dialog.img.src = image.url;
  dialog.img.alt = image.name;
  replace(dialog.caption, `${image.cls} / ${image.name} (${index + 1} of ${state.count})`);
  dialog.prev.disabled = index <= 0;
  dialog.next.disabled = index >= state.count - 1;
}

function step(delta) {
  const state = dialog?.state;
  if (!state) return;
  const index = state.index + delta;
  if (index >= 0 && index < state.count) show(index);
}

/**
 * Open the viewer at `index` of `count` images; `get(index)` resolves to an Image
 * ({cls, name, url}) or null.
 */
export function openViewer(get, index, count) {
  dialog = dialog || build();
  dialog.state = { get, index, count };
  if (!dialog.open) dialog.showModal();
  show(index);
}
