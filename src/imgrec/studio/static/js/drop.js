// Reading what was dropped: files and whole folders (DataTransferItem.webkitGetAsEntry,
// recursing), then sorting them into classes the way a person means it.

const IMAGE_EXTENSIONS = new Set([
  "jpg", "jpeg", "png", "gif", "bmp", "webp", "tif", "tiff", "jfif", "pjpeg", "pjp", "ppm", "pgm",
]);

/** Whether a file looks like a photo (the server decides for sure). */
export function looksLikeImage(file, name = file.name) {
  if (file.type && file.type.startsWith("image/")) return true;
  const ext = name.includes(".") ? name.split(".").pop().toLowerCase() : "";
  return IMAGE_EXTENSIONS.has(ext);
}

function entryFile(entry) {
  return new Promise((resolve, reject) => entry.file(resolve, reject));
}

async function readAll(directory) {
  const reader = directory.createReader();
  const entries = [];
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) return entries; // readEntries answers in chunks (100 in Chromium)
    entries.push(...batch);
  }
}

async function walk(entry, prefix, out) {
  if (entry.isFile) {
    out.push({ path: prefix + entry.name, file: await entryFile(entry) });
  } else if (entry.isDirectory) {
    for (const child of await readAll(entry)) await walk(child, `${prefix}${entry.name}/`, out);
  }
}

/**
 * Every file dropped, with its path relative to what was dropped ("pets/cats/1.jpg").
 * The entries must be taken synchronously in the drop handler, before any await.
 */
function droppedEntries(dataTransfer) {
  const items = [...(dataTransfer.items || [])].filter((item) => item.kind === "file");
  const entries = items.map((item) => item.webkitGetAsEntry?.()).filter(Boolean);
  const files = [...(dataTransfer.files || [])];
  return async () => {
    if (!entries.length) return files.map((file) => ({ path: file.name, file }));
    const out = [];
    for (const entry of entries) await walk(entry, "", out);
    return out;
  };
}

/**
 * Sort dropped files into classes as the class list reads them: a dropped folder with
 * sub-folders gives a class per sub-folder; a folder of photos alone gives a class named
 * after it; loose photos go to `fallback` (the selected class).
 * Returns {byClass: Map(class -> [{name, blob}]), refused: [{filename, error}]}.
 */
export function sortIntoClasses(dropped, fallback) {
  const withSubfolders = new Set(
    dropped.filter(({ path }) => path.split("/").length >= 3).map(({ path }) => path.split("/")[0]),
  );
  const byClass = new Map();
  const refused = [];
  for (const { path, file } of dropped) {
    const parts = path.split("/");
    const name = parts[parts.length - 1];
    let cls = fallback;
    if (parts.length >= 3) cls = parts[1];
    else if (parts.length === 2) cls = withSubfolders.has(parts[0]) ? null : parts[0];
    const error = refusal(file, name, cls);
    if (error) {
      refused.push({ filename: path, error });
      continue;
    }
    if (!byClass.has(cls)) byClass.set(cls, []);
    byClass.get(cls).push({ name, blob: file });
  }
  return { byClass, refused };
}

function refusal(file, name, cls) {
  if (name.startsWith(".")) return "a hidden file; skipped.";
  if (!looksLikeImage(file, name)) return "not an image file; skipped.";
  if (cls === null) return "not inside a class folder; put it in a sub-folder named after its class.";
  if (!cls) return "no class to put it in: add a class first, or drop a folder named after the class.";
  return null; // deeper folders (pets/cats/indoor/1.jpg) still belong to the first-level class
}

/** All dropped photos into one class (a drop on the grid). */
export function allIntoClass(dropped, cls) {
  const items = [];
  const refused = [];
  for (const { path, file } of dropped) {
    const name = path.split("/").pop();
    const error = refusal(file, name, cls);
    if (error) refused.push({ filename: path, error });
    else items.push({ name, blob: file });
  }
  return { items, refused };
}

/** Highlight `zone` while files are dragged over it and call `onDrop(load)`. */
export function makeDropZone(zone, onDrop) {
  let depth = 0;
  zone.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    depth += 1;
    zone.classList.add("drag-over");
  });
  zone.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  zone.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) zone.classList.remove("drag-over");
  });
  zone.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.stopPropagation();
    depth = 0;
    zone.classList.remove("drag-over");
    onDrop(droppedEntries(event.dataTransfer));
  });
}

function hasFiles(event) {
  return [...(event.dataTransfer?.types || [])].includes("Files");
}
