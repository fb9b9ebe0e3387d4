// The Results tab: a run's accuracy with its interval in words, the per-class table, the
// confusion matrix (each cell a button that shows its photos, with relabel/delete right
// there), the most confidently wrong photos, the calibration sentence, and the report.

import * as api from "./api.js";
import { field, h, percent, plural, replace, select, when } from "./dom.js";
import { imageCard } from "./imagecards.js";

/** Runs that have a model to look at (compare runs have a leaderboard instead). */
function modelRuns(runs) {
  return runs.filter((r) => r.kind !== "compare" && !String(r.id).startsWith("compare"));
}

/** The model runs that finished well enough to predict with (Try it, Export). */
export function readyRuns(runs) {
  return modelRuns(runs).filter((r) => r.status !== "failed" && r.status !== "running");
}

/** `wanted` (the route's run id) if it is one of `runs`, else the newest. */
export function chosenRun(runs, wanted) {
  return runs.some((r) => r.id === wanted) ? wanted : runs[0].id;
}

/** A run chooser <select>; `onChoose(rid)`. */
export function runChooser(runs, current, onChoose) {
  const choices = runs.map((r) => {
    const acc = Number.isFinite(r.accuracy) ? ` · ${percent(r.accuracy)}` : ` · ${r.status || ""}`;
    return [r.id, `${r.id} · ${r.model || "model"}${acc} · ${when(r.created)}`];
  });
  const node = select(choices, current);
  node.addEventListener("change", () => onChoose(node.value));
  return field("Run", node);
}

const SPLIT_WORDS = { val: "validation", valid: "validation", validation: "validation", test: "test" };

/** "96% (92-98% with 95% confidence) on 60 test images". */
export function accuracySentence(run) {
  let text = percent(run.accuracy);
  if (Array.isArray(run.interval) && run.interval.length === 2) {
    const [lo, hi] = run.interval.map((v) => Math.round(v * 100));
    text += ` (${lo}-${hi}% with 95% confidence)`;
  }
  if (Number.isFinite(run.n)) {
    const name = run.evaluated_on && !/\s/.test(run.evaluated_on) ? run.evaluated_on : "";
    const split = name ? `${SPLIT_WORDS[name] || name} ` : "";
    text += ` on ${plural(run.n, `${split}image`)}`;
  }
  return text;
}

export async function render(root, ctx) {
  const pid = ctx.pid;
  const { runs: all } = await api.listRuns(pid);
  const runs = modelRuns(all);
  if (!runs.length) {
    replace(
      root,
      h("h1", {}, "Results"),
      h("p", { class: "empty" }, "No trained model yet. ", h("a", { href: ctx.route("p", pid, "train") }, "Train one"), " and its results appear here."),
    );
    return null;
  }
  const rid = chosenRun(runs, ctx.args[0]);
  const body = h("div", { class: "results-body" });
  replace(
    root,
    h("h1", {}, "Results"),
    runChooser(runs, rid, (chosen) => ctx.go("p", pid, "results", chosen)),
    body,
  );
  const run = await api.getRun(pid, rid);
  if (!Number.isFinite(run.accuracy)) {
    replace(body, h("p", { class: "empty" }, `This run has no results yet (${run.status || "no metrics.json"}).`));
    return null;
  }
  const classes = (ctx.project?.classes || []).map((c) => c.name);
  const cellPanel = h("section", { class: "cell-images", "aria-live": "polite", tabindex: "-1" });
  const wrong = h("div", { class: "image-cards" });
  replace(
    body,
    headline(run),
    h("h2", {}, "Per class"),
    perClassTable(run.per_class || []),
    h("h2", {}, "Confusion matrix"),
    confusionTable(run.confusion, (actual, predicted, count) =>
      showCell(pid, rid, actual, predicted, count, classes, cellPanel),
    ),
    cellPanel,
    h("h2", {}, "Most confidently wrong"),
    h("p", { class: "muted" }, "Photos the model got wrong while being sure: often a wrong label, sometimes a hard photo."),
    wrong,
  );
  const answer = await api.wrongImages(pid, rid, 24);
  const list = answer.images || [];
  replace(
    wrong,
    list.length
      ? list.map((image) => imageCard(pid, image, { lines: wrongLines(image), classes, all: list, onChange: () => {} }))
      : h("p", { class: "ok-note" }, "None: the model got every test photo right."),
  );
  return null;
}

