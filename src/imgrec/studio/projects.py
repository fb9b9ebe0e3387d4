"""The studio's home folder (`Studio`) and its projects (`Project`): plain folders on disk.

A project is an ordinary imgrec folder (docs/studio.md): project.json, data/<class>/<image>
(what `imgrec train` reads), runs/, and .studio/ for what only the studio needs (thumbnails,
the undo journal, trashed files, temporary uploads, kept audit findings). Nothing is kept
only in memory: a restarted server finds everything as it was.

Two tabs may edit one project at once, so the Studio hands out one Project object per id and
every change runs under that object's lock, checking under it that what it changes is still
there; a change bumps `version`, which the page polls to notice another tab's edit.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import os
import re
import shutil
import stat
import threading
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from imgrec.studio import ingest as ingest_mod
from imgrec.studio.errors import StudioError
from imgrec.studio.journal import (
    KEPT_FILE,
    Journal,
    gone,
    new_action_id,
    now_iso,
    plural,
    public,
    read_json,
    read_kept,
    revert,
    signature,
    undo_problem,
    write_json_atomic,
    write_kept,
)
from imgrec.studio.names import (
    check_class_name,
    check_file_name,
    check_name,
    inside,
    is_project_id,
    name_order,
    segment_ok,
    shown,
    slug,
    unique_name,
)
from imgrec.studio.project_zip import export_project, import_project
from imgrec.studio.thumbs import thumbnail

PROJECT_FILE = "project.json"
STUDIO_DIR = ".studio"
TRASH_DIR = ".trash"
TRASHED_FILE = "trashed.json"  # in a trashed project's .studio/: its id and when
MAX_PAGE = 500
_TEMP = re.compile(r"\..+\.tmp\Z")  # what write_json_atomic leaves when killed mid-write


def image_url(pid: str, cls: str, name: str) -> str:
    """The URL of an image file, each name a URL-quoted path segment."""
    return f"/api/projects/{_q(pid)}/images/{_q(cls)}/{_q(name)}"


def thumb_url(pid: str, cls: str, name: str) -> str:
    """The URL of an image's thumbnail."""
    return f"/api/projects/{_q(pid)}/thumbs/{_q(cls)}/{_q(name)}"


@functools.lru_cache(maxsize=1024)  # a batch's project and class, quoted once
def _q(segment: str) -> str:
    return quote(segment, safe="")


def _visible_dirs(folder: Path) -> list[str]:
    """Names of the real (not symbolic link), non-hidden folders in `folder`."""
    try:
        with os.scandir(folder) as entries:
            return [
                e.name
                for e in entries
                if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
            ]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _image_names(folder: Path) -> list[str]:
    """Names of the regular, non-hidden files in a class folder, unsorted: scandir alone,
    no stat (a class of 5,000 lists in milliseconds). A name the page could not ask for
    again (a control character, bytes that are not UTF-8) is left out."""
    try:
        with os.scandir(folder) as entries:
            return [
                e.name for e in entries if e.is_file(follow_symlinks=False) and segment_ok(e.name)
            ]
    except (FileNotFoundError, NotADirectoryError):
        return []


def clean_leftovers(folder: Path) -> None:
    """Remove what a killed server left half-written in a project: uploads in incoming/,
    temporary JSON files, thumbnails being saved."""
    incoming = folder / STUDIO_DIR / "incoming"
    for entry in incoming.iterdir() if incoming.is_dir() else ():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    for parent in (folder, folder / STUDIO_DIR):
        for entry in parent.iterdir() if parent.is_dir() else ():
            if _TEMP.match(entry.name) and entry.is_file():
                entry.unlink(missing_ok=True)
    for entry in (folder / STUDIO_DIR / "thumbs").glob("*/.thumb-*.tmp"):
        entry.unlink(missing_ok=True)


