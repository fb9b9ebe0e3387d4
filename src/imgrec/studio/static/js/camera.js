// The webcam, shared by capture (Images) and Try it: a preview with its Start/Stop button,
// camera chooser and mirror toggle, and the current frame as a JPEG of a given short side.

import { button, field, h, select } from "./dom.js";
import { showError } from "./notify.js";

const MIRROR_KEY = "imgrec-studio-mirror";

/** A sentence for a getUserMedia failure a person can act on. */
function cameraError(error) {
  const name = error?.name || "";
  if (!navigator.mediaDevices?.getUserMedia) {
    return "This browser gives no camera to this page: open the studio at http://127.0.0.1 (not another address) in Chrome, Edge or Firefox.";
  }
  if (name === "NotAllowedError" || name === "SecurityError") {
    return "The browser was not allowed to use the camera: allow it (the camera icon in the address bar), then press Start again.";
  }
  if (name === "NotFoundError" || name === "OverconstrainedError") {
    return "No camera was found: connect one, or add photos with the file picker instead.";
  }
  if (name === "NotReadableError" || name === "AbortError") {
    return "The camera is in use by another program or tab: close it there, then press Start again.";
  }
  return `The camera could not start (${error?.message || name || "unknown error"}); try another camera or reload the page.`;
}

/** Open camera `deviceId` (or the default one). */
async function openCamera(deviceId) {
  if (!navigator.mediaDevices?.getUserMedia) throw new Error(cameraError(null));
  const video = deviceId
    ? { deviceId: { exact: deviceId }, width: { ideal: 640 }, height: { ideal: 480 } }
    : { width: { ideal: 640 }, height: { ideal: 480 } };
  return navigator.mediaDevices.getUserMedia({ video, audio: false });
}

function stopStream(stream) {
  for (const track of stream?.getTracks() || []) track.stop();
}

/** The cameras the browser lists (labels appear once a camera was allowed). */
async function listCameras() {
  if (!navigator.mediaDevices?.enumerateDevices) return [];
  const devices = await navigator.mediaDevices.enumerateDevices();
  return devices.filter((d) => d.kind === "videoinput");
}

/** The mirror setting, remembered between visits and shared by capture and Try it. */
function mirrorPreference() {
  return localStorage.getItem(MIRROR_KEY) !== "0";
}

function setMirrorPreference(on) {
  localStorage.setItem(MIRROR_KEY, on ? "1" : "0");
}

/**
 * The current frame of `video` as a JPEG Blob whose short side is at most `shortSide`
 * (never enlarged), mirrored when asked, drawn on the reused `canvas`.
 */
function frameBlob(video, canvas, shortSide, mirror, quality = 0.9) {
  const width = video.videoWidth;
  const height = video.videoHeight;
  if (!width || !height) return Promise.resolve(null);
  const scale = Math.min(1, shortSide / Math.min(width, height));
  canvas.width = Math.max(1, Math.round(width * scale));
  canvas.height = Math.max(1, Math.round(height * scale));
  const context = canvas.getContext("2d");
  context.save();
  if (mirror) {
    context.translate(canvas.width, 0);
    context.scale(-1, 1);
  }
  context.drawImage(video, 0, 0, canvas.width, canvas.height);
  context.restore();
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", quality));
}

/** A <video> for a camera preview (muted, inline, so it may play without a gesture). */
function previewVideo(label) {
  return h("video", { class: "camera-video", autoplay: true, muted: true, playsinline: true, "aria-label": label });
}

/** Attach `stream` to `video` and wait until its size is known. */
async function play(video, stream) {
  video.srcObject = stream;
  video.muted = true;
  await video.play().catch(() => {});
  if (!video.videoWidth) {
    await new Promise((resolve) => {
      video.addEventListener("loadedmetadata", resolve, { once: true });
      setTimeout(resolve, 3000);
    });
  }
}

/** Resolves when `video` shows a new frame (or after a short pause where that is unknown). */
function nextFrame(video) {
  if (video.requestVideoFrameCallback) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, 500); // a paused or hidden video still moves on
      video.requestVideoFrameCallback(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
  return new Promise((resolve) => setTimeout(resolve, 30));
}

/**
 * A webcam with its controls: `label` names the preview for screen readers, `noun` the
 * Start/Stop button ("Start webcam"), `mirrorId` the mirror checkbox. `onStart()` runs once
 * the camera plays and its list is known, `onStop()` before a camera is stopped (also before
 * a restart). The caller places `controls(...extra)` (the button, the camera chooser, its
 * `extra` fields, the mirror toggle) and `stage` (the preview); `frame(shortSide)` gives the
 * current frame as a JPEG Blob (null before the first frame), `nextFrame()` waits for a new one.
 */
export function webcam({ label, noun, mirrorId, onStart, onStop }) {
  const video = previewVideo(label);
  video.hidden = true;
  const canvas = h("canvas", { hidden: true });
  const mirror = h("input", { type: "checkbox", checked: mirrorPreference(), id: mirrorId });
  const choice = select([["", "Default camera"]], "");
  const applyMirror = () => {
    video.classList.toggle("mirrored", mirror.checked);
    setMirrorPreference(mirror.checked);
  };
  mirror.addEventListener("change", applyMirror);
  applyMirror();

  const cam = {
    stream: null,
    choice,
    stage: h("div", { class: "capture-stage" }, video, canvas),
    controls: (...extra) =>
      h(
        "div",
        { class: "capture-controls" },
        toggle,
        field("Camera", choice),
        extra,
        h("div", { class: "field checkbox" }, mirror, h("label", { for: mirrorId }, "Mirror")),
      ),
    frame: (shortSide) => frameBlob(video, canvas, shortSide, mirror.checked),
    nextFrame: () => nextFrame(video),
    async start() {
      cam.stop();
      try {
        cam.stream = await openCamera(choice.value);
      } catch (error) {
        showError(cameraError(error));
        return;
      }
      await play(video, cam.stream);
      video.hidden = false;
      toggle.textContent = `Stop ${noun}`;
      const cameras = await listCameras();
      const active = cam.stream.getVideoTracks()[0]?.getSettings().deviceId || "";
      choice.replaceChildren(
        ...cameras.map((c, i) =>
          h("option", { value: c.deviceId, selected: c.deviceId === active }, c.label || `Camera ${i + 1}`),
        ),
      );
      onStart?.();
    },
    stop() {
      onStop?.();
      stopStream(cam.stream);
      cam.stream = null;
      video.srcObject = null;
      video.hidden = true;
      toggle.textContent = `Start ${noun}`;
    },
  };
  const toggle = button(`Start ${noun}`, () => (cam.stream ? cam.stop() : cam.start()), { class: "primary" });
  return cam;
}
