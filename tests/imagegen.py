"""Tiny generated images of every kind the data layer must survive, for any test to import.

`write_kind(folder, kind)` writes one file (or directory) and returns its path; GOOD_KINDS
decode, BAD_KINDS map to the exact UnreadableImage reason they must produce.
"""

from __future__ import annotations

import csv
import io
import random
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (48, 32)  # (width, height): non-square so rotations are checkable
RED = (220, 20, 20)
CLASS_COLOURS = [
    (220, 40, 40),
    (40, 80, 220),
    (40, 180, 60),
    (230, 200, 40),
    (160, 60, 200),
    (40, 200, 200),
    (240, 130, 30),
    (120, 120, 120),
]


def _rgb(size: tuple[int, int] = SIZE, colour: tuple[int, int, int] = RED) -> Image.Image:
    """A solid image with a black top-left block, so orientation is checkable."""
    im = Image.new("RGB", size, colour)
    im.paste((0, 0, 0), (0, 0, 8, 8))
    return im


def write_rgb(path: Path, size: tuple[int, int] = SIZE, colour=RED, **save_kw) -> Path:
    """An ordinary RGB image; the format follows the extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _rgb(size, colour).save(path, **save_kw)
    return path


def _gray(path: Path) -> None:
    Image.new("L", SIZE, 90).save(path)


def _palette_transparent(path: Path) -> None:
    """Palette PNG: index 0 fully transparent (must become white), a red block at index 1."""
    im = Image.new("P", SIZE, 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0, 0, 0] * 254)
    im.paste(1, (0, 0, 10, 10))
    im.save(path, transparency=0)


def _rgba(path: Path) -> None:
    """Transparent everywhere except an opaque red block at the top-left corner."""
    im = Image.new("RGBA", SIZE, (0, 0, 0, 0))
    im.paste((255, 0, 0, 255), (0, 0, 10, 10))
    im.save(path)


def _cmyk(path: Path) -> None:
    Image.new("CMYK", SIZE, (0, 255, 255, 0)).save(path, quality=95)  # pure red in CMYK


def _png16(path: Path) -> None:
    """A dim 16-bit scan (values 1000..3000 of 65535) that clipping would turn black."""
    a = np.linspace(1000, 3000, SIZE[0] * SIZE[1]).reshape(SIZE[1], SIZE[0]).astype(np.uint16)
    Image.fromarray(a).save(path)


def _float_tiff(path: Path) -> None:
    a = np.linspace(0.0, 0.5, SIZE[0] * SIZE[1], dtype=np.float32).reshape(SIZE[1], SIZE[0])
    Image.fromarray(a).save(path)


def _exif_rotated(path: Path) -> None:
    """Stored 48x32 with orientation 6 (rotate 90° clockwise): displays as 32x48."""
    exif = Image.Exif()
    exif[0x0112] = 6
    _rgb().save(path, exif=exif, quality=95)


def _animated_gif(path: Path) -> None:
    """Two frames: red first, blue second; decoding must give the red one."""
    frames = [Image.new("RGB", SIZE, RED), Image.new("RGB", SIZE, (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def _truncated_jpeg(path: Path) -> None:
    """A noisy JPEG cut short: the header parses, the pixels do not."""
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise, "RGB").save(buf, "JPEG", quality=95)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) * 2 // 3])


def _text_as_png(path: Path) -> None:
    path.write_text("this is a shopping list, not a picture\n", encoding="utf-8")


def _directory(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def png_bomb_bytes(width: int = 20000, height: int = 20000) -> bytes:
    """A small valid PNG whose header declares width x height (refused before decoding)."""
    buf = io.BytesIO()
    Image.new("1", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    # IHDR chunk: length(4) type(4) at 8; width, height at 16..24; CRC over type+data at 29.
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _png_bomb(path: Path) -> None:
    path.write_bytes(png_bomb_bytes())


_WRITERS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "rgb_jpeg": ("rgb.jpg", lambda p: write_rgb(p, quality=95)),
    "rgb_png": ("rgb.png", write_rgb),
    "rgb_bmp": ("rgb.bmp", write_rgb),
    "rgb_webp": ("rgb.webp", lambda p: write_rgb(p, lossless=True)),
    "rgb_tiff": ("rgb.tiff", write_rgb),
    "gray_l": ("gray.png", _gray),
    "palette_transparent": ("palette.png", _palette_transparent),
    "rgba": ("rgba.png", _rgba),
    "cmyk_jpeg": ("cmyk.jpg", _cmyk),
    "png16": ("deep16.png", _png16),
    "float_tiff": ("float.tif", _float_tiff),
    "exif_rotated": ("rotated.jpg", _exif_rotated),
    "animated_gif": ("animated.gif", _animated_gif),
    "upper_jpg": ("UPPER.JPG", lambda p: write_rgb(p, quality=95)),
    "unicode_name": ("chat noir é.jpg", lambda p: write_rgb(p, quality=95)),
    "zero_bytes": ("empty.jpg", _zero_bytes),
    "truncated_jpeg": ("truncated.jpg", _truncated_jpeg),
    "text_as_png": ("notes.png", _text_as_png),
    "dir_named_jpg": ("folder.jpg", _directory),
    "png_bomb": ("bomb.png", _png_bomb),
}

GOOD_KINDS = (
    "rgb_jpeg",
    "rgb_png",
    "rgb_bmp",
    "rgb_webp",
    "rgb_tiff",
    "gray_l",
    "palette_transparent",
    "rgba",
    "cmyk_jpeg",
    "png16",
    "float_tiff",
    "exif_rotated",
    "animated_gif",
    "upper_jpg",
    "unicode_name",
)
# Reason from open_image; the truncated JPEG passes the header-only probe and fails on decode.
BAD_KINDS = {
    "zero_bytes": "zero bytes",
    "truncated_jpeg": "truncated image",
    "text_as_png": "not an image",
    "dir_named_jpg": "a directory, not a file",
    "png_bomb": "decompression bomb: 400000000 pixels",
}


def write_kind(folder: Path, kind: str) -> Path:
    """Write one sample of `kind` into `folder` and return its path."""
    name, writer = _WRITERS[kind]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    writer(path)
    return path


def write_all_kinds(folder: Path, kinds=None) -> dict[str, Path]:
    """Write every kind (or the given ones) into `folder`; returns kind -> path."""
    return {kind: write_kind(folder, kind) for kind in (kinds or _WRITERS)}


def make_class_folder(
    root: Path,
    counts: dict[str, int],
    size: tuple[int, int] = SIZE,
    ext: str = ".png",
    seed: int = 0,
) -> Path:
    """root/<class>/<class>_NNN<ext>: one distinct colour per class, unique noise per image."""
    root.mkdir(parents=True, exist_ok=True)
    for k, (label, n) in enumerate(counts.items()):
        base = np.array(CLASS_COLOURS[k % len(CLASS_COLOURS)], dtype=np.int16)
        for i in range(n):
            rng = np.random.default_rng([seed, k, i])
            noise = rng.integers(-25, 26, size=(size[1], size[0], 3), dtype=np.int16)
            pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
            path = root / label / f"{label}_{i:03d}{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels, "RGB").save(path)
    return root


def make_split_folders(
    root: Path, splits: dict[str, dict[str, int]], size: tuple[int, int] = SIZE
) -> Path:
    """root/<split>/<class>/...; e.g. {"train": {"a": 3, "b": 3}, "valid": {"a": 1, "b": 1}}."""
    for n, (split, counts) in enumerate(splits.items()):
        make_class_folder(root / split, counts, size=size, seed=n + 1)
    return root


def write_csv(path: Path, rows: list[tuple], header: tuple[str, ...] = ("path", "label")) -> Path:
    """A dataset CSV with the given header and rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def shuffled(items: list, seed: int = 0) -> list:
    """A shuffled copy, for order-independence checks."""
    out = list(items)
    random.Random(seed).shuffle(out)
    return out
