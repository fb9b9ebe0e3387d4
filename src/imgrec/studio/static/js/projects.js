// The Projects page: every project with a few thumbnails and its counts; create, rename,
// delete (to the trash, with Undo), restore from the trash, and import a project zip.

import * as api from "./api.js";
import { button, field, form, h, nameForm, plural, renameInPlace, replace, when } from "./dom.js";
import { snackbar } from "./notify.js";

export async function render(root, { go, route }) {
  const list = h("ul", { class: "project-list", "aria-label": "Projects" });
  const trash = h("div", { class: "trash" });
  const { element: create, input: name } = nameForm({
    label: "New project name",
    submit: "Create project",
    empty: "Type a name for the new project first.",
    props: { class: "inline-form" },
    buttonProps: { class: "primary" },
    onName: async (text) => {
      const project = await api.createProject(text).catch(() => null);
      if (!project) return false;
      return go("p", project.id, "images");
    },
  });
  replace(
    root,
    h("h1", {}, "Your projects"),
    h(
      "p",
      { class: "muted" },
      "A project is a folder of photos sorted into classes. Make one, add photos or use the webcam, then train.",
    ),
    create,
    list,
    importForm(go),
    trash,
  );
  const reload = async () => {
    const [{ projects }, trashed] = await Promise.all([
      api.listProjects(),
      api.get(api.apiPath("trash")).catch(() => ({ items: [] })),
    ]);
    replace(list, projects.length ? projects.map((p) => projectCard(p, route, reload)) : emptyNote());
    replace(trash, trashList(trashed.items || [], reload));
  };
  await reload();
  if (!list.querySelector("li.project")) name.focus();
}

function emptyNote() {
  return h("li", { class: "empty" }, "No projects yet: give the first one a name above.");
}

function projectCard(project, route, reload) {
  const open = route("p", project.id, "images");
  const thumbs = h("div", { class: "project-thumbs", "aria-hidden": "true" });
  for (const url of (project.thumbs || []).slice(0, 4)) {
    thumbs.append(h("img", { src: url, alt: "", width: "64", height: "64", loading: "lazy" }));
  }
  const classes = Array.isArray(project.classes) ? project.classes.length : project.classes || 0;
  const title = h("h2", {}, h("a", { href: open }, project.name));
  const card = h(
    "li",
    { class: "project", dataset: { pid: project.id } },
    thumbs,
    h(
      "div",
      { class: "project-body" },
      title,
      h(
        "p",
        { class: "muted counts" },
        `${plural(project.images || 0, "image")} · ${plural(classes, "class", "classes")}`,
      ),
    ),
  );
  const actions = h(
    "div",
    { class: "row-actions" },
    h("a", { href: open, class: "button" }, "Open"),
    button("Rename", () => startRename(card, title, project, reload), {
      "aria-label": `Rename ${project.name}`,
    }),
    button("Delete", () => removeProject(project, reload), {
      class: "danger",
      "aria-label": `Delete ${project.name}`,
    }),
  );
  card.querySelector(".project-body").append(actions);
  return card;
}

function startRename(card, title, project, reload) {
  renameInPlace(title, {
    label: "New name",
    value: project.name,
    onSave: async (name) => {
      const renamed = await api.renameProject(project.id, name).catch(() => null);
      if (renamed) {
        snackbar(`Renamed to ${renamed.name}.`);
        await reload();
      }
    },
  });
}

async function removeProject(project, reload) {
  const { trash_id: trashId } = await api.deleteProject(project.id);
  await reload();
  snackbar(`Deleted project ${project.name}.`, "Undo", async () => {
    await api.restoreProject(trashId);
    snackbar(`Restored project ${project.name}.`);
    await reload();
  });
}

function trashList(items, reload) {
  if (!items.length) return null;
  return h(
    "details",
    {},
    h("summary", {}, `Trash (${items.length})`),
    h(
      "ul",
      { class: "plain" },
      items.map((item) =>
        h(
          "li",
          {},
          h("span", {}, `${item.name} — deleted ${when(item.deleted)} `),
          button("Restore", async () => {
            const project = await api.restoreProject(item.trash_id);
            snackbar(`Restored project ${project.name}.`);
            await reload();
          }, { "aria-label": `Restore ${item.name}` }),
        ),
      ),
    ),
  );
}

function importForm(go) {
  const file = h("input", { type: "file", accept: ".zip,application/zip", id: "import-project-file" });
  const note = h("p", { class: "muted", "aria-live": "polite" });
  const element = form({ class: "card import-project" }, async () => {
    if (!file.files.length) {
      throw new Error("Choose a project zip (made by Export → Download the project) first.");
    }
    const body = new FormData();
    body.append("file", file.files[0], file.files[0].name);
    note.textContent = "Importing…";
    const project = await api.postForm(api.apiPath("projects", "import"), body).catch(() => null);
    note.textContent = "";
    if (project) {
      snackbar(`Imported ${project.name}.`);
      go("p", project.id, "images");
    }
  },
    h("h2", {}, "Import a project"),
    field("Project zip", file, "A zip made by Export → Download the project, here or on another computer."),
    h("button", { type: "submit" }, "Import project"),
    note,
  );
  return element;
}
