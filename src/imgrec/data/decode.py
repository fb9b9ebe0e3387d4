"""Safe image decoding: every odd file becomes either a plain RGB image or one short reason.

Photos in the wild are rotated by EXIF, transparent, CMYK, 16-bit, animated, truncated or
not images at all. Training and serving must see the same pixels for the same file, so both
go through `open_image`.

Folders also hold things that are not files: named pipes (opening one for reading blocks until
a writer comes, so they are never opened), sockets, devices, dangling or looping symbolic links.
Each becomes an UnreadableImage with a reason a person recognises.

Pillow reports damaged but usable files (a corrupt EXIF block, a short palette) with Python
warnings, which would reach stderr without the file's name, once per process. Decoding runs
in threads and `warnings.catch_warnings` swaps process-wide state, so instead a warnings hook
installed once hands each warning to the collector of the thread that raised it, and the file's
notes are logged (logger `imgrec.data.decode`) as one line that starts with its name.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import re
import stat
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imgrec.errors import ImgrecError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)
# What Pillow may parse: the formats of IMAGE_EXTENSIONS (JPEG includes a phone camera's MPO).
# Not the dozens of others it knows, whose parsers see far less use (EPS even runs Ghostscript).
DECODE_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP")
MAX_PIXELS: int = 89_478_485  # PIL's default Image.MAX_IMAGE_PIXELS
# The longest side accepted (JPEG's own limit). Pillow keeps one pointer per row, so a 2 x 16.7
# million PNG costs 134 MB per copy before any pixel, and decoding with transparency makes five
# copies (1.3 GB from a file of a few kilobytes, found by make fuzz); no photo is this long.
MAX_SIDE: int = 65_535
MAX_REASON = 200  # characters: a reason is one CSV cell and one line on stderr

log = logging.getLogger(__name__)

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_HIGH_DEPTH_MODES = frozenset({"I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO that appears after the check: no wait
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOT_FILES = (
    (stat.S_ISDIR, "a directory, not a file"),
    (stat.S_ISFIFO, "a named pipe (FIFO), not a file"),
    (stat.S_ISSOCK, "a socket, not a file"),
    (stat.S_ISCHR, "a device, not a file"),
    (stat.S_ISBLK, "a device, not a file"),
)
# Pillow's warnings go to the thread's collector: "always", so the second file with the same
# damage is noted too (the default action shows a message once per process).
_PIL_WARNINGS = ("always", None, Warning, re.compile(r"PIL(\.|$)"), 0)
_local = threading.local()
_hook_lock = threading.Lock()
_shown_before = warnings.showwarning


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
        with pillow_notes(source), _open_source(source) as fp:
            im = _open_checked(fp, max_pixels)
            if draft and im.format == "JPEG":
                im.draft(None, (draft, draft))
            im.load()
            return _to_rgb(_exif_transposed(im))
    except UnreadableImage:
        raise
    except Exception as exc:  # PIL raises many types for corrupt data; callers need one.
        raise UnreadableImage(_reason(exc)) from exc


def check_image(source: str | Path | bytes, max_pixels: int = MAX_PIXELS) -> str:
    """The format of `source` once it is known to be a whole image imgrec reads; else
    UnreadableImage with the reason `open_image` would give.

    For JPEG and PNG (nearly every photo) this reads the header (format, size within the
    limits) and checks that the compressed data ends: a JPEG's end-of-image marker after its
    main scan, a PNG's IEND chunk after its image data. That catches the damage uploads and
    copies really suffer (a cut-off file, a text file named .jpg, a bomb) without decoding:
    0.005 ms for a cats_and_dogs photo in memory, against 0.30 ms to decode it at the
    smallest DCT scale and 0.035 ms for Pillow to parse its header, so adding 1,000 photos to
    a project costs little more than copying them. Bytes damaged inside the compressed data
    pass; decoding finds them (thumbnails, audit, training each name such a file). Other
    formats, and JPEGs with a frame Pillow may not decode (12-bit, lossless), are decoded or
    parsed by Pillow.
    """
    try:
        data = source if isinstance(source, bytes) else _read_all(source)  # read once
        if data[:3] == b"\xff\xd8\xff":
            size, ends = _jpeg_walk(data)
            if size is not None:
                if not ends:
                    raise UnreadableImage("truncated image")
                _check_size(size, max_pixels)
                return "JPEG"
        with pillow_notes(source), _open_source(data) as fp:
            im = _open_checked(fp, max_pixels)
            fmt = im.format or ""
            if fmt in ("JPEG", "MPO", "PNG"):
                if not (_jpeg_walk(data)[1] if fmt != "PNG" else _png_ends(data)):
                    raise UnreadableImage("truncated image")
                return fmt
            im.load()
            return fmt
    except UnreadableImage:
        raise
    except Exception as exc:  # PIL raises many types for corrupt data; callers need one.
        raise UnreadableImage(_reason(exc)) from exc


def _read_all(source: str | Path) -> bytes:
    with _open_source(source) as fp:
        return fp.read()


# Frames whose 8-bit, 1/3/4-component images libjpeg decodes for Pillow: baseline, extended
# sequential, progressive.
_PLAIN_FRAMES = frozenset({0xC0, 0xC1, 0xC2})


def _jpeg_walk(data: bytes) -> tuple[tuple[int, int] | None, bool]:
    """((width, height) of a plain frame, or None) and whether an end-of-image marker
    follows the first scan's header. Markers are walked by their lengths up to the start of
    scan, so an EXIF thumbnail's own end marker (inside an APP1 segment) does not count;
    inside the scan, 0xFF 0xD9 can only be a marker (data bytes 0xFF are stuffed as 0xFF
    0x00). Bytes after the end marker (a phone's motion-photo video) are allowed, as
    decoders allow them."""
    i, n, size = 2, len(data), None
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None, False
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker == 0xDA:
            ends = data.rfind(b"\xff\xd9", i + 2 + length) != -1  # from the end: where it is
            return size, ends
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and i + 10 <= n:
            precision, components = data[i + 4], data[i + 9]
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            plain = marker in _PLAIN_FRAMES and precision == 8 and components in (1, 3, 4)
            size = (width, height) if plain and width and height else None
        i += 2 + length
    return None, False


def _png_ends(data: bytes) -> bool:
    """Whether an IEND chunk follows the first IDAT chunk."""
    idat = data.find(b"IDAT", 8)
    return idat != -1 and data.rfind(b"IEND", idat) != -1


def probe_image(path: Path, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """Read only the header of `path` and return (width, height); cheap enough for listing."""
    try:
        with pillow_notes(path), _open_source(Path(path)) as fp:
            return _open_checked(fp, max_pixels).size
    except UnreadableImage:
        raise
    except Exception as exc:
        raise UnreadableImage(_reason(exc)) from exc


@contextlib.contextmanager
def pillow_notes(source: str | Path | bytes | None, *, report: bool = True) -> Iterator[list[str]]:
    """Collect the warnings this thread raises meanwhile (Pillow's, about one file) instead of
    letting them reach stderr unnamed; on leaving, log them as one line naming `source`
    (unless `report` is False: a caller that only re-reads a file already reported)."""
    _install_hook()
    outer = getattr(_local, "notes", None)
    notes: list[str] = []
    _local.notes = notes
    try:
        yield notes
    finally:
        _local.notes = outer
        if notes and report:
            name = "image bytes" if isinstance(source, bytes | bytearray | memoryview) else source
            log.warning("%s: %s", name, "; ".join(dict.fromkeys(notes)))


def _install_hook() -> None:
    """Route warnings through `_collect` and let Pillow's through every time. Checked on each
    call, not once: `warnings.catch_warnings` (pytest runs every test in one) restores both."""
    global _shown_before
    if warnings.showwarning is _collect and _PIL_WARNINGS in warnings.filters:
        return
    with _hook_lock:
        if warnings.showwarning is not _collect:
            _shown_before = warnings.showwarning
            warnings.showwarning = _collect
        if _PIL_WARNINGS not in warnings.filters:
            warnings.filterwarnings("always", category=Warning, module=r"PIL(\.|$)")


def _collect(message, category, filename, lineno, file=None, line=None) -> None:
    """The warnings hook: a note for the thread's collector, else shown as before. Pillow's
    decompression bomb warning is no note: `_open_checked` decides on the pixel count."""
    notes = getattr(_local, "notes", None)
    if notes is None:
        _shown_before(message, category, filename, lineno, file, line)
    elif not issubclass(category, Image.DecompressionBombWarning):
        notes.append(str(message))


def _open_source(source: str | Path | bytes) -> IO[bytes]:
    """Open a path or wrap bytes, turning file-system problems into short reasons."""
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise UnreadableImage("zero bytes")
        return io.BytesIO(bytes(source))
    path = Path(source)
    try:
        _check_regular(os.stat(path))  # devices and FIFOs are not even opened
        fd = os.open(path, os.O_RDONLY | _O_NONBLOCK | _O_CLOEXEC)
    except OSError as exc:
        raise UnreadableImage(_os_reason(path, exc)) from None
    except ValueError:  # a NUL character: no file system has such a name
        raise UnreadableImage("not a usable file name (it holds a NUL character)") from None
    try:
        _check_regular(os.fstat(fd))  # what was opened, should the entry have changed since
        if _O_NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def _check_regular(st: os.stat_result) -> None:
    """UnreadableImage unless `st` is a regular file with some bytes in it."""
    for test, reason in _NOT_FILES:
        if test(st.st_mode):
            raise UnreadableImage(reason)
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableImage("not a regular file")
    if st.st_size == 0:
        raise UnreadableImage("zero bytes")


def _os_reason(path: Path, exc: OSError) -> str:
    """A short reason for a file that could not be opened."""
    if exc.errno == errno.ELOOP:
        return "a symbolic link loop"
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        if os.path.islink(path):
            return "a broken symbolic link (its target does not exist)"
        return "file not found"
    return f"cannot read file: {exc.strerror or exc}"


def _open_checked(fp: IO[bytes], max_pixels: int) -> Image.Image:
    """Parse the header and refuse oversized images before any pixel is decoded (Pillow's own
    limit raises DecompressionBombError only at twice its size, and only warns below)."""
    im = Image.open(fp, formats=DECODE_FORMATS)
    _check_size(im.size, max_pixels)
    return im


def _check_size(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise UnreadableImage(f"decompression bomb: {width * height} pixels")
    if max(size) > MAX_SIDE:
        raise UnreadableImage(f"{width} x {height} pixels: a side over {MAX_SIDE} pixels")


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
    """Map the image's actual value range onto 0..255 so dim 16-bit scans stay visible.

    One float32 copy, scaled in place: an 89-megapixel 32-bit image (the most a header may
    claim) costs about 1 GB here, where float64 temporaries once cost over 3 GB (make fuzz
    found a damaged 33-megapixel file peaking at 1.2 GB). float32 holds every 16-bit value
    exactly, and 32-bit values to far finer than one step of 255.
    """
    a = np.array(im, dtype=np.float32)
    not_finite = np.isfinite(a)
    np.logical_not(not_finite, out=not_finite)
    a[not_finite] = np.nan
    del not_finite
    if np.isnan(a).all():
        return np.zeros(a.shape, dtype=np.uint8)
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if hi <= lo:  # flat image: keep its brightness relative to the type's nominal range
        nominal = 1.0 if im.mode == "F" and 0.0 <= lo <= 1.0 else 65535.0
        return np.full(a.shape, np.rint(np.clip(lo / nominal, 0.0, 1.0) * 255.0), np.uint8)
    np.subtract(a, np.float32(lo), out=a)
    np.multiply(a, np.float32(255.0 / (hi - lo)), out=a)
    np.nan_to_num(a, copy=False, nan=0.0)  # what was not finite shows as the darkest value
    np.rint(a, out=a)
    return a.astype(np.uint8)


def _reason(exc: BaseException) -> str:
    """A short, stable reason for a decode failure, for skip lists and error messages: one
    line of at most MAX_REASON characters, whatever the decoder said."""
    msg = " ".join(str(exc).split())
    if len(msg) > MAX_REASON - 20:
        msg = msg[: MAX_REASON - 23] + "..."
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
