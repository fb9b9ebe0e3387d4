"""Safe image decoding: every odd file becomes either a plain RGB image or one short reason.

Photos in the wild are rotated by EXIF, transparent, CMYK, 16-bit, animated, truncated or
not images at all. Training and serving must see the same pixels for the same file, so both
go through `open_image`.
"""

from __future__ import annotations

import io
import os
import re
import stat
import threading
import warnings
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imgrec.errors import ImgrecError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)
MAX_PIXELS: int = 89_478_485  # PIL's default Image.MAX_IMAGE_PIXELS

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_HIGH_DEPTH_MODES = frozenset({"I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
# warnings.catch_warnings mutates process-global state; serialise it across decode threads.
_WARNINGS_LOCK = threading.Lock()


class UnreadableImage(ImgrecError):
    """A file that cannot be used as an image; the message is a short reason ("zero bytes")."""


def open_image(
    source: str | Path | bytes, max_pixels: int = MAX_PIXELS, *, draft: int | None = None
) -> Image.Image:
    """Decode `source` fully into an RGB image, or raise UnreadableImage with a short reason.

    `draft` (a minimum short side in pixels) lets JPEGs decode at a reduced DCT scale when
    the result will be shrunk anyway; it never yields a short side below `draft`.
    """
    try:
        with _open_source(source) as fp:
            im = _open_checked(fp, max_pixels)
            if draft and im.format == "JPEG":
                im.draft(None, (draft, draft))
            im.load()
            return _to_rgb(_exif_transposed(im))
    except UnreadableImage:
        raise
    except Exception as exc:  # PIL raises many types for corrupt data; callers need one.
        raise UnreadableImage(_reason(exc)) from exc


def probe_image(path: Path, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """Read only the header of `path` and return (width, height); cheap enough for listing."""
    try:
        with _open_source(Path(path)) as fp:
            return _open_checked(fp, max_pixels).size
    except UnreadableImage:
        raise
    except Exception as exc:
        raise UnreadableImage(_reason(exc)) from exc


def _open_source(source: str | Path | bytes) -> IO[bytes]:
    """Open a path or wrap bytes, turning file-system problems into short reasons."""
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise UnreadableImage("zero bytes")
        return io.BytesIO(bytes(source))
    path = Path(source)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UnreadableImage("file not found") from None
    except OSError as exc:
        raise UnreadableImage(f"cannot read file: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UnreadableImage("a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableImage("not a regular file")
    if st.st_size == 0:
        raise UnreadableImage("zero bytes")
    try:
        return open(path, "rb")  # noqa: SIM115 - returned to a `with` in the caller
    except OSError as exc:
        raise UnreadableImage(f"cannot read file: {exc.strerror or exc}") from None


def _open_checked(fp: IO[bytes], max_pixels: int) -> Image.Image:
    """Parse the header and refuse oversized images before any pixel is decoded."""
    action = "error" if max_pixels <= (Image.MAX_IMAGE_PIXELS or max_pixels) else "ignore"
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter(action, Image.DecompressionBombWarning)
        im = Image.open(fp)
    pixels = im.size[0] * im.size[1]
    if pixels > max_pixels:
        raise UnreadableImage(f"decompression bomb: {pixels} pixels")
    return im


def _exif_transposed(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a corrupt EXIF block is ignored rather than fatal."""
    try:
        return ImageOps.exif_transpose(im)
    except Exception:
        return im.copy()


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any mode to RGB; transparency becomes white, high bit depths are range-scaled."""
    if im.mode == "RGB":
        return im
    if im.mode in _HIGH_DEPTH_MODES:
        return Image.fromarray(_scale_to_uint8(im), mode="L").convert("RGB")
    if im.mode in _ALPHA_MODES or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    try:
        return im.convert("RGB")
    except ValueError as exc:
        raise UnreadableImage(f"unsupported colour mode {im.mode}") from exc


def _scale_to_uint8(im: Image.Image) -> np.ndarray:
    """Map the image's actual value range onto 0..255 so dim 16-bit scans stay visible."""
    a = np.asarray(im, dtype=np.float64)
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros(a.shape, dtype=np.uint8)
    lo, hi = float(a[finite].min()), float(a[finite].max())
    if hi > lo:
        out = (np.where(finite, a, lo) - lo) * (255.0 / (hi - lo))
    else:  # flat image: keep its brightness relative to the type's nominal range
        nominal = 1.0 if im.mode == "F" and 0.0 <= lo <= 1.0 else 65535.0
        out = np.full(a.shape, np.clip(lo / nominal, 0.0, 1.0) * 255.0)
    return np.rint(out).astype(np.uint8)


def _reason(exc: BaseException) -> str:
    """A short, stable reason for a decode failure, for skip lists and error messages."""
    msg = str(exc)
    if isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
        match = re.search(r"\((\d+) pixels\)", msg)
        return f"decompression bomb: {match.group(1)} pixels" if match else "decompression bomb"
    if isinstance(exc, UnidentifiedImageError):
        return "not an image"
    lowered = msg.lower()
    if "truncated" in lowered or isinstance(exc, EOFError):
        return "truncated image"
    if "broken data stream" in lowered:
        return "corrupt image data"
    if isinstance(exc, MemoryError):
        return "too large to decode in memory"
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"cannot read file: {exc.strerror or os.strerror(exc.errno)}"
    return f"corrupt image: {msg}" if msg else f"corrupt image ({type(exc).__name__})"
