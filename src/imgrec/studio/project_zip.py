"""A project as one zip file, and such a zip back as a new project.

The zip is useful without the studio: data/<class>/<file> is an imgrec dataset, labels.csv
(path,label) and split.csv (path,label,split, from the latest run that has one) are dataset
CSVs whose paths are relative to the zip's root, and the latest trained model travels with
its card and metrics. project.json carries the name and the class list (so empty classes
survive the trip).

It is written with zipfile straight into the binary file the caller hands over, image by
image: an export of a few GB never sits in memory. Images are stored, not deflated (JPEG and
PNG are compressed already). Importing treats the zip as untrusted, with the same rules as
any zip import (ingest.py); the model lands in runs/imported/ once imgrec's own reader
accepts it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import stat
import time
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

from imgrec.bundle.run_folder import MODEL_FILE, RunFiles
from imgrec.data.dataset import read_csv_rows
from imgrec.errors import ImgrecError
from imgrec.studio import ingest
from imgrec.studio.errors import StudioError
from imgrec.studio.names import check_class_name, check_name, name_order, shown

PROJECT_FILE = "project.json"
LABELS_FILE = ingest.LABELS_FILE
SPLIT_FILE = "split.csv"
SPLIT_COLUMNS = ["path", "label", "split"]
IMPORTED_RUN = "imported"
MAX_MODEL_BYTES = 2 * 1024**3  # an ensemble of three backbones is well under 100 MB
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_EPOCH_1980 = 315_532_800 + 86_400  # zip dates start in 1980


def _run_files(folder: Path) -> dict[str, Path]:
    """What travels from a run: the model, its card and its metrics (by file name)."""
    files = RunFiles(folder)
    paths = (files.model, files.card_markdown, files.card_html, files.metrics)
    return {p.name: p for p in paths}


# -- export ---------------------------------------------------------------------------------------


def export_project(project: Any, out: BinaryIO) -> None:
    """Write `project` (a studio Project) as a zip into `out`, streamed."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        classes = sorted(project.class_names(), key=name_order)
        rows = []
        for cls in classes:
            for name in project.image_names(cls):
                arcname = f"data/{cls}/{name}"
                if _write_file(zf, project.data / cls / name, arcname, zipfile.ZIP_STORED):
                    rows.append([arcname, cls])
        zf.writestr(LABELS_FILE, _csv_text(["path", "label"], rows))
        split = latest_with(project.runs, SPLIT_FILE)
        split_rows = _split_rows(project, split) if split else []
        if split_rows:
            zf.writestr(SPLIT_FILE, _csv_text(SPLIT_COLUMNS, split_rows))
        model_run = latest_with(project.runs, MODEL_FILE)
        for name, path in _run_files(model_run).items() if model_run else ():
            _write_file(zf, path, name, zipfile.ZIP_DEFLATED)
        meta = {"name": project.name, "created": project.created, "version": project.version}
        meta["classes"] = classes
        zf.writestr(PROJECT_FILE, json.dumps(meta, ensure_ascii=False, indent=2))


