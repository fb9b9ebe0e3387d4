// The webcam, shared by capture (Images) and Try it: open a camera, list cameras, and turn
// the current video frame into a JPEG of a given short side.

import { h } from "./dom.js";

const MIRROR_KEY = "imgrec-studio-mirror";

/** A sentence for a getUserMedia failure a person can act on. */
export function cameraError(error) {
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
export async function openCamera(deviceId) {
  if (!navigator.mediaDevices?.getUserMedia) throw new Error(cameraError(null));
  const video = deviceId
    ? { deviceId: { exact: deviceId }, width: { ideal: 640 }, height: { ideal: 480 } }
    : { width: { ideal: 640 }, height: { ideal: 480 } };
  return navigator.mediaDevices.getUserMedia({ video, audio: false });
}

export function stopStream(stream) {
  for (const track of stream?.getTracks() || []) track.stop();
}

/** The cameras the browser lists (labels appear once a camera was allowed). */
export async function listCameras() {
  if (!navigator.mediaDevices?.enumerateDevices) return [];
  const devices = await navigator.mediaDevices.enumerateDevices();
  return devices.filter((d) => d.kind === "videoinput");
}

/** The mirror setting, remembered between visits and shared by capture and Try it. */
export function mirrorPreference() {
  return localStorage.getItem(MIRROR_KEY) !== "0";
}

export function setMirrorPreference(on) {
  localStorage.setItem(MIRROR_KEY, on ? "1" : "0");
}

/**
 * The current frame of `video` as a JPEG Blob whose short side is at most `shortSide`
 * (never enlarged), mirrored when asked, drawn on the reused `canvas`.
 */
export function frameBlob(video, canvas, shortSide, mirror, quality = 0.9) {
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
export function previewVideo(label) {
  return h("video", { class: "camera-video", autoplay: true, muted: true, playsinline: true, "aria-label": label });
}

/** Attach `stream` to `video` and wait until its size is known. */
export async function play(video, stream) {
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
