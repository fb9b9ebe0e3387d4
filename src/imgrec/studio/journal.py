"""The undo journal: every change to a project's classes and images, and how to take it back.

One JSON line per action is appended to .studio/journal.jsonl (a line `{"undone": id}` marks
an undo), so the history survives a restart and a killed server loses at most the line it was
writing. Nothing is ever deleted for good: deleted images and classes move to
.studio/trash/<action id>/ and their undo moves them back.

Undo checks first and then acts. Each action recorded what it left where, with the size and
modification time of every file it touched; if another tab has since moved, deleted or
replaced one of them, the undo is refused with a sentence (409) instead of half-done. The
caller holds the project's lock across the check and the act.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from imgrec.studio.errors import StudioError
from imgrec.studio.names import shown

JOURNAL_FILE = "journal.jsonl"
TRASH_FOLDER = "trash"

Problem = str | None


def now_iso() -> str:
    """The time now in ISO 8601, UTC, to the second: what every record of the studio carries."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def signature(path: Path) -> list[int] | None:
    """[size, mtime_ns] of a regular file (never following a symbolic link), else None: the
    fingerprint that tells an undo whether a file is still the one the action left."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return [st.st_size, st.st_mtime_ns]


def plural(n: int, word: str = "image") -> str:
    """'1 image', '3 images'."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class Journal:
    """The actions of one project, read once and then kept in memory (the Project object is
    the only writer, under its lock)."""

    def __init__(self, studio_dir: Path) -> None:
        self.path = Path(studio_dir) / JOURNAL_FILE
        self.trash = Path(studio_dir) / TRASH_FOLDER
        self._entries: list[dict] | None = None

    def record(self, kind: str, summary: str, details: dict, action_id: str | None = None) -> dict:
        """Append one action and return its record; `action_id` when the caller already moved
        files into trash/<id>/ under that id."""
        entry = {
            "id": action_id or new_action_id(),
            "kind": kind,
            "summary": summary,
            "time": now_iso(),
            **details,
        }
        entries = self.entries()  # read before appending, so the new line is not read twice
        self._append(entry)
        entries.append({**entry, "undone": False})
        return entries[-1]

    def mark_undone(self, entry: dict) -> None:
        """Record that `entry` was undone (a line of its own: the journal is append-only)."""
        self._append({"undone": entry["id"], "time": now_iso()})
        entry["undone"] = True

    def entries(self) -> list[dict]:
        """Every action, oldest first, each with `undone`."""
        if self._entries is None:
            self._entries = _read(self.path)
        return self._entries

    def find(self, action_id: str) -> dict:
        """The action with this id, or a 404 StudioError."""
        for entry in self.entries():
            if entry["id"] == action_id:
                return entry
        raise StudioError(
            f"There is no change '{shown(action_id)}' in this project's history; reload the page.",
            404,
        )

    def trash_dir(self, action_id: str) -> Path:
        """Where the files an action took away wait for its undo."""
        return self.trash / action_id

    def _append(self, document: dict) -> None:
        line = json.dumps(document, ensure_ascii=False) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as f:
            if f.tell() > 0:  # a line cut short by a killed server must not swallow this one
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")
            f.write(line.encode("utf-8"))


def write_json_atomic(path: Path, document: dict) -> None:
    """Write JSON to a temporary file beside `path` and os.replace it into place: a reader
    (or a server killed mid-write) sees the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(document, f, ensure_ascii=False, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict:
    """A small JSON object from disk, or {} when it is missing or damaged."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


KEPT_FILE = "kept.json"  # in .studio/: audit findings looked at and kept, by check


def read_kept(path: Path) -> dict[str, set[tuple[str, str]]]:
    """check -> the (class, name) pairs kept for it; damaged entries are left out."""
    return {
        check: {(r[0], r[1]) for r in refs if isinstance(r, list) and len(r) == 2}
        for check, refs in read_json(path).items()
        if isinstance(refs, list)
    }


def write_kept(path: Path, kept: dict[str, set[tuple[str, str]]]) -> None:
    document = {k: sorted([list(r) for r in v]) for k, v in sorted(kept.items()) if v}
    write_json_atomic(path, document)


