// The Export tab: the model file, ONNX exports (fp32 and int8, made by export jobs), the
// whole project as a zip, and how to use the model from Python or as a REST server.

import * as api from "./api.js";
import { button, h, replace } from "./dom.js";
import { snackbar } from "./notify.js";
import { chosenRun, readyRuns, runChooser } from "./results.js";

const FORMATS = [
  ["onnx", "model.onnx", "ONNX (float32)"],
  ["onnx-int8", "model-int8.onnx", "ONNX int8 (smaller, faster on CPUs)"],
];

function download(href, label, filename) {
  return h("a", { href, download: filename || true, class: "button" }, label);
}

function codeBlock(text, label) {
  const code = h("code", {}, text);
  const copy = button("Copy", async () => {
    await navigator.clipboard.writeText(text);
    snackbar(`${label} copied.`);
  }, { "aria-label": `Copy ${label}` });
  if (!navigator.clipboard) copy.hidden = true;
  return h("div", { class: "code" }, h("pre", {}, code), copy);
}

/** How to use run `rid`'s model file (downloaded as `<rid>-model.imgrec`) outside the studio. */
function snippets(rid) {
  const file = `${rid}-model.imgrec`;
  const python = [
    "from imgrec import ImageClassifier",
    "",
    `clf = ImageClassifier.load("${file}")`,
    'for p in clf.predict(["photo.jpg"], top_k=3):',
    "    print(p.label, p.confidence, p.classes, p.probabilities)",
  ].join("\n");
  const serve = [
    `imgrec serve path/to/${file} --port 8000`,
    "curl -F files=@photo.jpg http://127.0.0.1:8000/v1/predict",
  ].join("\n");
  return { python, serve };
}

export async function render(root, ctx) {
  const pid = ctx.pid;
  const { runs: all } = await api.listRuns(pid);
  const runs = readyRuns(all);
  const projectZip = h(
    "section",
    { class: "card" },
    h("h2", {}, "The whole project"),
    h("p", { class: "muted" }, "Photos sorted by class, labels.csv, the split and the latest model: a backup, or a way to move the project to another computer (import it on the Projects page)."),
    download(api.projectPath(pid, "export.zip"), "Download the project (zip)", `${pid}.zip`),
  );
  if (!runs.length) {
    replace(root, h("h1", {}, "Export"), h("p", { class: "empty" }, "Train a model first to export it. ", h("a", { href: ctx.route("p", pid, "train") }, "Go to Train.")), projectZip);
    return null;
  }
  const rid = chosenRun(runs, ctx.args[0]);
  const onnx = h("div", { class: "onnx" });
  const jobs = new Map(); // job id -> format
  const { python, serve } = snippets(rid);
  replace(
    root,
    h("h1", {}, "Export"),
    runChooser(runs, rid, (chosen) => ctx.go("p", pid, "export", chosen)),
    h(
      "section",
      { class: "card" },
      h("h2", {}, "The model file"),
      h("p", { class: "muted" }, "One file with the network, its classes and its settings: what imgrec predict, imgrec serve and the Python API load."),
      download(api.runFile(pid, rid, "model.imgrec"), "Download model.imgrec", `${rid}-model.imgrec`),
    ),
    h("section", { class: "card" }, h("h2", {}, "ONNX, for other programs"), onnx),
    projectZip,
    h("section", { class: "card" }, h("h2", {}, "Use it from Python"), codeBlock(python, "The Python example")),
    h("section", { class: "card" }, h("h2", {}, "Serve it over HTTP"), codeBlock(serve, "The serve commands")),
  );

  async function drawOnnx(running = {}) {
    const run = await api.getRun(pid, rid).catch(() => ({ files: {} }));
    const files = run.files || {};
    replace(
      onnx,
      FORMATS.map(([format, file, label]) => {
        const row = h("div", { class: "row-actions", dataset: { format } });
        if (files[file]) row.append(download(files[file], `Download ${file}`, `${rid}-${file}`));
        else if (running[format]) row.append(h("span", { class: "muted" }, `Making ${label}…`), h("progress", { "aria-label": `Making ${label}` }));
        else {
          row.append(
            button(`Make ${label}`, async () => {
              const job = await api.startJob(pid, "export", { run: rid, format });
              jobs.set(job.id, format);
              drawOnnx({ ...running, [format]: true });
            }),
          );
        }
        return row;
      }),
    );
  }

  const off = ctx.events.on("job", (job) => {
    if (job.kind !== "export" || !jobs.has(job.id)) return;
    if (api.jobActive(job)) return;
    jobs.delete(job.id);
    if (job.status === "done") snackbar("The ONNX file is ready to download.");
    const running = Object.fromEntries([...jobs.values()].map((f) => [f, true]));
    drawOnnx(running);
  });
  await drawOnnx();
  return off;
}