function headline(run) {
  const files = run.files || {};
  const links = [
    ["report.html", "Full report"],
    ["model_card.html", "Model card"],
  ]
    .filter(([name]) => files[name])
    .map(([name, label]) => h("a", { href: files[name], target: "_blank", rel: "noopener", class: "button" }, label));
  return h(
    "section",
    { class: "card headline" },
    h("p", { class: "big-number accuracy-sentence" }, accuracySentence(run)),
    h(
      "p",
      { class: "muted" },
      [
        run.model ? `Model: ${run.model}.` : "",
        Number.isFinite(run.balanced_accuracy) ? ` Balanced accuracy ${percent(run.balanced_accuracy)}.` : "",
        Number.isFinite(run.macro_f1) ? ` Macro F1 ${percent(run.macro_f1)}.` : "",
        run.evaluated_on && /\s/.test(run.evaluated_on) ? ` Evaluated on ${run.evaluated_on}.` : "",
      ].join(""),
    ),
    run.calibration ? h("p", { class: "calibration" }, run.calibration) : null,
    links.length ? h("div", { class: "row-actions" }, links) : null,
  );
}

function perClassTable(rows) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "per-class" },
      h("caption", { class: "sr-only" }, "Precision, recall and F1 of each class"),
      h("thead", {}, h("tr", {}, ["Class", "Precision", "Recall", "F1", "Test photos"].map((t) => h("th", { scope: "col" }, t)))),
      h(
        "tbody",
        {},
        rows.map((r) =>
          h(
            "tr",
            {},
            h("th", { scope: "row" }, r.class),
            h("td", {}, percent(r.precision)),
            h("td", {}, percent(r.recall)),
            h("td", {}, percent(r.f1)),
            h("td", {}, String(r.support ?? "")),
          ),
        ),
      ),
    ),
  );
}

/** The matrix as a table: rows the real class, columns the prediction; cells are buttons. */
function confusionTable(confusion, onCell) {
  if (!confusion || !Array.isArray(confusion.classes)) return h("p", {}, "No confusion matrix in this run.");
  const { classes, matrix } = confusion;
  const max = Math.max(1, ...matrix.flat());
  const head = h(
    "tr",
    {},
    h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Real class"), h("span", { "aria-hidden": "true" }, "real ↓ / said →")),
    classes.map((c) => h("th", { scope: "col" }, c)),
  );
  const body = classes.map((actual, i) =>
    h(
      "tr",
      {},
      h("th", { scope: "row" }, actual),
      classes.map((predicted, j) => {
        const count = matrix[i][j];
        const label = `${count} ${actual} predicted as ${predicted}${i === j ? " (right)" : ""}`;
        const cell = h(
          "button",
          {
            type: "button",
            class: `cell ${i === j ? "right" : count ? "wrong" : "zero"}`,
            "aria-label": label,
            title: label,
            disabled: count === 0,
            dataset: { actual, predicted },
            on: { click: () => onCell(actual, predicted, count) },
          },
          String(count),
        );
        cell.style.setProperty("--strength", String(count / max));
        return h("td", {}, cell);
      }),
    ),
  );
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "confusion" },
      h("caption", {}, "Rows: the real class. Columns: what the model said. Press a number to see those photos."),
      h("thead", {}, head),
      h("tbody", {}, body),
    ),
  );
}

async function showCell(pid, rid, actual, predicted, count, classes, panel) {
  replace(panel, h("h3", {}, `${count} ${actual} predicted as ${predicted}`), h("p", { class: "muted" }, "Loading…"));
  const { images } = await api.confusionImages(pid, rid, actual, predicted);
  const cards = h("div", { class: "image-cards" });
  const draw = () =>
    replace(
      cards,
      images.length
        ? images.map((image) =>
            imageCard(pid, image, {
              lines: [`model: ${image.predicted ?? predicted} ${percent(image.confidence)}`],
              classes,
              all: images,
              onChange: (kind) => {
                if (kind === "undo") return;
                images.splice(images.indexOf(image), 1);
                draw();
              },
            }),
          )
        : h("p", { class: "muted" }, "No photos left in this cell."),
    );
  draw();
  replace(panel, h("h3", {}, `${count} ${actual} predicted as ${predicted}`), cards);
  panel.focus({ preventScroll: false });
}

function wrongLines(image) {
  return [`is ${image.actual}, model said ${image.predicted} (${percent(image.confidence)})`];
}
