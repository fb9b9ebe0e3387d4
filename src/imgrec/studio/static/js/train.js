// The Train tab: one big Train button with good defaults, an Advanced panel (preset, model
// family, epochs, time limit, augmentation with a preview, image size), and live progress
// from the project's event stream: phase, epoch i of n, validation accuracy, time left, the
// loss/accuracy curve, Cancel and Resume.

import * as api from "./api.js";
import { Curve, isEpochRow } from "./chart.js";
import { button, duration, field, h, percent, replace, select } from "./dom.js";
import { showError, snackbar } from "./notify.js";
import { accuracySentence } from "./results.js";

// names from `imgrec models` (src/imgrec/models/families.py); "" lets the preset choose
const FAMILIES = [
  ["", "The preset's choice"],
  ["efficientnet_lite0", "EfficientNet-Lite0: transfer learning, quick and good"],
  ["efficientnet_lite1", "EfficientNet-Lite1: a little slower, a little better"],
  ["efficientnet_lite2", "EfficientNet-Lite2: the slowest Lite, the best of the three"],
  ["logreg-embed", "Logistic regression on Lite0 features: seconds"],
  ["mlp-embed", "Small neural network (MLP) on Lite0 features"],
  ["svm-embed", "Support-vector machine (SVM) on Lite0 features"],
  ["rf-embed", "Random forest on Lite0 features"],
  ["cnn-scratch", "Small CNN from scratch: no pretrained weights, needs many photos"],
  ["svm-hog", "SVM on HOG edge features: no neural network"],
  ["rf-hog", "Random forest on HOG edge features"],
];
const PRESETS = [
  ["fast", "Fast (a new head only)"],
  ["default", "Default (fine-tunes when it pays)"],
  ["best", "Best (three networks, slowest)"],
];
const AUGMENTS = [
  ["none", "None"],
  ["light", "Light"],
  ["default", "Default"],
  ["strong", "Strong"],
];
const STATUS = {
  queued: "Waiting to start…",
  running: "Training…",
  done: "Training finished.",
  failed: "Training failed.",
  cancelled: "Training was cancelled. Resume continues from the last finished epoch.",
  interrupted: "Training was interrupted (the studio stopped). Resume continues from the last finished epoch.",
};

export async function render(root, ctx) {
  const pid = ctx.pid;
  const advanced = advancedPanel(pid);
  const curve = new Curve();
  const status = h("h2", { class: "job-status" });
  const facts = h("dl", { class: "facts", "aria-live": "polite" });
  const bar = h("progress", { max: "1", value: "0", "aria-label": "Training progress" });
  const outcome = h("div", { class: "outcome" });
  const controls = h("div", { class: "row-actions" });
  const progress = h("section", { class: "card train-progress", hidden: true, "aria-label": "Training progress" },
    status, bar, outcome, controls, facts, curve.element);
  const state = { job: null };

  const trainButton = button("Train", async () => {
    const options = advanced.options();
    if (!options) return;
    const job = await api.startJob(pid, "train", options);
    curve.set([]);
    show(job);
    snackbar("Training started: you can use the other tabs meanwhile.");
  }, { class: "primary big train-button" });

  replace(
    root,
    h("h1", {}, "Train"),
    h("p", { class: "muted" }, "Press Train: good settings are chosen for you. Training runs on this computer; you can keep using the studio meanwhile."),
    h("div", { class: "train-start" }, trainButton),
    progress,
    advanced.element,
  );

  function show(job) {
    state.job = job;
    progress.hidden = false;
    const running = api.jobActive(job);
    trainButton.disabled = running;
    status.textContent = job.status === "running" && job.progress?.phase ? job.progress.phase : STATUS[job.status] || job.status;
    drawFacts(facts, bar, job);
    const shown = `${job.id} ${job.status}`;
    if (controls.dataset.job !== shown) {
      // once per job and status, not per progress event: a focused Cancel keeps its focus
      controls.dataset.job = shown;
      replace(
        controls,
        running ? button("Cancel", async () => show(await api.cancelJob(pid, job.id)), { class: "danger" }) : null,
        job.status === "cancelled" || job.status === "interrupted"
          ? button("Resume", async () => show(await api.resumeJob(pid, job.id)), { class: "primary" })
          : null,
      );
    }
    if (job.status === "done") showOutcome(job);
    else if (job.status === "failed") {
      replace(outcome, h("p", { class: "error-text" }, job.error || "The job failed; its worker.log has the details."));
    } else outcome.replaceChildren();
  }

  async function showOutcome(job) {
    if (outcome.dataset.job === job.id) return;
    outcome.dataset.job = job.id;
    const link = h("a", { href: ctx.route("p", pid, "results", job.run || ""), class: "button primary" }, "See the results");
    replace(outcome, h("p", {}, "Done."), link);
    if (!job.run) return;
    const run = await api.getRun(pid, job.run).catch(() => null);
    if (run && Number.isFinite(run.accuracy)) {
      replace(outcome, h("p", { class: "big-number" }, `Accuracy ${accuracySentence(run)}.`), link);
    }
  }

  async function backfill(job) {
    const full = await api.getJob(pid, job.id).catch(() => null);
    if (!full) return;
    const rows = (full.events || []).map((e) => e.row || e.data || e).filter(isEpochRow);
    curve.set(rows);
  }

  const offJob = ctx.events.on("job", (job) => {
    if (job.kind !== "train") return;
    if (state.job && job.id !== state.job.id && (job.created || "") < (state.job.created || "")) return;
    if (state.job && job.id !== state.job.id) curve.set([]);
    if (job.status === "failed" && api.jobActive(state.job)) showError(job.error || "Training failed.");
    show(job);
  });
  const offEpoch = ctx.events.on("epoch", (row) => {
    if (api.jobActive(state.job)) curve.add(row);
  });
  const offOpen = ctx.events.on("open", async () => {
    if (!state.job) return;
    show(await api.getJob(pid, state.job.id).catch(() => state.job));
    backfill(state.job);
  });

  const latest = await api.latestJob(pid, "train");
  if (latest) {
    show(latest);
    await backfill(latest);
  }
  return () => {
    offJob();
    offEpoch();
    offOpen();
    curve.destroy();
  };
}

