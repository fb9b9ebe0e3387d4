"""Expand what a user passes to `predict` (files, folders, glob patterns) into image paths."""

from __future__ import annotations

import glob
from collections.abc import Iterable
from pathlib import Path

from imgrec.data.decode import IMAGE_EXTENSIONS
from imgrec.errors import ImgrecError


def expand_inputs(items: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders searched recursively for images, globs expanded; order kept.

    A path that matches nothing is an error (a typo should not silently predict nothing);
    a named file with an odd extension is kept so that its decoding error is reported.
    """
    paths: list[Path] = []
    seen: set[Path] = set()
    for item in items:
        text = str(item)
        path = Path(text).expanduser()
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() in IMAGE_EXTENSIONS
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.exists():
            found = [path]
        elif glob.has_magic(text):
            found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not found:
                raise ImgrecError(f"no files match the pattern '{text}'.")
        else:
            raise ImgrecError(f"no such file or folder: {text}")
        for p in found:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                paths.append(p)
    if not paths:
        raise ImgrecError("no images found in the given inputs.")
    return paths