class Studio:
    """The home folder: one sub-folder per project, .trash/ for deleted ones."""

    def __init__(self, home: Path) -> None:
        self.home = Path(os.path.abspath(Path(home).expanduser()))
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            (self.home / TRASH_DIR).mkdir(exist_ok=True)
        except OSError as exc:
            raise StudioError(
                f"cannot keep projects in {shown(str(self.home))}: {exc.strerror or exc}; "
                "choose another folder with --home."
            ) from None
        self._lock = threading.Lock()  # the id -> Project map, creating and trashing
        self._names_lock = threading.Lock()  # display names stay unique; taken last, always
        self._projects: dict[str, Project] = {}
        for pid in self._project_ids():
            clean_leftovers(self.home / pid)

    def _project_ids(self) -> list[str]:
        return [
            name
            for name in _visible_dirs(self.home)
            if is_project_id(name) and (self.home / name / PROJECT_FILE).is_file()
        ]

    def list_projects(self) -> list[dict]:
        """Every project, described without its classes, by name."""
        out = []
        for pid in self._project_ids():
            with contextlib.suppress(StudioError):  # trashed meanwhile
                out.append(self.project(pid).describe(with_classes=False))
        return sorted(out, key=lambda p: (*name_order(p["name"]), p["id"]))

    def create_project(self, name: str) -> Project:
        """A new, empty project; 409 when a project of that name exists."""
        name = check_name(name, "project name")
        with self._lock, self._names_lock:
            self._check_name_free(name)
            pid = self._free_id(slug(name))
            folder = self.home / pid
            folder.mkdir()
            Project.create_files(folder, name)
            project = Project(self, folder)
            self._projects[pid] = project
            return project

    def project(self, pid: str) -> Project:
        """The project with this id (always the same object, so tabs share its lock); 404."""
        if not is_project_id(pid):
            raise _no_project(pid)
        with self._lock:
            project = self._projects.get(pid)
            if project is not None and not project.gone:
                return project
            folder = self.home / pid
            if folder.is_symlink() or not (folder / PROJECT_FILE).is_file():
                raise _no_project(pid)
            project = Project(self, folder)
            self._projects[pid] = project
            return project

    def trash_project(self, pid: str) -> str:
        """Move the project's folder to home/.trash/<trash_id>/; returns the trash_id."""
        project = self.project(pid)
        with self._lock, project.lock:
            project.check_alive()
            trash_id = f"{pid}-{uuid.uuid4().hex[:8]}"
            info = {"id": pid, "name": project.name, "deleted": now_iso()}
            write_json_atomic(project.folder / STUDIO_DIR / TRASHED_FILE, info)
            os.rename(project.folder, self.home / TRASH_DIR / trash_id)
            project.gone = True
            self._projects.pop(pid, None)
        return trash_id

    def list_trash(self) -> list[dict]:
        """[{trash_id, name, deleted}], the latest deleted first."""
        items = []
        for trash_id in _visible_dirs(self.home / TRASH_DIR):
            info = read_json(self.home / TRASH_DIR / trash_id / STUDIO_DIR / TRASHED_FILE)
            if is_project_id(trash_id) and info:
                items.append(
                    {
                        "trash_id": trash_id,
                        "name": str(info.get("name", trash_id)),
                        "deleted": str(info.get("deleted", "")),
                    }
                )
        return sorted(items, key=lambda i: (i["deleted"], i["trash_id"]), reverse=True)

    def restore(self, trash_id: str) -> Project:
        """Move a trashed project back; 404 if not in the trash, 409 if its id or its name is
        taken again."""
        folder = self.home / TRASH_DIR / str(trash_id)
        info = read_json(folder / STUDIO_DIR / TRASHED_FILE) if is_project_id(trash_id) else {}
        pid, name = info.get("id"), info.get("name")
        if not is_project_id(pid) or not isinstance(name, str) or folder.is_symlink():
            raise StudioError(
                f"There is no project '{shown(trash_id)}' in the trash; reload the page.", 404
            )
        with self._lock, self._names_lock:
            if os.path.lexists(self.home / pid):
                raise StudioError(
                    f"Cannot restore '{shown(name)}': a newer project uses its folder "
                    f"'{pid}'; delete that project first, then restore this one.",
                    409,
                )
            self._check_name_free(name)
            os.rename(folder, self.home / pid)
            (self.home / pid / STUDIO_DIR / TRASHED_FILE).unlink(missing_ok=True)
        return self.project(pid)

    def import_project_zip(self, zip_path: Path, name: str | None = None) -> Project:
        """A new project from a zip that `Project.export_zip` wrote."""
        return import_project(self, Path(zip_path), name)

    def free_name(self, name: str) -> str:
        """`name`, or "name (2)", "name (3)", ...: the first no project has."""
        with self._names_lock:
            taken = {n.casefold() for n in self._names().values()}
        candidate, n = name, 2
        while candidate.casefold() in taken:
            suffix = f" ({n})"
            candidate, n = name[: 80 - len(suffix)] + suffix, n + 1
        return candidate

    def discard(self, project: Project) -> None:
        """Remove a project that was never finished (an import that failed), for good."""
        with self._lock, project.lock:
            project.gone = True
            self._projects.pop(project.id, None)
            shutil.rmtree(project.folder, ignore_errors=True)

    def check_name_free(self, name: str, pid: str | None = None) -> None:
        """409 when a project other than `pid` has this name (letter case ignored)."""
        with self._names_lock:
            self._check_name_free(name, pid)

    def _check_name_free(self, name: str, pid: str | None = None) -> None:
        for other, other_name in self._names().items():
            if other != pid and other_name.casefold() == name.casefold():
                raise StudioError(
                    f"A project called '{shown(other_name)}' already exists; choose another name.",
                    409,
                )

    def _names(self) -> dict[str, str]:
        """id -> display name of every project."""
        names = {}
        for pid in self._project_ids():
            cached = self._projects.get(pid)
            names[pid] = cached.name if cached else _read_name(self.home / pid)
        return names

    def _free_id(self, base: str) -> str:
        pid, n = base, 2
        while os.path.lexists(self.home / pid):
            pid, n = f"{base}-{n}", n + 1
        return pid