function drawFacts(facts, bar, job) {
  const p = job.progress || {};
  const rows = [];
  if (job.status === "done") {
    bar.max = 1;
    bar.value = 1; // early stopping may end before the planned epochs: done is done
  } else if (Number.isFinite(p.epoch) && Number.isFinite(p.epochs) && p.epochs > 0) {
    rows.push(["Epoch", `${p.epoch} of ${p.epochs}`]);
    bar.max = p.epochs;
    bar.value = Math.min(p.epoch, p.epochs);
  } else if (api.jobActive(job)) {
    bar.removeAttribute("value"); // indeterminate until the epochs are known
  } else {
    bar.max = 1;
    bar.value = job.status === "done" ? 1 : 0;
  }
  if (Number.isFinite(p.val_acc)) rows.push(["Validation accuracy (latest epoch)", percent(p.val_acc, 1)]);
  if (Number.isFinite(p.loss)) rows.push(["Loss", p.loss.toFixed(3)]);
  if (Number.isFinite(p.eta_s) && job.status === "running") rows.push(["Time left", `about ${duration(p.eta_s)}`]);
  if (p.message) rows.push(["Now", p.message]);
  if (job.options && Object.keys(job.options).length) {
    rows.push(["Settings", Object.entries(job.options).map(([k, v]) => `${k} ${v}`).join(", ")]);
  }
  replace(facts, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

/** The Advanced panel; `options()` gives the job's options, or null after showing an error. */
function advancedPanel(pid) {
  const preset = select(PRESETS, "default");
  const model = select(FAMILIES, "");
  const epochs = h("input", { type: "number", min: "0", max: "200", step: "1", inputmode: "numeric", placeholder: "automatic" });
  const minutes = h("input", { type: "number", min: "1", max: "600", step: "1", inputmode: "numeric", placeholder: "no limit" });
  const augment = select(AUGMENTS, "default");
  const size = h("input", { type: "number", min: "64", max: "1024", step: "8", inputmode: "numeric", placeholder: "the model's own" });
  const preview = h("img", { class: "augment-preview", alt: "", hidden: true });
  let previewUrl = null;
  const showPreview = button("Preview augmentation", async () => {
    const imageSize = Number(size.value) || 224;
    const path = api.withQuery(api.projectPath(pid, "augment-preview"), { augment: augment.value, image_size: imageSize });
    // fetched rather than set as src, so a refusal shows the server's sentence
    const response = await api.get(path);
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(await response.blob());
    preview.src = previewUrl;
    preview.alt = `Training photos as the ${augment.value} augmentation changes them`;
    preview.hidden = false;
  });
  const element = h(
    "details",
    { class: "advanced card" },
    h("summary", {}, "Advanced"),
    h(
      "div",
      { class: "form-grid" },
      field("Preset", preset),
      field("Model family", model),
      field("Epochs", epochs, "Empty: decided while training."),
      field("Time limit (minutes)", minutes, "The whole run stops in time."),
      field("Augmentation", augment, "How much training photos are varied (flips, crops, colour)."),
      field("Image size (pixels)", size),
    ),
    h("div", { class: "row-actions" }, showPreview),
    preview,
  );
  function options() {
    const chosen = { preset: preset.value };
    if (model.value) chosen.model = model.value;
    for (const [input, key, scale, low, high] of [
      [epochs, "epochs", 1, 0, 200],
      [minutes, "time_limit", 60, 1, 600],
      [size, "image_size", 1, 64, 1024],
    ]) {
      if (input.value === "") continue;
      const value = Number(input.value);
      if (!Number.isInteger(value) || value < low || value > high) {
        showError(`${input.labels?.[0]?.textContent || key} must be a whole number from ${low} to ${high}.`);
        input.focus();
        return null;
      }
      chosen[key] = value * scale;
    }
    if (augment.value !== "default") chosen.augment = augment.value;
    return chosen;
  }
  return { element, options };
}
