// The Images tab: the class list (add, rename, merge, delete, each undoable), the selected
// class's virtualised grid with selection and move/delete, and every way to add photos:
// drop files or folders, the file picker, a zip, a folder or CSV on this computer, the webcam.

import { activityPanel } from "./activity.js";
import * as api from "./api.js";
import { capturePanel } from "./capture.js";
import { button, field, fileButton, h, nameForm, plural, renameInPlace, replace, select } from "./dom.js";
import { allIntoClass, looksLikeImage, makeDropZone, sortIntoClasses } from "./drop.js";
import { VirtualGrid } from "./grid.js";
import { offerUndo, showError, snackbar } from "./notify.js";
import { Uploader, rejectedList, uploadPanel } from "./uploads.js";
import { openViewer } from "./viewer.js";

export async function render(root, ctx) {
  const view = new ImagesView(root, ctx);
  await view.init();
  return { cleanup: () => view.destroy(), routeChanged: (args) => view.select(args[0]) };
}

class ImagesView {
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.pid = ctx.pid;
    this.cls = ctx.args[0] || null;
    this.grid = null;
    this.capture = null;
    this.info = null;
  }

  get classes() {
    const list = this.ctx.project?.classes;
    return Array.isArray(list) ? list : [];
  }

  async init() {
    this.info = await api.get(api.apiPath("info")).catch(() => ({}));
    const upload = uploadPanel();
    this.uploadPanel = upload;
    this.uploader = new Uploader(this.pid, {
      maxRequestBytes: (this.info.max_upload_mb || 0) * 1024 * 1024,
      onChange: (up) => {
        upload.update(up);
        if (!up.busy) this.ctx.refreshProject().catch(() => {});
      },
    });
    this.classList = h("ul", { class: "class-list", "aria-label": "Classes" });
    this.header = h("div", { class: "class-header" });
    this.selectionBar = h("div", { class: "selection-bar", role: "toolbar", "aria-label": "Selected images" });
    this.gridSlot = h("div", { class: "grid-slot" });
    this.importResult = h("div", { class: "import-result", "aria-live": "polite" });
    this.activity = activityPanel(this.pid, () => this.ctx.refreshProject());
    this.captureSlot = h("div", { class: "capture-slot", hidden: true });
    const classPanel = this.classPanel();
    const content = h(
      "section",
      { class: "class-content", "aria-label": "Images of the selected class" },
      this.header,
      this.addBar(),
      this.captureSlot,
      upload.element,
      this.importResult,
      this.selectionBar,
      this.gridSlot,
    );
    makeDropZone(content, (load) => this.dropOnGrid(load));
    replace(
      this.root,
      h("h1", { class: "sr-only" }, "Images"),
      h("div", { class: "images-layout" }, classPanel, content),
      this.activity.element,
    );
    this.unsubscribe = this.ctx.onProject(() => this.projectChanged());
    this.select(this.cls, true);
  }

  destroy() {
    this.capture?.stop();
    this.grid?.destroy();
    this.unsubscribe?.();
  }

  // --- the class list ---------------------------------------------------------------------

  classPanel() {
    const { element: form, input } = nameForm({
      label: "New class",
      submit: "Add class",
      empty: "Type a class name first (for example “cats”).",
      props: { class: "add-class" },
      onName: async (text) => {
        const made = await api.addClass(this.pid, text).catch(() => null);
        if (!made) return false;
        await this.ctx.refreshProject();
        return this.go(made.name);
      },
    });
    this.newClassInput = input;
    const panel = h(
      "aside",
      { class: "class-panel card", "aria-label": "Classes" },
      h("h2", {}, "Classes"),
      form,
      this.classList,
      h("p", { class: "hint" }, "Drop a folder here: each of its sub-folders becomes a class."),
    );
    makeDropZone(panel, (load) => this.dropOnClassList(load));
    return panel;
  }

  drawClassList() {
    const items = this.classes.map((c) => {
      const thumb = c.thumb
        ? h("img", { src: c.thumb, alt: "", width: "40", height: "40", loading: "lazy" })
        : h("span", { class: "thumb-empty", "aria-hidden": "true" });
      const link = h(
        "a",
        { href: this.ctx.route("p", this.pid, "images", c.name), class: "class-item", dataset: { cls: c.name } },
        thumb,
        h("span", { class: "class-name" }, c.name),
        h("span", { class: "class-count", "aria-label": plural(c.count, "image") }, String(c.count)),
      );
      if (c.name === this.cls) link.setAttribute("aria-current", "true");
      return h("li", {}, link);
    });
    const focused = this.classList.contains(document.activeElement) ? document.activeElement.dataset.cls : null;
    replace(this.classList, items.length ? items : h("li", { class: "muted" }, "No classes yet."));
    if (focused !== null) {
      // a redraw (another tab, an upload) must not throw a keyboard user's focus away
      [...this.classList.querySelectorAll(".class-item")].find((a) => a.dataset.cls === focused)?.focus();
    }
  }

  go(cls) {
    location.hash = this.ctx.route("p", this.pid, "images", cls);
  }

  /** Show class `cls` (or the first one); `force` redraws even when it is already shown. */
  select(cls, force = false) {
    const names = this.classes.map((c) => c.name);
    const chosen = names.includes(cls) ? cls : names[0] || null;
    if (chosen && cls && chosen !== cls) history.replaceState(null, "", this.ctx.route("p", this.pid, "images", chosen));
    const changed = chosen !== this.cls || force;
    this.cls = chosen;
    this.drawClassList();
    if (!changed) return;
    this.grid?.destroy();
    this.grid = null;
    this.drawHeader();
    if (!chosen) {
      replace(
        this.gridSlot,
        h(
          "div",
          { class: "empty" },
          h("p", {}, "Start by adding a class for each kind of thing to recognise, for example “cats” and “dogs”."),
          h("p", {}, "Then add photos: drop them here, choose files, import a zip, or use the webcam."),
        ),
      );
      this.drawSelectionBar(0);
      return;
    }
    const info = this.classes.find((c) => c.name === chosen);
    this.grid = new VirtualGrid({
      pid: this.pid,
      cls: chosen,
      total: info.count,
      label: `Images of ${chosen}`,
      onSelection: (n) => this.drawSelectionBar(n),
      onOpen: (index) => this.openViewer(index),
      onDelete: () => this.deleteSelected(),
    });
    const help = h(
      "p",
      { class: "hint" },
      "Click photos to select them (Shift-click for a range). Keyboard: arrows move, Space selects, Enter opens, Delete deletes.",
    );
    replace(this.gridSlot, help, this.grid.element);
    this.grid.layout();
    this.drawSelectionBar(0);
  }

  projectChanged() {
    const info = this.classes.find((c) => c.name === this.cls);
    if (!info) {
      this.select(null, true);
      return;
    }
    this.drawClassList();
    if (!this.header.contains(document.activeElement)) this.drawHeader(); // not mid-rename
    this.grid?.reload(info.count);
  }

  drawHeader() {
    const info = this.classes.find((c) => c.name === this.cls);
    if (!info) {
      replace(this.header, h("h2", {}, "No class selected"));
      return;
    }
    const title = h("h2", {}, info.name, h("span", { class: "muted" }, ` · ${plural(info.count, "image")}`));
    const others = this.classes.map((c) => c.name).filter((n) => n !== info.name);
    const tools = h(
      "div",
      { class: "row-actions" },
      button("Rename", () => this.renameForm(title, info.name), { "aria-label": `Rename class ${info.name}` }),
      others.length ? this.mergeControl(info.name, others) : null,
      button("Delete class", () => this.deleteClass(info.name), { class: "danger", "aria-label": `Delete class ${info.name}` }),
    );
    replace(this.header, title, tools);
  }

  renameForm(title, cls) {
    renameInPlace(title, {
      label: `New name for ${cls}`,
      value: cls,
      restore: () => this.drawHeader(),
      onSave: async (name) => {
        const action = await api.renameClass(this.pid, cls, name).catch(() => null);
        if (!action) return;
        offerUndo(this.pid, action, () => this.afterUndo());
        await this.ctx.refreshProject();
        this.go(name);
      },
    });
  }

  mergeControl(cls, others) {
    const into = select(others, others[0]);
    return h(
      "span",
      { class: "merge" },
      field("Merge into", into),
      button("Merge", async () => {
        const target = into.value;
        const action = await api.mergeClass(this.pid, cls, target);
        offerUndo(this.pid, action, () => this.afterUndo());
        await this.ctx.refreshProject();
        this.go(target);
      }, { "aria-label": `Merge ${cls} into the chosen class` }),
    );
  }

  async deleteClass(cls) {
    const action = await api.deleteClass(this.pid, cls);
    offerUndo(this.pid, action, () => this.afterUndo());
    await this.ctx.refreshProject();
    this.select(null, true);
  }

  async afterUndo() {
    await this.ctx.refreshProject();
    this.select(this.cls, true);
    this.activity.reload();
  }

  // --- selection --------------------------------------------------------------------------

  drawSelectionBar(count) {
    const targets = this.classes.map((c) => c.name).filter((n) => n !== this.cls);
    const none = count === 0;
    const to = select(targets, targets[0], { disabled: none || !targets.length });
    replace(
      this.selectionBar,
      h("span", { class: "selection-count", "aria-live": "polite" }, none ? "No photos selected" : `${plural(count, "photo")} selected`),
      field("Move to", to),
      button("Move", () => this.moveSelected(to.value), { disabled: none || !targets.length }),
      button("Delete", () => this.deleteSelected(), { class: "danger", disabled: none }),
      button("Select all", () => this.grid?.selectAll(), { disabled: !this.grid || !this.grid.total }),
      button("Clear selection", () => this.grid?.clearSelection(), { disabled: none }),
    );
  }

  async moveSelected(to) {
    const refs = this.grid.selectedRefs();
    if (!refs.length || !to) return;
    const action = await api.moveImages(this.pid, refs, to);
    offerUndo(this.pid, action, () => this.afterUndo());
    this.grid.clearSelection();
    await this.ctx.refreshProject();
  }

  async deleteSelected() {
    const refs = this.grid?.selectedRefs() || [];
    if (!refs.length) return;
    const action = await api.deleteImages(this.pid, refs);
    offerUndo(this.pid, action, () => this.afterUndo());
    this.grid.clearSelection();
    await this.ctx.refreshProject();
  }

  openViewer(index) {
    const grid = this.grid;
    if (grid) openViewer((i) => grid.image(i), index, grid.total);
  }

  // --- adding photos ----------------------------------------------------------------------

  addBar() {
    const webcam = button("Webcam", () => this.toggleCapture(webcam), { "aria-expanded": "false" });
    const path = h("input", { type: "text", autocomplete: "off", placeholder: "/home/me/photos" });
    const local = h(
      "details",
      { class: "local-import" },
      h("summary", {}, "Import a folder or CSV on this computer"),
      field("Path", path, "A folder with a sub-folder per class, or a CSV file with path,label columns."),
      h(
        "div",
        { class: "row-actions" },
        button("Import folder", () => this.importLocal("folder", path.value)),
        button("Import CSV", () => this.importLocal("csv", path.value)),
      ),
    );
    return h(
      "div",
      { class: "add-bar", role: "group", "aria-label": "Add photos" },
      fileButton("Add photos", { multiple: true, accept: "image/*", id: "add-photos", onFiles: (files) => this.pickFiles(files) }),
      fileButton("Import a zip", { accept: ".zip,application/zip", id: "import-zip", onFiles: (files) => this.importZip(files[0]) }),
      webcam,
      local,
    );
  }

  toggleCapture(toggle) {
    if (!this.capture) {
      this.capture = capturePanel({ uploader: this.uploader, currentClass: () => this.cls });
      this.captureSlot.append(this.capture.element);
    }
    const open = this.captureSlot.hidden;
    this.captureSlot.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    if (!open) {
      this.capture.stop();
    }
  }

  requireClass() {
    if (this.cls) return true;
    showError("Add a class first, then add photos to it.");
    this.newClassInput?.focus();
    return false;
  }

  pickFiles(files) {
    if (!this.requireClass()) return;
    const refused = files.filter((f) => !looksLikeImage(f)).map((f) => ({ filename: f.name, error: "not an image file; skipped." }));
    this.uploader.refuse(refused);
    const items = files.filter((f) => looksLikeImage(f)).map((f) => ({ name: f.name, blob: f }));
    this.uploader.add(this.cls, items);
  }

  async dropOnGrid(load) {
    if (!this.requireClass()) return;
    const { items, refused } = allIntoClass(await load(), this.cls);
    this.uploader.refuse(refused);
    this.uploader.add(this.cls, items);
  }

  async dropOnClassList(load) {
    const { byClass, refused } = sortIntoClasses(await load(), this.cls);
    this.uploader.refuse(refused);
    const known = new Set(this.classes.map((c) => c.name));
    for (const [cls, items] of byClass) {
      if (!known.has(cls)) {
        try {
          await api.addClass(this.pid, cls, { quiet: [409] });
        } catch (error) {
          if (error.status !== 409) {
            this.uploader.refuse(items.map((i) => ({ filename: `${cls}/${i.name}`, error: error.message })));
            continue;
          }
        }
      }
      this.uploader.add(cls, items);
    }
    await this.ctx.refreshProject();
    if (!this.cls && byClass.size) this.go([...byClass.keys()][0]);
  }

  async importZip(file) {
    const form = new FormData();
    form.append("file", file, file.name);
    replace(this.importResult, h("p", {}, `Importing ${file.name}…`));
    const path = api.withQuery(api.projectPath(this.pid, "import", "zip"), { cls: this.cls });
    const answer = await api.postForm(path, form).catch(() => null);
    this.showImport(answer, file.name);
  }

  async importLocal(kind, path) {
    if (!path.trim()) {
      showError("Type the path of a folder or CSV file on this computer first.");
      return;
    }
    replace(this.importResult, h("p", {}, `Importing ${path}…`));
    const answer = await api.post(api.projectPath(this.pid, "import", kind), { path: path.trim() }).catch(() => null);
    this.showImport(answer, path);
  }

  async showImport(answer, source) {
    if (!answer) {
      this.importResult.replaceChildren();
      return;
    }
    const classes = answer.classes || [];
    const text = `Added ${plural(answer.added, "image")} from ${source}${classes.length ? ` into ${classes.join(", ")}` : ""}.`;
    replace(this.importResult, h("p", {}, text), rejectedList(answer.rejected || []));
    snackbar(text);
    await this.ctx.refreshProject();
    if (!this.cls && classes.length) this.go(classes[0]);
  }
}
