"""Image facts from one streaming pass over the files: read each once, hash it, decode a thumbnail.

Everything the audit knows about a single file comes from here: exact hash, perceptual
hash, header size/mode/format, transparency, EXIF rotation, grayscale, brightness and blur.
The bytes are read once and hashed; pixels are decoded from memory, JPEGs at a reduced DCT
scale, so a few thousand photos scan in seconds. Decoding follows `imgrec.data.decode`'s
rules (size limit, EXIF transpose, conversion to RGB), so a file is readable here exactly
when training can read it. No torch here: the scan must stay light enough to run first.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
from PIL import Image

from imgrec.data.dataset import Skipped
from imgrec.data.decode import (
    MAX_PIXELS,
    UnreadableImage,
    _exif_transposed,
    _open_checked,
    _open_source,
    _reason,
    _to_rgb,
)
from imgrec.data.threads import run_threaded

THUMB_SIZE = 128  # short side of the thumbnail every pixel statistic is measured on
_MAX_ASPECT = 8  # thumbnails of panoramas keep at most 8:1 so they stay small
# A colour-mode image counts as grayscale when its per-pixel channel spread (max - min of R, G,
# B) has mean <= 2 and exceeds 10 on <= 1 % of pixels. On the 3398 photos of shared/datasets the
# three black-and-white JPEGs and the GIF placeholder have mean <= 1.9 and no pixel over 10;
# the least colourful colour photos (a black cat, a red ant on gray carpet) have mean >= 3.2.
_GRAY_MEAN_SPREAD = 2.0
_GRAY_PIXEL_SPREAD = 10
_GRAY_PIXEL_SHARE = 0.01
_SINGLE_CHANNEL = frozenset({"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class ImageFacts:
    """What one readable file is, as the audit reports it.

    Pixel facts (phash, grayscale, brightness, blur) describe the image as training decodes it:
    EXIF-rotated, transparency on white, high bit depths range-scaled to 0..255.
    """

    path: Path
    sha256: str  # hex digest of the file bytes
    phash: int  # imagehash.phash (hash_size=8) of the thumbnail, as an unsigned 64-bit int
    width: int  # after EXIF orientation is applied
    height: int
    mode: str  # PIL mode as stored in the file ("RGB", "L", "P", "RGBA", "CMYK", "I;16")
    file_format: str  # PIL format ("JPEG", "PNG", "GIF", ...)
    n_bytes: int
    has_alpha: bool  # some pixel is not fully opaque (alpha channel or palette transparency)
    exif_rotated: bool  # EXIF orientation present and not 1
    grayscale: bool  # single-channel mode, or colour channels (nearly) identical
    brightness: float  # mean luminance 0..255
    blur: float  # Laplacian variance of the thumbnail; low = blurry, comparable across images


def scan_images(
    paths: Sequence[Path],
    workers: int | None = None,
    progress: bool = False,
) -> tuple[list[ImageFacts | None], list[Skipped]]:
    """facts[i] for paths[i] (None where unreadable), plus the unreadable files with reasons.

    Never raises for a bad file; Ctrl-C cancels the files not yet started.
    """
    paths = [Path(p) for p in paths]
    facts: list[ImageFacts | None] = [None] * len(paths)
    failed: dict[int, str] = {}
    runs = run_threaded(
        lambda i: scan_image(paths[i]), len(paths), workers, progress, "Scanning images"
    )
    for i, result in runs:
        if isinstance(result, UnreadableImage):
            failed[i] = str(result)
        else:
            facts[i] = result
    return facts, [Skipped(paths[i], failed[i]) for i in sorted(failed)]


def scan_image(path: Path) -> ImageFacts:
    """Facts about one file, or UnreadableImage with the reason `open_image` would give."""
    path = Path(path)
    try:
        with _open_source(path) as fp:
            data = fp.read()
        if not data:  # emptied between stat and read
            raise UnreadableImage("zero bytes")
        return _decode(path, data, THUMB_SIZE, THUMB_SIZE)[1]
    except UnreadableImage:
        raise
    except Exception as exc:  # PIL raises many types for corrupt data; callers need one.
        raise UnreadableImage(_reason(exc)) from exc


def decode_with_facts(
    path: Path, short_side: int, data: bytes | None = None
) -> tuple[Image.Image, ImageFacts]:
    """The RGB image as `open_image(path, draft=short_side)` decodes it, and its facts, from
    one read and one decode: how training decodes its images and audits them on the way.

    `data`, when given, are the file's bytes read elsewhere (object storage, the shard writer):
    they are decoded instead of reading `path`, which only names them in the facts."""
    path = Path(path)
    try:
        if data is None:
            with _open_source(path) as fp:
                data = fp.read()
        if not data:
            raise UnreadableImage("zero bytes")
        return _decode(path, data, short_side, THUMB_SIZE)
    except UnreadableImage:
        raise
    except Exception as exc:
        raise UnreadableImage(_reason(exc)) from exc


def facts_to_dict(facts: ImageFacts) -> dict[str, Any]:
    """JSON-ready facts (the path as a posix string), as the disk shards store them."""
    return {**dataclasses.asdict(facts), "path": facts.path.as_posix()}


def facts_from_dict(d: dict[str, Any], path: Path | None = None) -> ImageFacts:
    """The inverse of `facts_to_dict`; `path` replaces the stored one (a shard stores the
    path relative to its dataset, the reader knows where that dataset is)."""
    fields = {f.name for f in dataclasses.fields(ImageFacts)}
    values = {k: v for k, v in d.items() if k in fields}
    return ImageFacts(**{**values, "path": Path(path if path is not None else d["path"])})


def _decode(path: Path, data: bytes, draft: int, thumb_size: int) -> tuple[Image.Image, ImageFacts]:
    """Header facts at full size; pixel facts from a thumbnail of the image decoded at a
    reduced JPEG scale no smaller than `draft`."""
    im = _open_checked(io.BytesIO(data), MAX_PIXELS)
    (width, height), mode, file_format = im.size, im.mode, im.format or "unknown"
    orientation = _orientation(im)
    if im.format == "JPEG":
        im.draft(None, (draft, draft))  # DCT scaling: never below `draft`
    im.load()
    has_alpha = _has_alpha(im)
    upright = im if orientation in (None, 1) else _exif_transposed(im)
    if _swapped(im.size, upright.size):
        width, height = height, width
    rgb = _to_rgb(upright)
    thumb = _thumbnail(rgb, thumb_size)
    luma_image = thumb.convert("L")
    luma = np.asarray(luma_image, dtype=np.float32)
    return rgb, ImageFacts(
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        phash=_phash(luma_image),
        width=width,
        height=height,
        mode=mode,
        file_format=file_format,
        n_bytes=len(data),
        has_alpha=has_alpha,
        exif_rotated=orientation not in (None, 1),
        grayscale=mode in _SINGLE_CHANNEL or _looks_gray(thumb),
        brightness=float(luma.mean()),
        blur=_laplacian_variance(luma),
    )


def _orientation(im: Image.Image) -> int | None:
    """The EXIF orientation value, or None when absent or the EXIF block is unreadable."""
    try:
        value = im.getexif().get(_ORIENTATION_TAG)
    except Exception:
        return None
    return value if isinstance(value, int) else None


def _swapped(before: tuple[int, int], after: tuple[int, int]) -> bool:
    """True when the transpose actually turned the image by 90° (width and height traded)."""
    return before != after and before == (after[1], after[0])


def _has_alpha(im: Image.Image) -> bool:
    """An alpha channel or transparency key that makes at least one pixel non-opaque.

    Many PNGs carry an alpha channel that is 255 everywhere; those look the same after
    compositing, so only real transparency counts.
    """
    if im.mode not in _ALPHA_MODES and "transparency" not in im.info:
        return False
    try:
        rgba = im if im.mode == "RGBA" else im.convert("RGBA")
    except ValueError:  # modes such as I;16 with a transparency key cannot convert
        return False
    low, _ = rgba.getchannel("A").getextrema()
    return low < 255


def _thumbnail(rgb: Image.Image, short_side: int = THUMB_SIZE) -> Image.Image:
    """RGB at a fixed short side whatever the source size, so statistics compare."""
    w, h = rgb.size
    scale = short_side / min(w, h)
    size = (
        max(1, min(round(w * scale), short_side * _MAX_ASPECT)),
        max(1, min(round(h * scale), short_side * _MAX_ASPECT)),
    )
    factor = min(w // size[0], h // size[1]) // 2
    if factor >= 2:  # box-reduce big images first: much cheaper than one large resample
        rgb = rgb.reduce(factor)
    return rgb.resize(size, Image.Resampling.BILINEAR)


def _phash(luma: Image.Image) -> int:
    """imagehash.phash as an unsigned 64-bit int: the same number as int(str(hash), 16)."""
    bits = imagehash.phash(luma, hash_size=8).hash.ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def _looks_gray(rgb: Image.Image) -> bool:
    """Colour-mode pixels whose channels differ only by compression noise."""
    a = np.asarray(rgb)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]  # slices: numpy is slow reducing a 3-wide axis
    spread = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)
    return bool(
        spread.mean() <= _GRAY_MEAN_SPREAD
        and np.count_nonzero(spread > _GRAY_PIXEL_SPREAD) <= _GRAY_PIXEL_SHARE * spread.size
    )


def _laplacian_variance(luma: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian: edges and texture raise it, blur lowers it."""
    if luma.shape[0] < 3 or luma.shape[1] < 3:
        return 0.0
    lap = luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4 * luma[1:-1, 1:-1]
    return float(lap.var())
