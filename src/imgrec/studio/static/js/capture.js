// Webcam capture into a class: a camera chooser, a mirror toggle, a frame rate (1-10 per
// second) and a "hold to record" button (mouse, touch, or the Space key held). Each frame is
// drawn at most 480 px on its short side, encoded as JPEG and handed to the uploader, which
// sends frames in batches while the button is held; no frame is kept after it is sent.

import { webcam } from "./camera.js";
import { ICONS, field, h, icon, plural, select } from "./dom.js";
import { showError } from "./notify.js";

const SHORT_SIDE = 480;
const GATHER_MS = 800; // how long a frame may wait for others to share its request

/** The capture panel; `currentClass()` names the class frames go to. Returns {element, stop}. */
export function capturePanel({ uploader, currentClass }) {
  const rate = select(
    Array.from({ length: 10 }, (_, i) => [String(i + 1), `${i + 1} per second`]),
    "5",
  );
  const count = h("output", { class: "capture-count", "aria-live": "polite" }, "No frames captured yet.");
  const hold = h(
    "button",
    { type: "button", class: "record", disabled: true, "aria-describedby": "hold-hint" },
    icon(ICONS.camera),
    " Hold to record",
  );
  const hint = h(
    "p",
    { class: "hint", id: "hold-hint" },
    "Press and hold (mouse, finger, or the Space key) to take photos at the chosen rate.",
  );
  const state = { timer: 0, recording: false, captured: 0, cls: null, busy: false };
  const cam = webcam({
    label: "Webcam preview",
    noun: "webcam",
    mirrorId: "capture-mirror",
    onStart: () => (hold.disabled = false),
    onStop: () => {
      stopRecording();
      hold.disabled = true;
    },
  });

  async function grab() {
    if (state.busy || !cam.stream) return;
    state.busy = true;
    try {
      const blob = await cam.frame(SHORT_SIDE);
      if (!blob) return;
      state.captured += 1;
      const name = `webcam-${Date.now()}-${state.captured}.jpg`;
      uploader.add(state.cls, [{ name, blob }], GATHER_MS);
      count.textContent = `${plural(state.captured, "frame")} captured into ${state.cls}.`;
    } finally {
      state.busy = false;
    }
  }

  function startRecording() {
    if (state.recording || !cam.stream) return;
    state.cls = currentClass();
    if (!state.cls) {
      showError("Add a class first: frames are saved into the selected class.");
      return;
    }
    state.recording = true;
    hold.classList.add("recording");
    hold.setAttribute("aria-pressed", "true");
    grab();
    state.timer = setInterval(grab, 1000 / Number(rate.value));
  }

  function stopRecording() {
    if (!state.recording) return;
    state.recording = false;
    clearInterval(state.timer);
    hold.classList.remove("recording");
    hold.setAttribute("aria-pressed", "false");
  }

  hold.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    hold.setPointerCapture?.(event.pointerId);
    startRecording();
  });
  for (const type of ["pointerup", "pointercancel", "lostpointercapture", "blur"]) {
    hold.addEventListener(type, stopRecording);
  }
  hold.addEventListener("contextmenu", (event) => event.preventDefault());
  hold.addEventListener("keydown", (event) => {
    if (event.key !== " " && event.key !== "Enter") return;
    event.preventDefault();
    if (!event.repeat) startRecording();
  });
  hold.addEventListener("keyup", (event) => {
    if (event.key === " " || event.key === "Enter") {
      event.preventDefault();
      stopRecording();
    }
  });
  cam.choice.addEventListener("change", () => cam.start());
  rate.addEventListener("change", () => {
    if (!state.recording) return;
    clearInterval(state.timer);
    state.timer = setInterval(grab, 1000 / Number(rate.value));
  });
  const onHidden = () => document.hidden && stopRecording();
  document.addEventListener("visibilitychange", onHidden);

  const element = h(
    "section",
    { class: "capture card", "aria-label": "Webcam capture" },
    cam.controls(field("Frames per second", rate)),
    h("div", { class: "capture-body" }, cam.stage, h("div", { class: "capture-record" }, hold, count, hint)),
  );
  return {
    element,
    stop() {
      cam.stop();
      document.removeEventListener("visibilitychange", onHidden);
    },
  };
}
