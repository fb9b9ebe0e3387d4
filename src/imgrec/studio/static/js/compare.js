// The Compare tab: try several model families within a time budget (a compare job) and
// show the leaderboard of the latest comparison.

import * as api from "./api.js";
import { button, duration, h, percent, replace } from "./dom.js";
import { showError } from "./notify.js";

export async function render(root, ctx) {
  const pid = ctx.pid;
  const budget = h("input", { type: "range", min: "1", max: "30", step: "1", value: "5", id: "compare-budget" });
  const budgetText = h("output", { for: "compare-budget" }, "5 minutes");
  budget.addEventListener("input", () => (budgetText.textContent = `${budget.value} minute${budget.value === "1" ? "" : "s"}`));
  const progress = h("div", { class: "job-line", "aria-live": "polite" });
  const board = h("div", { class: "leaderboard" });
  const state = { job: null };
  const start = button("Compare models", async () => {
    const job = await api.startJob(pid, "compare", { budget: Number(budget.value) * 60 });
    show(job);
  }, { class: "primary big" });

  replace(
    root,
    h("h1", {}, "Compare models"),
    h("p", { class: "muted" }, "Trains several kinds of model, cheapest first, until the time is up, and ranks them on the same test photos."),
    h("div", { class: "range-field" }, h("label", { for: "compare-budget" }, "Time budget"), budget, budgetText),
    h("div", { class: "job-start" }, start, progress),
    board,
  );

  function show(job) {
    state.job = job;
    const running = api.jobActive(job);
    start.disabled = running;
    const p = job.progress || {};
    replace(
      progress,
      running ? h("progress", { "aria-label": "Comparing models" }) : null,
      h("span", {}, running ? p.message || p.phase || "Comparing…" : job.status === "done" ? "Comparison finished." : `Comparison ${job.status}${job.error ? `: ${job.error}` : "."}`),
      running ? button("Cancel", async () => show(await api.cancelJob(pid, job.id))) : null,
    );
  }

  async function loadBoard() {
    const { runs } = await api.listRuns(pid);
    const latest = runs.find((r) => r.kind === "compare" || String(r.id).startsWith("compare"));
    if (!latest) {
      replace(board, h("p", { class: "empty" }, "No comparison yet."));
      return;
    }
    const data = await api.get(api.runFile(pid, latest.id, "leaderboard.json"), { quiet: [404] }).catch((error) => {
      if (error.status === 404) return null;
      throw error;
    });
    if (!data) {
      replace(board, h("p", { class: "empty" }, `The comparison ${latest.id} has no leaderboard yet (${latest.status || "running"}).`));
      return;
    }
    replace(board, leaderboardTable(data, latest.id));
  }

  const off = ctx.events.on("job", (job) => {
    if (job.kind !== "compare") return;
    const finished = api.jobActive(state.job) && !api.jobActive(job);
    show(job);
    if (job.status === "failed" && finished) showError(job.error || "The comparison failed.");
    if (finished) loadBoard().catch(() => {});
  });
  const latest = await api.latestJob(pid, "compare");
  if (latest) show(latest);
  await loadBoard();
  return off;
}

function leaderboardTable(data, rid) {
  const columns = [
    ["rank", "Rank", (v) => String(v ?? "")],
    ["family", "Family", (v) => String(v ?? "")],
    ["accuracy", "Accuracy", (v) => percent(v, 1)],
    ["balanced_accuracy", "Balanced accuracy", (v) => percent(v, 1)],
    ["macro_f1", "Macro F1", (v) => percent(v, 1)],
    ["train_seconds", "Training time", (v) => duration(v)],
    ["ms_per_image", "ms per photo", (v) => (Number.isFinite(v) ? v.toFixed(1) : "–")],
    ["size_mb", "Size (MB)", (v) => (Number.isFinite(v) ? v.toFixed(1) : "–")],
    ["note", "Note", (v) => String(v ?? "")],
  ];
  const entries = data.entries || [];
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "leaderboard-table" },
      h("caption", {}, `Leaderboard of ${rid}: ${entries.length} models, scored on ${data.eval_images ?? "?"} ${data.evaluated_on || "test"} photos.`),
      h("thead", {}, h("tr", {}, columns.map(([, label]) => h("th", { scope: "col" }, label)))),
      h(
        "tbody",
        {},
        entries.map((e) => h("tr", { class: e.status === "ok" ? "" : "muted" }, columns.map(([key, , fmt], i) => (i === 1 ? h("th", { scope: "row" }, fmt(e[key])) : h("td", {}, fmt(e[key])))))),
      ),
    ),
  );
}
