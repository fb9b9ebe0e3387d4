"""Copies of logged images with every byte of metadata removed (`serve --store-images`).

Photos carry far more than pixels: EXIF with GPS coordinates, camera serial numbers and
timestamps, XMP, ICC profiles and comments. A copy kept for later labelling needs none of it,
so it is decoded (orientation applied, as the model saw it), its pixels alone copied into a
fresh image with no `info` at all, and encoded again: nothing of the original file survives
but the picture. Files are named by the sha256 of the uploaded bytes (one copy per distinct
image) and readable by the server's user only.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from imgrec.data.decode import open_image
from imgrec.errors import ImgrecError

_STORED_NAME = re.compile(r"^[0-9a-f]{64}\.(jpg|png)$")
JPEG_QUALITY = 95


class ImageStore:
    """A folder of metadata-free copies; the folder is created (owner-only) if missing."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).absolute()
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            probe = self.folder / f".imgrec-write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ImgrecError(
                f"cannot store images in {self.folder} ({exc.strerror or exc})."
            ) from None

    def save(self, source: bytes | Path, sha256: str) -> str:
        """Path of the stripped copy of `source` (written unless it already exists); raises
        UnreadableImage if it cannot be decoded, OSError if it cannot be written."""
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        ext = "jpg" if data[:3] == b"\xff\xd8\xff" else "png"
        target = self.folder / f"{sha256}.{ext}"
        if target.exists():
            return str(target)
        buffer = io.BytesIO()
        clean = strip_metadata(open_image(data))
        if ext == "jpg":
            clean.save(buffer, "JPEG", quality=JPEG_QUALITY)
        else:
            clean.save(buffer, "PNG")
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buffer.getvalue())
            os.replace(temporary, target)  # readers never see half a file
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return str(target)


def strip_metadata(image: Image.Image) -> Image.Image:
    """The pixels of `image` in a new image that has no EXIF, XMP, ICC profile or comment."""
    return Image.frombytes(image.mode, image.size, image.tobytes())


def remove_stored(paths: Iterable[str]) -> int:
    """Delete stored copies (only files named like one: a sha256 and .jpg/.png); returns how
    many were removed. Anything else a log row might point at is left alone."""
    removed = 0
    for path in paths:
        if not _STORED_NAME.match(Path(path).name):
            continue
        try:
            Path(path).unlink()
            removed += 1
        except OSError:  # already gone, or not ours to delete: the row is gone either way
            pass
    return removed
