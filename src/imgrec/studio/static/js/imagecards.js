// An image with actions right where it is shown (audit findings, confusion cells, the most
// confidently wrong): view full size, move to another class, delete, and (for findings)
// keep. Every action is undoable from the snackbar.

import { deleteImages, moveImages } from "./api.js";
import { button, h, newId, select } from "./dom.js";
import { offerUndo } from "./notify.js";
import { openViewer } from "./viewer.js";

/**
 * A figure for `image` ({cls, name, url, thumb, missing?}); `lines` are captions;
 * `classes` the project's class names; `onChange(kind, image)` after a move/delete (and its
 * undo); `extra` more buttons. `all` the list it sits in, for the viewer's previous/next.
 */
export function imageCard(pid, image, { lines = [], classes = [], onChange, extra = [], all } = {}) {
  const thumb = image.missing
    ? h("div", { class: "thumb missing" }, "moved or deleted")
    : button(
        h("img", { src: image.thumb, alt: "", width: "120", height: "120", loading: "lazy", decoding: "async" }),
        () => {
          const list = all && all.length ? all : [image];
          openViewer(async (i) => list[i], Math.max(0, list.indexOf(image)), list.length);
        },
        { class: "thumb", "aria-label": `View ${image.cls}/${image.name} full size` },
      );
  const card = h(
    "figure",
    { class: "image-card", dataset: { cls: image.cls, name: image.name } },
    thumb,
    h("figcaption", {}, h("span", { class: "image-name", title: image.name }, image.name), lines.map((l) => h("span", { class: "muted" }, l))),
  );
  if (!image.missing) card.append(actions(pid, image, classes, onChange, extra));
  return card;
}

function actions(pid, image, classes, onChange, extra) {
  const others = classes.filter((c) => c !== image.cls);
  const target = select(others, others[0], { "aria-label": `Move ${image.name} to class` });
  const move = button("Move", async () => {
    const action = await moveImages(pid, [image], target.value);
    offerUndo(pid, action, () => onChange?.("undo", image));
    onChange?.("move", image);
  }, { "aria-label": `Move ${image.name} to the chosen class` });
  const remove = button("Delete", async () => {
    const action = await deleteImages(pid, [image]);
    offerUndo(pid, action, () => onChange?.("undo", image));
    onChange?.("delete", image);
  }, { class: "danger", "aria-label": `Delete ${image.name}` });
  const row = h("div", { class: "image-actions" }, extra, remove);
  if (others.length) row.prepend(h("span", { class: "move-to" }, target, move));
  target.id = newId("move");
  return row;
}