def new_action_id() -> str:
    """A fresh action id: short, unique, safe as a folder name."""
    return uuid.uuid4().hex[:12]


def _read(path: Path) -> list[dict]:
    """The journal's actions with their `undone` flags; damaged lines (a killed server's last
    write) are skipped rather than fatal."""
    entries: dict[str, dict] = {}
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if not isinstance(doc, dict):
            continue
        if isinstance(doc.get("undone"), str) and doc["undone"] in entries:
            entries[doc["undone"]]["undone"] = True
        elif isinstance(doc.get("id"), str) and isinstance(doc.get("kind"), str):
            entries[doc["id"]] = {**doc, "undone": False}
    return list(entries.values())


def public(entry: dict, undoable: bool) -> dict:
    """An action as the page sees it: {id, kind, summary, time, undone, undoable}."""
    return {
        "id": entry["id"],
        "kind": entry["kind"],
        "summary": entry["summary"],
        "time": entry["time"],
        "undone": bool(entry.get("undone")),
        "undoable": undoable,
    }


# -- undo: one (check, revert) pair per kind of action ------------------------------------------


def gone(cls: str, name: str) -> str:
    """The sentence for an image that another tab (or a person in a file manager) moved."""
    return (
        f"{shown(cls)}/{shown(name)} is no longer in this project (another tab may have moved "
        "it); reload to see the current images."
    )


def undo_problem(entry: dict, data: Path, trash: Path) -> Problem:
    """Why `entry` cannot be undone now (a sentence), or None."""
    if entry.get("undone"):
        return "This change was already undone; reload to see the current images."
    kind = _KINDS.get(entry["kind"])
    if kind is None:
        return f"Changes of the kind '{shown(entry['kind'])}' cannot be undone."
    try:
        return kind[0](entry, data, trash / entry["id"])
    except (KeyError, TypeError, ValueError):
        return "This change's record is damaged, so it cannot be undone."


def revert(entry: dict, data: Path, trash: Path) -> None:
    """Take `entry` back; the caller checked `undo_problem` under the same lock."""
    _KINDS[entry["kind"]][1](entry, data, trash / entry["id"])


def _same_file(path: Path, sig: list[int]) -> bool:
    return signature(path) == list(sig)


def _class_missing(data: Path, cls: str) -> Problem:
    if not os.path.isdir(data / cls) or os.path.islink(data / cls):
        return (
            f"the class {shown(cls)} no longer exists; undo its deletion or re-create it first, "
            "then try again."
        )
    return None


def _name_taken(data: Path, cls: str, name: str) -> Problem:
    if os.path.lexists(data / cls / name):
        return f"another image is now called {shown(cls)}/{shown(name)}; rename or move it first."
    return None


def _conflict(problem: str) -> str:
    return f"This change can no longer be undone: {problem}"


def _check_placed(entry: dict, data: Path, trash: Path) -> Problem:
    """Added images: each still where it was put, unchanged."""
    for cls, name, *sig in entry["files"]:
        if not _same_file(data / cls / name, sig):
            return _conflict(gone(cls, name))
    return None


def _revert_placed(entry: dict, data: Path, trash: Path) -> None:
    for cls, name, *_ in entry["files"]:
        (trash / cls).mkdir(parents=True, exist_ok=True)
        os.replace(data / cls / name, trash / cls / name)
    for cls in entry.get("created", []):
        _remove_if_empty(data / cls)


def _check_deleted(entry: dict, data: Path, trash: Path) -> Problem:
    """Deleted images: each in the trash, its class still there and its name still free."""
    for cls, name, *sig in entry["files"]:
        if not _same_file(trash / cls / name, sig):
            return _conflict(f"{shown(cls)}/{shown(name)} is no longer in the project's trash.")
        problem = _class_missing(data, cls) or _name_taken(data, cls, name)
        if problem:
            return _conflict(problem)
    return None


def _revert_deleted(entry: dict, data: Path, trash: Path) -> None:
    for cls, name, *_ in entry["files"]:
        os.replace(trash / cls / name, data / cls / name)
    shutil.rmtree(trash, ignore_errors=True)


