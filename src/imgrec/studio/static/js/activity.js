// The Activity list: every change to classes and images, newest first, each with Undo while
// the server says it can still be undone (GET actions, POST actions/{aid}/undo).

import { listActions } from "./api.js";
import { button, h, replace, when } from "./dom.js";
import { undo } from "./notify.js";

/** A <details> "Activity" panel; `afterUndo()` refreshes the view. Returns {element, reload}. */
export function activityPanel(pid, afterUndo) {
  const list = h("ol", { class: "activity-list" });
  const element = h(
    "details",
    { class: "activity card" },
    h("summary", {}, "Activity (undo earlier changes)"),
    list,
  );
  async function reload() {
    if (!element.open) return;
    const { actions } = await listActions(pid);
    if (!actions.length) {
      replace(list, h("li", { class: "muted" }, "Nothing changed yet."));
      return;
    }
    replace(list, actions.map((action) => row(action)));
  }
  function row(action) {
    const status = action.undone ? h("span", { class: "badge" }, "undone") : null;
    const undoButton =
      action.undoable && !action.undone
        ? button("Undo", async () => {
            await undo(pid, action);
            await reload();
            await afterUndo?.();
          }, { "aria-label": `Undo: ${action.summary}` })
        : null;
    return h(
      "li",
      { class: action.undone ? "undone" : "" },
      h("span", { class: "activity-summary" }, action.summary),
      h("time", { class: "muted", datetime: action.time || "" }, when(action.time)),
      status,
      undoButton,
    );
  }
  element.addEventListener("toggle", () => reload().catch(() => {}));
  return { element, reload: () => reload().catch(() => {}) };
}
