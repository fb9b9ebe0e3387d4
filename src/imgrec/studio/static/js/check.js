// The Check data tab: start an audit job, follow it live, then show each finding as a card
// (title, severity, advice) with its images and one-click fixes per image or for the card:
// keep, delete, move to another class. Changes are undoable (snackbar, Activity list).

import { activityPanel } from "./activity.js";
import * as api from "./api.js";
import { button, field, h, plural, replace, select, when } from "./dom.js";
import { imageCard } from "./imagecards.js";
import { offerUndo, showError, snackbar } from "./notify.js";

const SHOWN = 24;

export async function render(root, ctx) {
  const pid = ctx.pid;
  const progress = h("div", { class: "job-line", "aria-live": "polite" });
  const summary = h("div", { class: "audit-summary" });
  const cards = h("div", { class: "findings" });
  const activity = activityPanel(pid, () => loadAudit());
  const state = { job: null };
  const startButton = button("Check my data", async () => {
    const job = await api.startJob(pid, "audit");
    showJob(job);
  }, { class: "primary big" });

  replace(
    root,
    h("h1", {}, "Check data"),
    h(
      "p",
      { class: "muted" },
      "Finds unreadable files, duplicates, photos that look mislabelled or out of place, and classes that are too small, before they spoil training.",
    ),
    h("div", { class: "job-start" }, startButton, progress),
    summary,
    cards,
    activity.element,
  );

  function showJob(job) {
    state.job = job;
    const running = api.jobActive(job);
    startButton.disabled = running;
    const p = job.progress || {};
    const words = {
      running: p.message || p.phase || "Checking…",
      queued: "Waiting to start…",
      done: "Check finished.",
      failed: `The check failed: ${job.error || "see the worker log"}`,
      cancelled: "The check was cancelled.",
      interrupted: "The check was interrupted (the studio stopped); start it again.",
    };
    replace(
      progress,
      running ? h("progress", { "aria-label": "Checking the data" }) : null,
      h("span", {}, words[job.status] || job.status),
      running ? button("Cancel", () => api.cancelJob(pid, job.id).then(showJob)) : null,
    );
  }

  async function loadAudit() {
    const audit = await api.getAudit(pid);
    drawAudit(audit);
  }

  function drawAudit(audit) {
    if (!audit || (!audit.verdict && !(audit.cards || []).length)) {
      replace(summary, h("p", { class: "empty" }, "Not checked yet: press “Check my data”."));
      cards.replaceChildren();
      return;
    }
    const list = audit.cards || [];
    const lines = (Array.isArray(audit.summary) ? audit.summary : [audit.summary]).filter(
      (line) => line && line !== audit.verdict,
    );
    replace(
      summary,
      h("h2", {}, "What the check found"),
      lines.length ? h("ul", { class: "audit-lines" }, lines.map((line) => h("li", {}, line))) : null,
      // the verdict sums up the lines above it (its wording refers to them)
      audit.verdict ? h("p", { class: "verdict-text" }, audit.verdict) : null,
      audit.created ? h("p", { class: "muted" }, `Checked ${when(audit.created)}.`) : null,
      list.length ? null : h("p", { class: "ok-note" }, "No issues found: your data looks ready to train."),
    );
    const classes = (ctx.project?.classes || []).map((c) => c.name);
    replace(cards, list.map((card) => findingCard(pid, card, classes, loadAudit)));
  }

  const offJob = ctx.events.on("job", (job) => {
    if (job.kind !== "audit") return;
    if (state.job && job.id !== state.job.id && job.created < state.job.created) return;
    const finished = api.jobActive(state.job) && job.status === "done";
    if (api.jobActive(state.job) && job.status === "failed") showError(job.error || "The check failed.");
    showJob(job);
    if (finished) loadAudit().catch(() => {});
  });
  const offOpen = ctx.events.on("open", () => {
    if (state.job) api.getJob(pid, state.job.id).then(showJob).catch(() => {});
  });

  const latest = await api.latestJob(pid, "audit");
  if (latest) showJob(latest);
  await loadAudit();
  return () => {
    offJob();
    offOpen();
  };
}

function severityBadge(severity) {
  return h("span", { class: `badge severity-${String(severity || "info").toLowerCase()}` }, severity || "info");
}

function imageLines(image) {
  const lines = [];
  if (image.detail) lines.push(String(image.detail));
  if (Array.isArray(image.partners) && image.partners.length) {
    const names = image.partners.map((p) => (typeof p === "string" ? p : `${p.cls}/${p.name}`));
    lines.push(`same as ${names.slice(0, 3).join(", ")}${names.length > 3 ? "…" : ""}`);
  }
  return lines;
}

/** One finding: its images, each with keep/move/delete, and the same for all of them. */
function findingCard(pid, card, classes, reload) {
  const images = [...(card.images || [])];
  const grid = h("div", { class: "image-cards" });
  let shown = SHOWN;
  const more = button("Show more", () => {
    shown += SHOWN;
    draw();
  });
  const count = h("span", { class: "muted" });
  const drop = (image) => {
    const i = images.indexOf(image);
    if (i >= 0) images.splice(i, 1);
    draw();
  };
  const keep = (image) =>
    button("Keep", async () => {
      const action = await api.keepImages(pid, [image], card.check);
      offerUndo(pid, action, reload);
      drop(image);
    }, { "aria-label": `Keep ${image.name}` });
  function draw() {
    count.textContent = images.length ? ` (${plural(images.length, "image")})` : "";
    const live = images.filter((i) => !i.missing);
    replace(
      grid,
      images.slice(0, shown).map((image) =>
        imageCard(pid, image, {
          lines: imageLines(image),
          classes,
          all: live,
          extra: [keep(image)],
          onChange: (kind) => (kind === "undo" ? reload() : drop(image)),
        }),
      ),
    );
    more.hidden = images.length <= shown;
    bulk.hidden = images.length === 0;
  }
  const targets = select(classes, classes[0], {});
  const bulk = h(
    "div",
    { class: "row-actions bulk" },
    button("Keep all", async () => {
      const all = images.filter((i) => !i.missing);
      const action = await api.keepImages(pid, all, card.check);
      offerUndo(pid, action, reload);
      images.length = 0;
      draw();
    }),
    button("Delete all", async () => {
      const all = images.filter((i) => !i.missing);
      const action = await api.deleteImages(pid, all);
      offerUndo(pid, action, reload);
      images.length = 0;
      draw();
    }, { class: "danger" }),
    field("Move all to", targets),
    button("Move all", async () => {
      const all = images.filter((i) => !i.missing && i.cls !== targets.value);
      const action = await api.moveImages(pid, all, targets.value);
      offerUndo(pid, action, reload);
      images.length = 0;
      draw();
    }),
  );
  const element = h(
    "article",
    { class: `finding card severity-${String(card.severity || "info").toLowerCase()}`, dataset: { check: card.check || "" } },
    h("h3", {}, severityBadge(card.severity), " ", card.title, count),
    card.advice ? h("p", { class: "advice" }, card.advice) : null,
    images.length ? bulk : null,
    grid,
    more,
  );
  draw();
  return element;
}