def _read_name(folder: Path) -> str:
    name = read_json(folder / PROJECT_FILE).get("name")
    return name if isinstance(name, str) else folder.name


def _no_project(pid: object) -> StudioError:
    return StudioError(
        f"There is no project '{shown(pid)}' (it may have been deleted in another tab); go back "
        "to the list of projects.",
        404,
    )


def _no_class(cls: object) -> StudioError:
    return StudioError(
        f"There is no class '{shown(cls)}' in this project (another tab may have renamed or "
        "deleted it); reload the page.",
        404,
    )


Ref = tuple[str, str]


class Project:
    """One project folder. Every method that changes something takes `lock`."""

    def __init__(self, studio: Studio | None, folder: Path) -> None:
        self.studio = studio
        self.folder = Path(folder)
        self.id = self.folder.name
        self.data = self.folder / "data"
        self.runs = self.folder / "runs"
        self.studio_dir = self.folder / STUDIO_DIR
        self.thumbs = self.studio_dir / "thumbs"
        self.trash = self.studio_dir / "trash"
        self.incoming = self.studio_dir / "incoming"
        self.lock = threading.RLock()
        # one upload batch at a time: the page keeps two requests in flight so the next
        # batch arrives while this one is written, but two batches written at once fight
        # over the cores and the GIL (0.39 against 0.22 ms per photo, benchmarks/studio.py)
        self.upload_lock = threading.Lock()
        self.gone = False
        for folder_ in (self.data, self.runs, self.thumbs, self.trash, self.incoming):
            folder_.mkdir(parents=True, exist_ok=True)
        meta = read_json(self.folder / PROJECT_FILE)
        self.name: str = meta.get("name") if isinstance(meta.get("name"), str) else self.id
        self.created: str = str(meta.get("created", ""))
        self.version: int = meta.get("version") if isinstance(meta.get("version"), int) else 0
        self.journal = Journal(self.studio_dir)

    @staticmethod
    def create_files(folder: Path, name: str) -> None:
        """The project.json of a new project in the empty `folder` (its sub-folders are made
        by `Project`, for a new project and an old one alike)."""
        write_json_atomic(folder / PROJECT_FILE, {"name": name, "created": now_iso(), "version": 1})

    # -- the project itself -----------------------------------------------------------------------

    def check_alive(self) -> None:
        """404 when the project was moved to the trash (by another tab) since this object was
        handed out."""
        if self.gone or not self.folder.is_dir():
            raise _no_project(self.id)

    def _bump(self) -> None:
        """Every change: version + 1, project.json rewritten atomically."""
        self.version += 1
        self._write_meta()

    def _write_meta(self) -> None:
        write_json_atomic(
            self.folder / PROJECT_FILE,
            {"name": self.name, "created": self.created, "version": self.version},
        )

    def describe(self, with_classes: bool = True) -> dict:
        """{id, name, created, version, images, classes: count or [{name, count, thumb}],
        thumbs: up to 4 thumbnail URLs, the first image of each class in turn}."""
        with self.lock:
            self.check_alive()
            stats = self._class_stats()
            head = {
                "id": self.id,
                "name": self.name,
                "created": self.created,
                "version": self.version,
            }
        firsts = [[(cls, n) for n in names] for cls, _, names in stats]
        thumbs = [thumb_url(self.id, c, n) for c, n in _round_robin(firsts)][:4]
        classes: int | list[dict] = len(stats)
        if with_classes:
            classes = [
                {
                    "name": cls,
                    "count": count,
                    "thumb": thumb_url(self.id, cls, names[0]) if names else None,
                }
                for cls, count, names in stats
            ]
        images = sum(count for _, count, _ in stats)
        return {**head, "images": images, "classes": classes, "thumbs": thumbs}

    def _class_stats(self) -> list[tuple[str, int, list[str]]]:
        """(class, image count, its first 4 image names) for every class, in name order."""
        stats = []
        for cls in sorted(self.class_names(), key=name_order):
            names = _image_names(self.data / cls)
            stats.append((cls, len(names), heapq.nsmallest(4, names, key=name_order)))
        return stats

    def class_names(self) -> list[str]:
        """The classes: the folders under data/ (not symbolic links), unsorted."""
        return [name for name in _visible_dirs(self.data) if segment_ok(name)]

    def image_names(self, cls: str) -> list[str]:
        """The image files of a class, by name."""
        return sorted(_image_names(self.data / cls), key=name_order)

    def rename(self, name: str) -> dict:
        """Change the display name (the id, the folder's name, stays); 409 if it is taken."""
        name = check_name(name, "project name")
        with self.lock:
            self.check_alive()
            if self.studio is not None:
                self.studio.check_name_free(name, self.id)
            self.name = name
            self._bump()
        return self.describe()

    # -- classes ----------------------------------------------------------------------------------

    def _class(self, cls: object) -> str:
        """The name of an existing class (a real folder under data/, named exactly so: the
        page sends back the names it was given), else 404."""
        if not segment_ok(cls):
            raise _no_class(cls)
        try:
            is_dir = stat.S_ISDIR(os.lstat(self.data / cls).st_mode)
        except OSError:
            is_dir = False
        if not is_dir:
            raise _no_class(cls)
        inside(self.data, self.data / cls)
        return cls

    def _check_class_free(self, name: str, renaming: str | None = None) -> None:
        """409 when another class has this name (letter case ignored), or a file of that name
        sits in data/."""
        for other in self.class_names():
            if other != renaming and other.casefold() == name.casefold():
                raise StudioError(
                    f"A class called '{shown(other)}' already exists in this project; choose "
                    "another name.",
                    409,
                )
        if name != renaming and os.path.lexists(self.data / name):
            raise StudioError(
                f"Something called '{shown(name)}' is already in this project's data folder; "
                "choose another name.",
                409,
            )

    def add_class(self, name: str) -> dict:
        """A new, empty class: {name, count}; 409 if one of that name exists."""
        name = check_class_name(name)
        with self.lock:
            self.check_alive()
            self._check_class_free(name)
            os.mkdir(inside(self.data, self.data / name))
            self.journal.record("add_class", f"Added class {name}", {"cls": name})
            self._bump()
        return {"name": name, "count": 0}

    def rename_class(self, old: str, new: str) -> dict:
        """Rename a class (its folder); an Action. 409 if `new` exists."""
        new = check_class_name(new)
        with self.lock:
            self.check_alive()
            old = self._class(old)
            if new == old:
                raise StudioError(f"The class is already called {shown(new)}.")
            self._check_class_free(new, renaming=old)
            os.rename(self.data / old, inside(self.data, self.data / new))
            entry = self.journal.record(
                "rename_class", f"Renamed class {old} to {new}", {"old": old, "new": new}
            )
            return self._done(entry)

    def merge_class(self, source: str, into: str) -> dict:
        """Move every image of `source` into `into` (clashing names get -2, -3) and remove
        `source`; an Action."""
        with self.lock:
            self.check_alive()
            source, into = self._class(source), self._class(into)
            if source == into:
                raise StudioError(
                    f"Cannot merge {shown(source)} into itself; choose another class."
                )
            aid = new_action_id()
            files = []
            for name in self.image_names(source):
                new_name = unique_name(self.data / into, name)
                os.replace(self.data / source / name, self.data / into / new_name)
                files.append([name, new_name, *(signature(self.data / into / new_name) or [0, 0])])
            trash = self.journal.trash_dir(aid)
            trash.mkdir(parents=True, exist_ok=True)
            os.rename(self.data / source, trash / source)  # whatever else it held, kept
            summary = f"Merged {source} into {into} ({plural(len(files))})"
            details = {"source": source, "into": into, "files": files}
            entry = self.journal.record("merge_class", summary, details, action_id=aid)
            return self._done(entry)

    def delete_class(self, name: str) -> dict:
        """Move a class's folder, images and all, to the project's trash; an Action."""
        with self.lock:
            self.check_alive()
            cls = self._class(name)
            count = len(_image_names(self.data / cls))
            aid = new_action_id()
            trash = self.journal.trash_dir(aid)
            trash.mkdir(parents=True, exist_ok=True)
            os.rename(self.data / cls, trash / cls)
            summary = f"Deleted class {cls} and its {plural(count)}"
            entry = self.journal.record(
                "delete_class", summary, {"cls": cls, "count": count}, action_id=aid
            )
            return self._done(entry)

    def _done(self, entry: dict) -> dict:
        """After a change: bump the version, answer the Action."""
        self._bump()
        return public(entry, undo_problem(entry, self.data, self.journal.trash) is None)

    # -- images -----------------------------------------------------------------------------------

    def image(self, cls: str, name: str, size: int | None = None) -> dict:
        """An Image: {cls, name, url, thumb, bytes}."""
        if size is None:
            sig = signature(self.data / cls / name)
            size = sig[0] if sig else 0
        return {
            "cls": cls,
            "name": name,
            "url": image_url(self.id, cls, name),
            "thumb": thumb_url(self.id, cls, name),
            "bytes": size,
        }

    def list_images(self, cls: str, offset: int = 0, limit: int = 100) -> dict:
        """{total, offset, images}: one page of a class, sorted by name; only the page's
        files are stat'ed (for their size)."""
        self.check_alive()
        cls = self._class(cls)
        offset = max(0, int(offset))
        limit = max(1, min(int(limit), MAX_PAGE))
        names = self.image_names(cls)
        page = [self.image(cls, n) for n in names[offset : offset + limit]]
        return {"total": len(names), "offset": offset, "images": page}

    def image_path(self, cls: str, name: str) -> Path:
        """The path of an image file, checked to be a regular file inside data/; 404."""
        cls = self._class(cls)
        name = check_file_name(name)
        path = inside(self.data, self.data / cls / name)
        if signature(path) is None:
            raise StudioError(gone(cls, name), 404)
        return path

    def thumbnail(self, cls: str, name: str) -> Path:
        """The cached JPEG thumbnail of an image (made on first request); 404, 422."""
        path = self.image_path(cls, name)
        try:
            return thumbnail(path, self.thumbs, f"{cls}/{name}")
        except FileNotFoundError:  # moved by another tab while the thumbnail was made
            raise StudioError(gone(cls, name), 404) from None

    def add_images(self, cls: str, files: list[tuple[str, bytes]]) -> dict:
        """Uploaded files into an existing class (404 if it is not there):
        {added: [Image], rejected: [{filename, error}]}; one Action."""
        with self.lock:
            self.check_alive()
            cls = self._class(cls)
        batch = self.new_batch(create_classes=False)
        try:
            with self.upload_lock:
                batch.add_uploads([(str(filename), payload) for filename, payload in files], cls)
        finally:
            self.record_import(batch, "add", f"Added {plural(len(batch.added))} to {cls}")
        added = [self.image(c, n, size) for c, n, size, _ in batch.added]
        return {"added": added, "rejected": batch.rejected}

    def _refs(self, refs: Iterable[tuple[str, str]]) -> list[Ref]:
        """Checked (class, name) pairs, each once, each still there (409 with a sentence)."""
        out: dict[Ref, None] = {}
        for ref in refs:
            try:
                cls, name = ref
            except (TypeError, ValueError):
                raise StudioError("Each image must be given as a class and a name.") from None
            try:
                key = (self._class(cls), check_file_name(name))
            except StudioError:
                raise StudioError(gone(str(cls), str(name)), 409) from None
            if signature(self.data / key[0] / key[1]) is None:
                raise StudioError(gone(*key), 409)
            out[key] = None
        if not out:
            raise StudioError("Choose at least one image first.")
        return list(out)

    def move_images(self, refs: list[tuple[str, str]], to: str) -> dict:
        """Move images to class `to` (clashing names get -2, -3); an Action."""
        with self.lock:
            self.check_alive()
            to = self._class(to)
            todo = [ref for ref in self._refs(refs) if ref[0] != to]
            if not todo:
                raise StudioError(f"Those images are already in {shown(to)}.")
            files = []
            for cls, name in todo:
                new_name = unique_name(self.data / to, name)
                os.replace(self.data / cls / name, self.data / to / new_name)
                sig = signature(self.data / to / new_name) or [0, 0]
                files.append([cls, name, to, new_name, *sig])
            sources = sorted({cls for cls, _ in todo}, key=name_order)
            origin = sources[0] if len(sources) == 1 else f"{len(sources)} classes"
            summary = f"Moved {plural(len(files))} from {origin} to {to}"
            entry = self.journal.record("move", summary, {"files": files})
            return self._done(entry)

    def delete_images(self, refs: list[tuple[str, str]]) -> dict:
        """Move images to the project's trash (their undo brings them back); an Action."""
        with self.lock:
            self.check_alive()
            todo = self._refs(refs)
            aid = new_action_id()
            trash = self.journal.trash_dir(aid)
            files = []
            for cls, name in todo:
                (trash / cls).mkdir(parents=True, exist_ok=True)
                os.replace(self.data / cls / name, trash / cls / name)
                files.append([cls, name, *(signature(trash / cls / name) or [0, 0])])
            classes = sorted({cls for cls, _ in todo}, key=name_order)
            where = classes[0] if len(classes) == 1 else f"{len(classes)} classes"
            summary = f"Deleted {plural(len(files))} from {where}"
            entry = self.journal.record("delete", summary, {"files": files}, action_id=aid)
            return self._done(entry)

    # -- imports ----------------------------------------------------------------------------------

    def new_batch(self, create_classes: bool = True) -> ingest_mod.Ingest:
        """An Ingest for this project: files staged in its incoming/, placed under its lock."""
        return ingest_mod.Ingest(
            self.data, self.incoming, self.lock, create_classes, guard=self.check_alive
        )

    def record_import(self, batch: ingest_mod.Ingest, kind: str, summary: str) -> None:
        """One Action for everything a batch placed (even if it stopped half-way)."""
        if not batch.added and not batch.created:
            return
        with self.lock:
            if self.gone:
                return
            details = {"files": batch.added, "created": batch.created}
            self.journal.record(kind, summary, details)
            self._bump()

    def _import(self, run: Callable[[ingest_mod.Ingest], None], source: str) -> dict:
        with self.lock:
            self.check_alive()
        batch = self.new_batch()
        try:
            run(batch)
        finally:
            classes = batch.classes()
            summary = f"Imported {plural(len(batch.added))} from {source}"
            if classes:
                summary += f" into {', '.join(classes[:3])}" + (", ..." if len(classes) > 3 else "")
            self.record_import(batch, "import", summary)
        return batch.answer()

    def import_zip(self, zip_path: Path, cls: str | None = None) -> dict:
        """A zip of a folder per class (or of loose images into `cls`, which must exist), or
        a project zip (by its labels.csv): {added, rejected, classes}."""
        if cls is not None:
            with self.lock:
                cls = self._class(cls)
        name = Path(zip_path).name
        return self._import(lambda b: ingest_mod.import_zip(b, Path(zip_path), cls), name)

    def import_folder(self, path: Path) -> dict:
        """A folder per class on this machine, copied in: {added, rejected, classes}."""
        self._refuse_own(Path(path))
        return self._import(lambda b: ingest_mod.import_folder(b, Path(path)), Path(path).name)

    def import_csv(self, path: Path) -> dict:
        """The files a path,label CSV lists, copied in: {added, rejected, classes}."""
        return self._import(lambda b: ingest_mod.import_csv(b, Path(path)), Path(path).name)

    def _refuse_own(self, path: Path) -> None:
        real, own = os.path.realpath(path.expanduser()), os.path.realpath(self.folder)
        if real == own or real.startswith(own + os.sep) or own.startswith(real + os.sep):
            raise StudioError(
                "That folder is this project's own folder (or holds it); choose a folder of "
                "photos elsewhere on this machine."
            )

    # -- history ----------------------------------------------------------------------------------

    def actions(self, limit: int = 50) -> list[dict]:
        """The latest changes, newest first, each saying whether it can still be undone."""
        limit = max(1, min(int(limit), MAX_PAGE))
        with self.lock:
            self.check_alive()
            entries = self.journal.entries()[::-1][:limit]
            return [
                public(e, undo_problem(e, self.data, self.journal.trash) is None) for e in entries
            ]

    def undo(self, action_id: str) -> dict:
        """Take a change back: 404 unknown, 409 already undone or no longer possible."""
        with self.lock:
            self.check_alive()
            entry = self.journal.find(str(action_id))
            problem = undo_problem(entry, self.data, self.journal.trash)
            if problem:
                raise StudioError(problem, 409)
            revert(entry, self.data, self.journal.trash)
            self.journal.mark_undone(entry)
            self._bump()
            return public(entry, False)

    # -- audit findings kept ----------------------------------------------------------------------

    def keep(self, refs: list[tuple[str, str]], check: str) -> dict:
        """Remember that these images were looked at for `check` and are fine as they are;
        an Action, so that the check's card can show them again (undo)."""
        if not isinstance(check, str) or not check.strip() or len(check) > 80:
            raise StudioError("Say which check the images are kept for.")
        with self.lock:
            self.check_alive()
            kept = self.kept()
            before = set(kept.get(check, set()))
            kept.setdefault(check, set()).update((str(c), str(n)) for c, n in refs)
            new = sorted(kept[check] - before)
            write_kept(self.studio_dir / KEPT_FILE, kept)
            summary = f"Kept {plural(len(new))} flagged by the {check} check"
            entry = self.journal.record("keep", summary, {"check": check, "refs": new})
            self._bump()
            return public(entry, True)

    def kept(self) -> dict[str, set[tuple[str, str]]]:
        """check -> the (class, name) pairs kept for it."""
        return read_kept(self.studio_dir / KEPT_FILE)

    # -- the project as one file ------------------------------------------------------------------

    def export_zip(self, out: BinaryIO) -> None:
        """Write the project as a zip to `out` (see project_zip.py)."""
        self.check_alive()
        export_project(self, out)


def _round_robin(lists: list[list]) -> list:
    """The first item of each list, then the second of each, ..."""
    out = []
    for i in range(max((len(x) for x in lists), default=0)):
        out += [x[i] for x in lists if i < len(x)]
    return out
