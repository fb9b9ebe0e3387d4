"""Expand what a user passes to `predict` (files, folders, glob patterns) into image paths.

Nothing a user names is dropped here: a folder entry with an image extension that is not a
plain file (a dangling or looping symbolic link, a named pipe) is listed like any image, and
decoding (data/decode.py) turns it into a skipped row with its reason. Folders are walked
without ever opening a file, following linked folders but entering each real folder once, so
a link back to a parent cannot make the walk endless.
"""

from __future__ import annotations

import csv
import glob
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from imgrec.data.decode import IMAGE_EXTENSIONS
from imgrec.data.remote import is_url, list_images, read_bytes, url_text
from imgrec.errors import ImgrecError


def expand_inputs(items: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders searched recursively for images, globs expanded; order kept.

    A path that matches nothing is an error (a typo should not silently predict nothing);
    a named file with an odd extension is kept so that its decoding error is reported.
    """
    paths: list[Path] = []
    seen: set[str] = set()
    for item in items:
        for p in _expand(str(item)):
            key = os.path.realpath(p)  # never raises, unlike Path.resolve() on a loop
            if key not in seen:
                seen.add(key)
                paths.append(p)
    if not paths:
        raise ImgrecError("no images found in the given inputs.")
    return paths


def expand_sources(items: Iterable[str | Path]) -> list[str]:
    """What a cluster job reads: `expand_inputs` for local files, folders and globs, plus
    object-storage prefixes (every image below, any depth) and CSVs with a `path` column
    (paths relative to the CSV's folder, or URLs), local or in a bucket. Each source once, in
    order; sources stay strings, since a URL is not a local path."""
    found: dict[str, None] = {}
    for item in items:
        text = url_text(item) if is_url(item) else str(item)
        if is_url(text):
            found.update(dict.fromkeys(list_images(text)))
        elif text.lower().endswith(".csv") and Path(text).is_file():
            found.update(dict.fromkeys(_csv_paths(Path(text))))
        else:
            found.update(dict.fromkeys(str(p) for p in expand_inputs([text])))
    if not found:
        raise ImgrecError("no images found in the given inputs.")
    return list(found)


def absolute_sources(sources: Iterable[str]) -> list[str]:
    """Local paths made absolute (URLs as they are): what a cluster's workers read, whatever
    folder they run in. On several machines the files must be at the same place on each
    (a shared filesystem), or in object storage."""
    return [s if is_url(s) else os.path.abspath(s) for s in sources]


def read_source(source: str | Path) -> Path | bytes:
    """What the decoder opens for `source`: its bytes for a URL (UnreadableImage when it is
    missing or too large), else the local path."""
    return read_bytes(url_text(source)) if is_url(source) else Path(source)


def _csv_paths(csv_path: Path) -> list[str]:
    """The `path` column of a local CSV: relative paths from the CSV's folder, or URLs."""
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ImgrecError(f"cannot read the CSV file {csv_path} ({exc}).") from None
    header = [h.strip().lower() for h in rows[0]] if rows else []
    if "path" not in header:
        raise ImgrecError(f"the CSV file {csv_path} needs a header with a path column.")
    column = header.index("path")
    cells = [row[column].strip() for row in rows[1:] if len(row) > column and row[column].strip()]
    return [c if is_url(c) else str(_beside(csv_path, c)) for c in cells]


def _beside(csv_path: Path, cell: str) -> Path:
    path = Path(cell).expanduser()
    return path if path.is_absolute() else csv_path.parent / path


def _expand(text: str) -> list[Path]:
    """The paths one command-line item stands for."""
    path = Path(text).expanduser()
    if path.is_dir():
        return sorted(_walk(path))
    if os.path.lexists(path):  # a file, or an entry decoding will name (link, pipe)
        return [path]
    if glob.has_magic(text):
        found = sorted(Path(p) for p in glob.glob(text, recursive=True) if not os.path.isdir(p))
        if not found:
            raise ImgrecError(f"no files match the pattern '{text}'.")
        return found
    raise ImgrecError(f"no such file or folder: {text}")


def _walk(root: Path) -> Iterator[Path]:
    """Every non-hidden entry with an image extension below `root` that is not a folder,
    following linked folders once each (by device and inode)."""
    visited: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in visited:  # a loop, or a second link to one folder
            dirnames[:] = []
            continue
        visited.add((st.st_dev, st.st_ino))
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        here = Path(dirpath)
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                yield here / name
