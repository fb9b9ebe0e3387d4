// The studio's HTTP API (docs/studio.md) as small functions. Every path segment is
// URL-encoded here and nowhere else; every failure carries the server's one-sentence error
// and is reported to the visible error region before the caller sees it.

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

const hooks = {
  error: (error) => console.error(error),
  conflict: () => {},
};

/** app.js: where errors are shown, and what a 409 (changed in another tab) does. */
export function setHooks({ error, conflict }) {
  if (error) hooks.error = error;
  if (conflict) hooks.conflict = conflict;
}

/** "/api/" + the segments, each encoded: apiPath("projects", pid, "classes", cls). */
export function apiPath(...segments) {
  return `/api/${segments.map((s) => encodeURIComponent(String(s))).join("/")}`;
}

/** A project's URL: projectPath(pid, "classes", cls, "images"). */
export function projectPath(pid, ...segments) {
  return apiPath("projects", pid, ...segments);
}

/** Append a query string built from an object (undefined/null values are left out). */
export function withQuery(path, query) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") params.append(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

async function errorOf(response) {
  let message = "";
  try {
    const body = await response.json();
    if (body && typeof body.error === "string") message = body.error;
  } catch {
    // not JSON: fall through to the status line
  }
  if (!message) {
    message = `the studio answered ${response.status} ${response.statusText || ""}`.trim() + ".";
  }
  return new ApiError(message, response.status);
}

/**
 * One request. `json` is sent as application/json; `body` (FormData, Blob) as is.
 * `quiet: [404]` lets the caller handle those statuses itself (it still gets the ApiError).
 * Returns the parsed JSON (or null for an empty answer).
 */
export async function request(method, path, options = {}) {
  const { json, body, headers = {}, quiet = [], signal } = options;
  const init = { method, credentials: "same-origin", headers: { ...headers }, signal };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (cause) {
    if (cause && cause.name === "AbortError") throw cause;
    const error = new ApiError(
      "The studio did not answer; check that `imgrec studio` is still running, then try again.",
      0,
    );
    hooks.error(error);
    throw error;
  }
  if (!response.ok) {
    const error = await errorOf(response);
    if (!quiet.includes(response.status)) {
      hooks.error(error);
      if (response.status === 409) hooks.conflict(error);
    }
    throw error;
  }
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("application/json") ? response.json() : response;
}

export const get = (path, options) => request("GET", path, options);
export const post = (path, json, options = {}) => request("POST", path, { ...options, json });
const patch = (path, json, options = {}) => request("PATCH", path, { ...options, json });
const del = (path, options) => request("DELETE", path, options);

/**
 * POST files as one batch: a line of JSON naming each file and its size, then the files'
 * bytes back to back (serve/uploads.py). A Blob of the File objects: the browser streams
 * them from disk, and the studio reads each file as a slice instead of parsing multipart.
 */
export function postFiles(path, items, options = {}) {
  const manifest = JSON.stringify(items.map((item) => ({ name: item.name, size: item.blob.size })));
  const body = new Blob([manifest + "\n", ...items.map((item) => item.blob)]);
  const headers = { "Content-Type": "application/vnd.imgrec.files" };
  return request("POST", path, { ...options, body, headers });
}

/** POST a multipart form (zips, Try it's frames). */
export function postForm(path, form, options = {}) {
  return request("POST", path, { ...options, body: form });
}

// --- the calls the tabs make -------------------------------------------------------------

export const listProjects = () => get(apiPath("projects"));
export const createProject = (name) => post(apiPath("projects"), { name });
export const getProject = (pid) => get(projectPath(pid));
export const renameProject = (pid, name) => patch(projectPath(pid), { name });
export const deleteProject = (pid) => del(projectPath(pid));
export const restoreProject = (trashId) => post(apiPath("trash", trashId, "restore"));

export const addClass = (pid, name, options) =>
  post(projectPath(pid, "classes"), { name }, options);
export const renameClass = (pid, cls, name) => patch(projectPath(pid, "classes", cls), { name });
export const mergeClass = (pid, cls, into) =>
  post(projectPath(pid, "classes", cls, "merge"), { into });
export const deleteClass = (pid, cls) => del(projectPath(pid, "classes", cls));
export const listImages = (pid, cls, offset, limit, options) =>
  get(withQuery(projectPath(pid, "classes", cls, "images"), { offset, limit }), options);
export const moveImages = (pid, images, to) =>
  post(projectPath(pid, "images", "move"), { images: refs(images), to });
export const deleteImages = (pid, images) =>
  post(projectPath(pid, "images", "delete"), { images: refs(images) });
export const listActions = (pid) => get(projectPath(pid, "actions"));
export const undoAction = (pid, aid) => post(projectPath(pid, "actions", aid, "undo"));

export const startJob = (pid, kind, options = {}) =>
  post(projectPath(pid, "jobs"), { kind, options });
const listJobs = (pid) => get(projectPath(pid, "jobs"));
export const getJob = (pid, jid) => get(projectPath(pid, "jobs", jid));
export const cancelJob = (pid, jid) => post(projectPath(pid, "jobs", jid, "cancel"));
export const resumeJob = (pid, jid) => post(projectPath(pid, "jobs", jid, "resume"));
/** The newest job of `kind` (the list is newest first), or undefined. */
export const latestJob = async (pid, kind) => (await listJobs(pid)).jobs.find((j) => j.kind === kind);
/** Whether `job` (or null) is still waiting or running. */
export const jobActive = (job) => job?.status === "running" || job?.status === "queued";

export const listRuns = (pid) => get(projectPath(pid, "runs"));
export const getRun = (pid, rid) => get(projectPath(pid, "runs", rid));
export const runFile = (pid, rid, name) => projectPath(pid, "runs", rid, "files", name);
export const confusionImages = (pid, rid, actual, predicted) =>
  get(withQuery(projectPath(pid, "runs", rid, "confusion"), { actual, predicted }));
export const wrongImages = (pid, rid, limit = 24) =>
  get(withQuery(projectPath(pid, "runs", rid, "wrong"), { limit }));

export const getAudit = (pid) => get(projectPath(pid, "audit"));
export const keepImages = (pid, images, check) =>
  post(projectPath(pid, "audit", "keep"), { images: refs(images), check });

/** Only {cls, name} travels back: the server needs nothing else to find an image. */
function refs(images) {
  return images.map(({ cls, name }) => ({ cls, name }));
}
