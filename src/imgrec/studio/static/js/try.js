// The Try it tab: the model on the live webcam. A loop grabs a frame at 224 px on its short
// side, POSTs it to /runs/{rid}/predict and draws the top classes; the next frame goes as
// soon as the answer is back (never two in flight), so the frame rate is what the computer
// manages. An "unknown below" threshold, and a photo upload or drop for a single picture.

import * as api from "./api.js";
import { webcam } from "./camera.js";
import { fileButton, h, percent, replace } from "./dom.js";
import { makeDropZone } from "./drop.js";
import { chosenRun, readyRuns, runChooser } from "./results.js";

const SHORT_SIDE = 224;

function predictPath(pid, rid) {
  return api.withQuery(api.projectPath(pid, "runs", rid, "predict"), { top_k: 5 });
}

/** Bars for [{label, confidence}]; the verdict is "unknown" below `threshold` (0-1). */
function drawPredictions(target, predictions, threshold) {
  const top = predictions[0];
  const unknown = !top || top.confidence < threshold;
  replace(
    target,
    h(
      "p",
      { class: `verdict${unknown ? " unknown" : ""}` },
      unknown ? "unknown" : top.label,
      top ? h("span", { class: "muted" }, ` (${unknown ? `best guess ${top.label}, ` : ""}${percent(top.confidence)})`) : null,
    ),
    h(
      "ul",
      { class: "bars", "aria-label": "Top classes" },
      predictions.map((p) => {
        const fill = h("span", { class: "bar-fill" });
        fill.style.width = `${Math.max(0, Math.min(100, p.confidence * 100))}%`;
        return h(
          "li",
          { class: "bar-row" },
          h("span", { class: "bar-label" }, p.label),
          h("span", { class: "bar-track", "aria-hidden": "true" }, fill),
          h("span", { class: "bar-pct" }, percent(p.confidence, 1)),
        );
      }),
    ),
  );
}

export async function render(root, ctx) {
  const pid = ctx.pid;
  const { runs: all } = await api.listRuns(pid);
  const runs = readyRuns(all);
  if (!runs.length) {
    replace(root, h("h1", {}, "Try it"), h("p", { class: "empty" }, "Train a model first: ", h("a", { href: ctx.route("p", pid, "train") }, "go to Train"), "."));
    return null;
  }
  const state = { rid: chosenRun(runs, ctx.args[0]), running: false, times: [], photoUrl: null };
  const threshold = h("input", { type: "range", min: "0", max: "100", step: "1", value: "50" });
  const thresholdText = h("output", { for: "" }, "50%");
  threshold.addEventListener("input", () => (thresholdText.textContent = `${threshold.value}%`));
  const cut = () => Number(threshold.value) / 100;

  const fps = h("output", { class: "fps", "aria-live": "off" }, "");
  const live = h("div", { class: "predictions live-predictions", "aria-live": "polite" });
  const cam = webcam({
    label: "Webcam preview for trying the model",
    noun: "camera",
    mirrorId: "try-mirror",
    onStart: () => {
      state.running = true;
      loop();
    },
    onStop: () => {
      state.running = false;
      fps.textContent = "";
    },
  });

  async function loop() {
    const stream = cam.stream;
    while (state.running && cam.stream === stream) {
      await cam.nextFrame(); // the same camera frame twice would only measure the server
      const blob = await cam.frame(SHORT_SIDE);
      if (!blob) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      let answer;
      try {
        answer = await api.request("POST", predictPath(pid, state.rid), { body: blob, headers: { "Content-Type": "image/jpeg" } });
      } catch {
        cam.stop(); // the error is shown; a loop of failing requests would only repeat it
        return;
      }
      if (!state.running || cam.stream !== stream) return;
      drawPredictions(live, answer.predictions || [], cut());
      countFrame();
    }
  }

  function countFrame() {
    const now = performance.now();
    state.times.push(now);
    while (state.times.length > 2 && now - state.times[0] > 3000) state.times.shift();
    if (state.times.length >= 2) {
      const rate = ((state.times.length - 1) * 1000) / (now - state.times[0]);
      fps.textContent = `${rate.toFixed(1)} frames per second`;
    }
  }

  cam.choice.addEventListener("change", () => cam.stream && cam.start());

  // one photo from a file or a drop
  const photo = h("img", { class: "try-photo", alt: "", hidden: true, width: "224", height: "224" });
  const photoResult = h("div", { class: "predictions photo-predictions", "aria-live": "polite" });
  async function tryPhoto(file) {
    if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
    state.photoUrl = URL.createObjectURL(file);
    photo.src = state.photoUrl;
    photo.alt = file.name;
    photo.hidden = false;
    const form = new FormData();
    form.append("files", file, file.name);
    replace(photoResult, h("p", { class: "muted" }, "Asking the model…"));
    const answer = await api.postForm(predictPath(pid, state.rid), form).catch(() => null);
    if (answer) drawPredictions(photoResult, answer.predictions || [], cut());
    else photoResult.replaceChildren();
  }
  const dropArea = h(
    "section",
    { class: "card drop-area", "aria-label": "Try a photo" },
    h("h2", {}, "Try a photo"),
    h("p", { class: "muted" }, "Drop a photo here, or choose one."),
    fileButton("Choose a photo", { accept: "image/*", id: "try-file", onFiles: (files) => tryPhoto(files[0]) }),
    h("div", { class: "photo-result" }, photo, photoResult),
  );
  makeDropZone(dropArea, async (load) => {
    const [first] = await load();
    if (first) tryPhoto(first.file);
  });

  replace(
    root,
    h("h1", {}, "Try it"),
    runChooser(runs, state.rid, (rid) => {
      state.rid = rid;
    }),
    h(
      "section",
      { class: "card try-live", "aria-label": "Live camera" },
      cam.controls(),
      h("div", { class: "range-field" }, h("label", { for: (threshold.id = "try-threshold") }, "Say “unknown” below"), threshold, thresholdText),
      h("div", { class: "try-stage" }, cam.stage, h("div", {}, live, fps)),
    ),
    dropArea,
  );
  thresholdText.setAttribute("for", threshold.id);
  return () => {
    cam.stop();
    if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
  };
}
