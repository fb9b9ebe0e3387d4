// What the page tells the person: errors (an assertive live region that stays until
// dismissed), quiet status lines, and the snackbar that offers Undo after every change.

import { undoAction } from "./api.js";
import { ICONS, button, h, icon, replace } from "./dom.js";

const MAX_ERRORS = 4;
const SNACK_SECONDS = 10;

/** Show one error sentence in the visible aria-live region (#errors). */
export function showError(error) {
  const message = typeof error === "string" ? error : error?.message || String(error);
  const region = document.getElementById("errors");
  if (!region) return;
  for (const item of region.querySelectorAll(".error-item")) {
    if (item.dataset.message === message) item.remove(); // the same sentence once, newest
  }
  const close = button(icon(ICONS.close), () => item.remove(), {
    class: "icon-button",
    "aria-label": "Dismiss this message",
  });
  const item = h("div", { class: "error-item", dataset: { message } }, h("p", {}, message), close);
  region.prepend(item);
  while (region.children.length > MAX_ERRORS) region.lastElementChild.remove();
}

/** Remove every shown error (a new view starts clean). */
export function clearErrors() {
  document.getElementById("errors")?.replaceChildren();
}

/** A polite status line for screen readers and eyes (#status). */
export function announce(text) {
  const region = document.getElementById("status");
  if (region) region.textContent = text;
}

let snackTimer = 0;

/** The snackbar: a sentence and an optional action button ("Undo"). */
export function snackbar(message, actionLabel, onAction) {
  const bar = document.getElementById("snackbar");
  if (!bar) return;
  clearTimeout(snackTimer);
  const parts = [h("span", { class: "snack-text" }, message)];
  if (actionLabel && onAction) {
    parts.push(
      button(actionLabel, async () => {
        hideSnackbar();
        await onAction();
      }, { class: "snack-action" }),
    );
  }
  parts.push(
    button(icon(ICONS.close), hideSnackbar, { class: "icon-button", "aria-label": "Close" }),
  );
  replace(bar, ...parts);
  bar.hidden = false;
  const hideLater = () => {
    snackTimer = setTimeout(() => {
      if (bar.contains(document.activeElement)) hideLater();
      else hideSnackbar();
    }, SNACK_SECONDS * 1000);
  };
  hideLater();
}

function hideSnackbar() {
  const bar = document.getElementById("snackbar");
  if (!bar) return;
  clearTimeout(snackTimer);
  bar.hidden = true;
  bar.replaceChildren();
}

/**
 * After a change the server recorded as an Action: its summary with an Undo button.
 * `after` runs once the change is done and again once it is undone (to refresh the view).
 */
export function offerUndo(pid, action, after) {
  if (!action) return;
  const summary = action.summary || "Done.";
  if (!action.undoable) {
    snackbar(summary);
    return;
  }
  snackbar(summary, "Undo", async () => {
    await undo(pid, action);
    if (after) await after();
  });
}

/** Undo a recorded Action and say so (the snackbar's Undo, the Activity list's). */
export async function undo(pid, action) {
  const undone = await undoAction(pid, action.id);
  snackbar(`Undone: ${undone?.summary || action.summary || "Done."}`);
}
