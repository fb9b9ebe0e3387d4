// The page's shell: hash routes (#/, #/p/<pid>/<tab>/...), the project tabs, one event
// stream per open project, and the error/conflict hooks every request goes through.

import * as api from "./api.js";
import * as check from "./check.js";
import * as compare from "./compare.js";
import { h, onFailure, plural, replace } from "./dom.js";
import { ProjectEvents } from "./events.js";
import * as exporter from "./export.js";
import * as images from "./images.js";
import { clearErrors, showError } from "./notify.js";
import * as projects from "./projects.js";
import * as results from "./results.js";
import * as train from "./train.js";
import * as tryIt from "./try.js";

const TABS = [
  ["images", "Images", images],
  ["check", "Check data", check],
  ["train", "Train", train],
  ["results", "Results", results],
  ["try", "Try it", tryIt],
  ["export", "Export", exporter],
  ["compare", "Compare", compare],
];

const state = {
  pid: null, // the open project's id
  project: null, // its latest GET /api/projects/{pid}
  events: null,
  projectListeners: new Set(),
  view: null, // what the shown view's render() returned
  shown: null, // "<pid>/<tab>" of the shown view
  renderToken: 0,
};

/** "#/p/<pid>/<tab>/a/b" -> {pid, tab, args}; "#/" (or anything else) -> the project list. */
function parseRoute(hash) {
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(safeDecode);
  if (parts[0] === "p" && parts[1]) {
    return { pid: parts[1], tab: parts[2] || "images", args: parts.slice(3) };
  }
  return { pid: null, tab: "projects", args: [] };
}

function safeDecode(part) {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

/** The hash of a route: route("p", pid, "images", cls) with every segment encoded. */
export function route(...segments) {
  return `#/${segments.map((s) => encodeURIComponent(String(s))).join("/")}`;
}

export function go(...segments) {
  const hash = route(...segments);
  if (location.hash === hash) render();
  else location.hash = hash;
}

async function openProject(pid) {
  if (state.pid === pid && state.project) return state.project;
  closeProject();
  const project = await api.getProject(pid);
  state.pid = pid;
  state.project = project;
  state.events = new ProjectEvents(pid);
  state.events.on("project", ({ version }) => {
    if (state.project && version !== state.project.version) refreshProject();
  });
  return project;
}

function closeProject() {
  state.events?.close();
  state.events = null;
  state.pid = null;
  state.project = null;
  state.projectListeners.clear();
}

/** Fetch the open project again and tell the view (class list, counts) about it. */
async function refreshProject() {
  if (!state.pid) return null;
  const pid = state.pid;
  const project = await api.getProject(pid);
  if (state.pid !== pid) return null;
  state.project = project;
  renderHeader();
  for (const fn of [...state.projectListeners]) fn(project);
  return project;
}

function renderHeader() {
  const title = document.getElementById("project-title");
  const nav = document.getElementById("tabs");
  if (!state.project) {
    title.replaceChildren();
    nav.hidden = true;
    nav.replaceChildren();
    return;
  }
  const p = state.project;
  const classes = Array.isArray(p.classes) ? p.classes.length : p.classes;
  replace(
    title,
    h("span", { class: "project-name" }, p.name),
    h("span", { class: "muted" }, ` · ${plural(p.images ?? 0, "image")}, ${plural(classes ?? 0, "class", "classes")}`),
  );
  nav.hidden = false;
}

function renderTabs(current) {
  const nav = document.getElementById("tabs");
  const list = h("ul", { class: "tab-list" });
  for (const [key, label] of TABS) {
    const link = h("a", { href: route("p", state.pid, key), class: "tab" }, label);
    if (key === current) link.setAttribute("aria-current", "page");
    list.append(h("li", {}, link));
  }
  replace(nav, list);
  nav.querySelector("[aria-current]")?.scrollIntoView({ block: "nearest", inline: "nearest" });
}

function viewContext(tab, args) {
  return {
    pid: state.pid,
    tab,
    args,
    get project() {
      return state.project;
    },
    events: state.events,
    refreshProject,
    onProject(fn) {
      state.projectListeners.add(fn);
      return () => state.projectListeners.delete(fn);
    },
    go,
    route,
  };
}

/** A view's render() returns nothing, a cleanup function, or {cleanup, routeChanged}. */
function asView(result) {
  if (typeof result === "function") return { cleanup: result };
  return result || null;
}

/** Draw the view the hash names; the previous view stops its camera, loops and listeners. */
export async function render({ keepErrors = false, sameView = true } = {}) {
  const token = ++state.renderToken;
  const { pid, tab, args } = parseRoute(location.hash);
  if (sameView && state.view?.routeChanged && state.shown === `${pid}/${tab}`) {
    state.view.routeChanged(args); // e.g. another class in the Images tab: keep the webcam on
    return;
  }
  state.view?.cleanup?.();
  state.view = null;
  state.shown = null;
  state.projectListeners.clear();
  if (!keepErrors) clearErrors();
  const view = document.getElementById("view");
  view.setAttribute("aria-busy", "true");
  try {
    if (!pid) {
      closeProject();
      renderHeader();
      document.title = "imgrec studio";
      state.view = asView(await projects.render(view, { go, route }));
      return;
    }
    await openProject(pid);
    if (token !== state.renderToken) return;
    const entry = TABS.find(([key]) => key === tab) || TABS[0];
    renderHeader();
    renderTabs(entry[0]);
    document.title = `${entry[1]} · ${state.project.name} · imgrec studio`;
    state.view = asView(await entry[2].render(view, viewContext(entry[0], args)));
    state.shown = `${pid}/${tab}`;
  } catch (error) {
    if (token !== state.renderToken) return;
    replace(
      view,
      h("h1", {}, "Something went wrong"),
      h("p", {}, error?.message || String(error)),
      h("p", {}, h("a", { href: "#/" }, "Back to the projects")),
    );
    if (!(error instanceof api.ApiError)) showError(error);
  } finally {
    if (token === state.renderToken) view.removeAttribute("aria-busy");
  }
}

function start() {
  api.setHooks({
    error: showError,
    conflict: async () => {
      // "changed in another tab": show what is there now (the error stays visible)
      if (state.pid) await refreshProject().catch(() => null);
      await render({ keepErrors: true, sameView: false });
    },
  });
  onFailure((error) => {
    if (!(error instanceof api.ApiError)) showError(error);
  });
  window.addEventListener("hashchange", async () => {
    await render();
    const view = document.getElementById("view");
    if (!view.contains(document.activeElement)) view.focus({ preventScroll: true });
  });
  window.addEventListener("unhandledrejection", (event) => {
    if (!(event.reason instanceof api.ApiError)) showError(event.reason);
    event.preventDefault();
  });
  // a photo dropped outside a drop area must not replace the page with the photo
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());
  if (!location.hash) history.replaceState(null, "", "#/");
  render();
}

start();
