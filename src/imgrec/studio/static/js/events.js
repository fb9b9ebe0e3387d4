// The project's server-sent events (/api/projects/{pid}/events): job progress, finished
// epochs, and the project's version (another tab changed something). The browser's own
// EventSource retries a dropped connection; when it gives up (the server was down and
// answered with an error) this reconnects with a growing pause.

import { projectPath } from "./api.js";
import { announce } from "./notify.js";

const MAX_PAUSE_MS = 15000;

export class ProjectEvents {
  constructor(pid) {
    this.pid = pid;
    this.listeners = { job: new Set(), epoch: new Set(), project: new Set(), open: new Set() };
    this.pause = 1000;
    this.timer = 0;
    this.closed = false;
    this.lost = false;
    this.connect();
  }

  /** Call `fn(data)` for each event of `type` (job, epoch, project, open); returns an unsubscribe. */
  on(type, fn) {
    this.listeners[type].add(fn);
    return () => this.listeners[type].delete(fn);
  }

  emit(type, data) {
    for (const fn of [...this.listeners[type]]) {
      try {
        fn(data);
      } catch (error) {
        console.error(error);
      }
    }
  }

  connect() {
    if (this.closed) return;
    const source = new EventSource(projectPath(this.pid, "events"), { withCredentials: true });
    this.source = source;
    for (const type of ["job", "epoch", "project"]) {
      source.addEventListener(type, (event) => {
        let data;
        try {
          data = JSON.parse(event.data);
        } catch {
          return;
        }
        this.emit(type, data);
      });
    }
    source.addEventListener("open", () => {
      this.pause = 1000;
      if (this.lost) announce("Live updates are back.");
      this.lost = false;
      document.body.classList.remove("offline");
      this.emit("open", {}); // views reload what they show: events may have been missed
    });
    source.addEventListener("error", () => {
      if (this.closed) return;
      this.lost = true;
      document.body.classList.add("offline");
      announce("Lost the connection to the studio; reconnecting…");
      if (source.readyState === EventSource.CLOSED) {
        clearTimeout(this.timer);
        this.timer = setTimeout(() => this.connect(), this.pause);
        this.pause = Math.min(this.pause * 2, MAX_PAUSE_MS);
      }
    });
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.source?.close();
    document.body.classList.remove("offline");
  }
}
