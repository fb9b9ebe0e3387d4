"""Thumbnails for the page's image grid, made on first request and cached on disk.

A class of 5,000 photos shows as 5,000 small JPEGs, not 5,000 full-size downloads. Each
thumbnail is keyed by a hash of the image's path in the project, its size and its mtime_ns,
so a replaced file gets a new thumbnail and a moved one is simply made again.

Decoding goes through imgrec's own `open_image` (the pixels training sees: EXIF orientation
applied, transparency on white, bombs and truncated files refused), with a JPEG drafted at a
reduced DCT scale so a 24-megapixel photo decodes in a fraction of the time and memory. One
image is decoded at a time in the whole process: a page asking for 100 thumbnails at once
must not hold 100 decoded photos.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path

from PIL import Image

from imgrec.data.decode import UnreadableImage, open_image
from imgrec.studio.errors import StudioError
from imgrec.studio.names import shown

THUMB_SIZE = 192  # pixels, the longest side
QUALITY = 80
_decode_lock = threading.Lock()


def thumb_path(cache: Path, key: str, source: Path, size: int = THUMB_SIZE) -> Path:
    """Where the thumbnail of `source` (called `key` in its project) is cached."""
    st = os.stat(source, follow_symlinks=False)
    text = f"{key}\0{st.st_size}\0{st.st_mtime_ns}\0{size}"
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return Path(cache) / digest[:2] / f"{digest}.jpg"


def thumbnail(source: Path, cache: Path, key: str, size: int = THUMB_SIZE) -> Path:
    """The cached JPEG thumbnail of `source`, made now if missing; 422 StudioError when the
    file cannot be decoded."""
    target = thumb_path(cache, key, source, size)
    if target.is_file():
        return target
    with _decode_lock:
        if target.is_file():  # another request made it while this one waited
            return target
        try:
            im = open_image(source, draft=size)
        except UnreadableImage as exc:
            raise StudioError(
                f"{shown(key)} cannot be shown: {exc}; delete it or replace it with a readable "
                "copy.",
                422,
            ) from None
        im.thumbnail((size, size), Image.Resampling.LANCZOS)
        _save_atomic(im, target)
    return target


def _save_atomic(im: Image.Image, target: Path) -> None:
    """Write the JPEG to a temporary file beside `target` and rename it into place, so a
    request never reads half a thumbnail."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".thumb-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            im.save(f, "JPEG", quality=QUALITY)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
