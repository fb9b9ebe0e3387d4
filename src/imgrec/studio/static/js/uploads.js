// Sending images to a class in batches: at most BATCH_FILES files or BATCH_BYTES per request
// and IN_FLIGHT requests at a time, so a folder of 2,000 photos neither opens 2,000
// connections nor builds one giant request. Webcam frames trickle in while a button is
// held: `gather` waits a moment for a fuller batch. Files are dropped once sent.

import { postFiles, projectPath } from "./api.js";
import { h, plural, replace } from "./dom.js";

const BATCH_FILES = 64;
const BATCH_BYTES = 8 * 1024 * 1024;
const IN_FLIGHT = 2;
const NEW_SESSION_MS = 3000; // webcam frames a moment apart still count as one upload

export class Uploader {
  /** onChange(uploader) after every step. */
  constructor(pid, { onChange, maxRequestBytes } = {}) {
    Object.assign(this, { pid, onChange });
    this.maxRequestBytes = maxRequestBytes || 0;
    this.queue = [];
    this.inFlight = 0;
    this.timer = 0;
    this.reset();
  }

  reset() {
    this.total = 0;
    this.done = 0;
    this.added = 0;
    this.rejected = [];
    this.finished = false;
    this.finishedAt = 0;
  }

  /** Files that come a while after the last ones were all sent start a new count. */
  begin() {
    if (this.finished && !this.busy && performance.now() - this.finishedAt > NEW_SESSION_MS) this.reset();
    this.finished = false;
  }

  get busy() {
    return this.inFlight > 0 || this.queue.length > 0;
  }

  /** Queue [{name, blob}] for class `cls`; `gather` ms: wait that long for a fuller batch. */
  add(cls, items, gather = 0) {
    this.begin();
    const now = performance.now();
    for (const item of items) {
      if (this.maxRequestBytes && item.blob.size > this.maxRequestBytes) {
        this.total += 1;
        this.done += 1;
        const mb = Math.round(this.maxRequestBytes / 1048576);
        this.rejected.push({ filename: item.name, error: `larger than the studio's ${mb} MB upload limit.` });
        continue;
      }
      this.queue.push({ cls, name: item.name, blob: item.blob, since: now, gather });
      this.total += 1;
    }
    this.changed();
    this.pump();
  }

  /** Files refused before sending (not images, no class); shown with the server's refusals. */
  refuse(list) {
    if (!list.length) return;
    this.begin();
    this.total += list.length;
    this.done += list.length;
    this.rejected.push(...list);
    this.changed();
  }

  changed() {
    this.onChange?.(this);
  }

  /** The next batch: same class as the first queued file, up to the file and byte limits. */
  takeBatch() {
    const cls = this.queue[0].cls;
    const batch = [];
    let bytes = 0;
    for (let i = 0; i < this.queue.length && batch.length < BATCH_FILES; ) {
      const item = this.queue[i];
      if (item.cls !== cls || (batch.length && bytes + item.blob.size > BATCH_BYTES)) {
        i += 1;
        continue;
      }
      batch.push(item);
      bytes += item.blob.size;
      this.queue.splice(i, 1);
    }
    return { cls, batch, bytes };
  }

  /** Whether the queued files should wait for more (a held record button) before sending. */
  waitFor() {
    const first = this.queue[0];
    if (!first.gather) return 0;
    const sameClass = this.queue.filter((item) => item.cls === first.cls);
    const bytes = sameClass.reduce((sum, item) => sum + item.blob.size, 0);
    if (sameClass.length >= BATCH_FILES || bytes >= BATCH_BYTES) return 0;
    return Math.max(0, first.since + first.gather - performance.now());
  }

  pump() {
    clearTimeout(this.timer);
    while (this.inFlight < IN_FLIGHT && this.queue.length) {
      const wait = this.waitFor();
      if (wait > 0) {
        this.timer = setTimeout(() => this.pump(), wait);
        return;
      }
      this.send(this.takeBatch());
    }
  }

  async send({ cls, batch }) {
    this.inFlight += 1;
    try {
      const answer = await postFiles(projectPath(this.pid, "classes", cls, "images"), batch);
      this.added += answer.added.length;
      this.rejected.push(...answer.rejected);
    } catch (error) {
      this.rejected.push(
        ...batch.map((item) => ({ filename: item.name, error: error.message || String(error) })),
      );
    } finally {
      this.inFlight -= 1;
      this.done += batch.length;
      this.finished = !this.busy;
      this.finishedAt = performance.now();
      this.changed();
      this.pump();
    }
  }
}

/** The progress bar and the list of refused files, redrawn by `update(uploader)`. */
export function uploadPanel() {
  const bar = h("progress", { max: "1", value: "0", "aria-label": "Upload progress" });
  const text = h("span", { class: "upload-text" });
  const rejected = h("div", { class: "rejected" });
  const element = h("div", { class: "upload-panel", hidden: true, "aria-live": "polite" }, bar, text, rejected);
  function update(up) {
    element.hidden = up.total === 0;
    bar.max = Math.max(1, up.total);
    bar.value = up.done;
    const parts = [`${up.done} of ${plural(up.total, "file")} sent`, `${up.added} added`];
    if (up.rejected.length) parts.push(`${up.rejected.length} not added`);
    text.textContent = parts.join(" · ") + (up.busy ? "…" : ".");
    replace(rejected, rejectedList(up.rejected));
  }
  return { element, update };
}

/** A <details> listing each refused file and the server's reason. */
export function rejectedList(items) {
  if (!items.length) return null;
  const shown = items.slice(0, 200);
  return h(
    "details",
    { class: "rejected-list", open: items.length <= 5 },
    h("summary", {}, `${plural(items.length, "file")} not added`),
    h(
      "ul",
      {},
      shown.map((r) => h("li", {}, h("strong", {}, r.filename || "?"), `: ${r.error}`)),
      items.length > shown.length ? h("li", {}, `… and ${items.length - shown.length} more`) : null,
    ),
  );
}
