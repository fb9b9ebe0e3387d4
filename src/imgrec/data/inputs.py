"""Expand what a user passes to `predict` (files, folders, glob patterns) into image paths.

Nothing a user names is dropped here: a folder entry with an image extension that is not a
plain file (a dangling or looping symbolic link, a named pipe) is listed like any image, and
decoding (data/decode.py) turns it into a skipped row with its reason. Folders are walked
without ever opening a file, following linked folders but entering each real folder once, so
a link back to a parent cannot make the walk endless.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from imgrec.data.decode import IMAGE_EXTENSIONS
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