def _write_file(zf: zipfile.ZipFile, path: Path, arcname: str, compression: int) -> bool:
    """Copy one regular file into the zip in chunks (never through a symbolic link); False
    when it is gone (another tab moved it during the export) or not a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as src:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return False
        info = zipfile.ZipInfo(arcname, time.localtime(max(st.st_mtime, _EPOCH_1980))[:6])
        info.compress_type = compression
        info.external_attr = (stat.S_IFREG | 0o644) << 16
        info.file_size = st.st_size
        with zf.open(info, "w", force_zip64=st.st_size > 2**31) as dst:
            shutil.copyfileobj(src, dst, ingest.CHUNK)
    return True


def _csv_text(header: list[str], rows: list[list[str]]) -> str:
    """Rows as CSV text. Labels are written as they are: labels.csv is a dataset file that
    imgrec reads back, not a report for a spreadsheet."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def latest_with(runs: Path, filename: str) -> Path | None:
    """The run folder whose `filename` (a regular file) was written last, or None."""
    best: tuple[int, Path] | None = None
    try:
        with os.scandir(runs) as entries:
            folders = [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError:
        return None
    for folder in folders:
        try:
            st = os.lstat(folder / filename)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and (best is None or st.st_mtime_ns > best[0]):
            best = (st.st_mtime_ns, folder)
    return best[1] if best else None


def _split_rows(project: Any, run: Path) -> list[list[str]]:
    """A run's split.csv with its paths made relative to the zip's root (data/<class>/<file>);
    rows whose file is no longer in the project are left out."""
    try:
        rows = read_csv_rows(run / SPLIT_FILE, "split file")
    except ImgrecError:
        return []
    out = []
    for path, label, split in _split_table(rows) or []:
        rel = _in_data(project, run, path)
        if rel:
            out.append([rel, label, split])
    return out


def _split_table(rows: list[list[str]]) -> list[tuple[str, ...]] | None:
    """(path, label, split) of every complete row of a split file, or None when it lacks one
    of those columns."""
    header = [h.strip().lower() for h in rows[0]] if rows else []
    if not set(SPLIT_COLUMNS) <= set(header):
        return None
    cols = [header.index(c) for c in SPLIT_COLUMNS]
    return [tuple(row[i].strip() for i in cols) for row in rows[1:] if len(row) >= len(header)]


def _in_data(project: Any, run: Path, path: str) -> str | None:
    """'data/<class>/<file>' for a split file's path (relative to the split file, or in older
    files to the data folder), if that file is in the project."""
    folder = os.path.abspath(project.folder)
    for base in (run, project.data):
        full = os.path.abspath(os.path.join(base, path))
        rel = os.path.relpath(full, folder)
        if rel.startswith("data" + os.sep) and os.path.isfile(full):
            return Path(rel).as_posix()
    return None


# -- import ---------------------------------------------------------------------------------------


def import_project(studio: Any, zip_path: Path, name: str | None = None) -> Any:
    """A new project (a studio Project) from a project zip; the name from its project.json
    (or `name`), made unique. A zip that is not a project zip is refused with a sentence."""
    rejected: list[dict] = []
    with ingest.open_zip(zip_path) as zf:
        entries = ingest.zip_files(
            zf.infolist(), lambda f, e: rejected.append(ingest.rejection(f, e))
        )
        if PROJECT_FILE not in entries or LABELS_FILE not in entries:
            raise StudioError(
                f"This zip is not an imgrec studio project (it has no {PROJECT_FILE} and "
                f"{LABELS_FILE}); to add a zip of photos, open a project and import it there.",
                422,
            )
        meta = _read_meta(zf, entries[PROJECT_FILE][1])
        title = _project_name(name, meta, Path(zip_path))
        project = studio.create_project(studio.free_name(title))
        try:
            _fill(project, zf, entries, meta, rejected)
        except BaseException:
            studio.discard(project)
            raise
    return project


def _fill(project: Any, zf: zipfile.ZipFile, entries: dict, meta: dict, rejected: list) -> None:
    """Classes, images and the model of a project zip into the new, empty `project`."""
    batch = project.new_batch()
    batch.rejected.extend(rejected)
    for cls in meta.get("classes") or []:
        try:
            clean = check_class_name(cls)
        except StudioError:
            continue  # its images are reported one by one
        with project.lock:
            if not os.path.lexists(project.data / clean):
                os.mkdir(project.data / clean)
                batch.created.append(clean)
    stored = ingest.import_by_labels(batch, zf, entries)
    note = _import_run(project, zf, entries, stored)
    summary = f"Imported {len(batch.added)} images from the project zip{note}"
    project.record_import(batch, "import", summary)


def _read_meta(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> dict:
    try:
        meta = json.loads(ingest.read_member(zf, info, 1024 * 1024).decode("utf-8"))
    except (ingest.Rejected, ValueError):
        meta = None
    if not isinstance(meta, dict):
        raise StudioError(f"The zip's {PROJECT_FILE} is damaged; export the project again.")
    return meta


def _project_name(name: str | None, meta: dict, zip_path: Path) -> str:
    """The name asked for, else the zip's own, else the zip file's name (checked)."""
    if name is not None:
        return check_name(name, "project name")
    for candidate in (meta.get("name"), zip_path.stem, "Imported project"):
        try:
            return check_name(candidate, "project name")
        except StudioError:
            continue
    return "Imported project"


def _import_run(project: Any, zf: zipfile.ZipFile, entries: dict, stored: dict) -> str:
    """The zip's model, card and metrics (and its split, re-pointed at the stored images)
    into runs/imported/; a few words for the import's summary."""
    wanted = [n for n in _run_files(Path(".")) if n in entries]
    if MODEL_FILE not in wanted:
        return ""
    folder = project.runs / IMPORTED_RUN
    folder.mkdir(parents=True, exist_ok=True)
    try:
        for filename in wanted:
            _extract(zf, entries[filename][1], folder / filename, project.incoming)
        _check_model(folder / MODEL_FILE)
    except StudioError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        return f" (the model was left out: {exc.message})"
    if SPLIT_FILE in entries:
        _write_split(zf, entries[SPLIT_FILE][1], folder, stored)
    return " with its model"


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, staging: Path) -> None:
    """One zip entry to `target`, through a temporary file and os.replace, size-checked."""
    try:
        with ingest.staged(staging, "import-") as (tmp, out), zf.open(info) as src:
            ingest.copy_limited(src, out, info.file_size, MAX_MODEL_BYTES)
            out.close()
            os.replace(tmp, target)
    except ingest.Rejected as exc:
        raise StudioError(f"{shown(info.filename)} is {exc}") from None


def _check_model(path: Path) -> None:
    """imgrec's own model-file reader must accept it (header and metadata only: fast)."""
    from imgrec.bundle.format import read_metadata  # imports torch: only when a model comes

    try:
        read_metadata(path)
    except ImgrecError as exc:
        raise StudioError(f"it is not a usable imgrec model ({exc})") from None


def _write_split(zf: zipfile.ZipFile, info: zipfile.ZipInfo, folder: Path, stored: dict) -> None:
    """split.csv for runs/imported/: the zip's rows for the images that were imported, their
    paths relative to the run folder (as every split file's are)."""
    try:
        rows = ingest.read_zip_csv(zf, info)
    except StudioError:
        return
    table = _split_table(rows)
    if table is None:
        return
    out = [
        [f"../../data/{stored[path]}", label, split]
        for path, label, split in table
        if path in stored
    ]
    (folder / SPLIT_FILE).write_text(_csv_text(SPLIT_COLUMNS, out), encoding="utf-8")