def _check_moved(entry: dict, data: Path, trash: Path) -> Problem:
    """Moved images: each still where it was moved to, its old class there, its old name free."""
    for src, name, dst, new_name, *sig in entry["files"]:
        if not _same_file(data / dst / new_name, sig):
            return _conflict(gone(dst, new_name))
        problem = _class_missing(data, src) or _name_taken(data, src, name)
        if problem:
            return _conflict(problem)
    return None


def _revert_moved(entry: dict, data: Path, trash: Path) -> None:
    for src, name, dst, new_name, *_ in entry["files"]:
        os.replace(data / dst / new_name, data / src / name)


def _check_renamed(entry: dict, data: Path, trash: Path) -> Problem:
    problem = _class_missing(data, entry["new"])
    if not problem and entry["old"] != entry["new"] and os.path.lexists(data / entry["old"]):
        problem = f"a class called {shown(entry['old'])} exists again; rename it first."
    return _conflict(problem) if problem else None


def _revert_renamed(entry: dict, data: Path, trash: Path) -> None:
    os.rename(data / entry["new"], data / entry["old"])


def _check_merged(entry: dict, data: Path, trash: Path) -> Problem:
    """A merge: the merged images still in the target class, the source's name still free."""
    source, into = entry["source"], entry["into"]
    if os.path.lexists(data / source):
        return _conflict(f"a class called {shown(source)} exists again; rename it first.")
    for _name, new_name, *sig in entry["files"]:
        if not _same_file(data / into / new_name, sig):
            return _conflict(gone(into, new_name))
    return None


def _revert_merged(entry: dict, data: Path, trash: Path) -> None:
    """The source class's folder comes back from the trash (with anything that was not an
    image in it), and its images come back from the target class."""
    source, into = entry["source"], entry["into"]
    if os.path.isdir(trash / source) and not os.path.islink(trash / source):
        os.rename(trash / source, data / source)
    else:
        os.mkdir(data / source)
    for name, new_name, *_ in entry["files"]:
        os.replace(data / into / new_name, data / source / name)


def _check_class_deleted(entry: dict, data: Path, trash: Path) -> Problem:
    cls = entry["cls"]
    if not os.path.isdir(trash / cls) or os.path.islink(trash / cls):
        return _conflict(f"the class {shown(cls)} is no longer in the project's trash.")
    if os.path.lexists(data / cls):
        return _conflict(f"a class called {shown(cls)} exists again; rename it first.")
    return None


def _revert_class_deleted(entry: dict, data: Path, trash: Path) -> None:
    os.rename(trash / entry["cls"], data / entry["cls"])
    shutil.rmtree(trash, ignore_errors=True)


def _check_class_added(entry: dict, data: Path, trash: Path) -> Problem:
    cls = entry["cls"]
    problem = _class_missing(data, cls)
    if not problem and _holds_anything(data / cls):
        problem = f"the class {shown(cls)} holds images now; delete the class instead."
    return _conflict(problem) if problem else None


def _revert_class_added(entry: dict, data: Path, trash: Path) -> None:
    os.rmdir(data / entry["cls"])


def _holds_anything(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(True for _ in entries)


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty (another tab added to it): the class stays
        os.rmdir(folder)


def _check_kept(entry: dict, data: Path, trash: Path) -> Problem:
    return None  # showing findings again is always possible


def _revert_kept(entry: dict, data: Path, trash: Path) -> None:
    path = data.parent / ".studio" / KEPT_FILE
    kept = read_kept(path)
    kept[entry["check"]] = kept.get(entry["check"], set()) - {tuple(r) for r in entry["refs"]}
    write_kept(path, kept)


_Check = Callable[[dict, Path, Path], Problem]
_Revert = Callable[[dict, Path, Path], None]
_KINDS: dict[str, tuple[_Check, _Revert]] = {
    "add": (_check_placed, _revert_placed),
    "import": (_check_placed, _revert_placed),
    "delete": (_check_deleted, _revert_deleted),
    "move": (_check_moved, _revert_moved),
    "rename_class": (_check_renamed, _revert_renamed),
    "merge_class": (_check_merged, _revert_merged),
    "delete_class": (_check_class_deleted, _revert_class_deleted),
    "add_class": (_check_class_added, _revert_class_added),
    "keep": (_check_kept, _revert_kept),
}
