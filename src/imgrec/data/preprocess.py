"""What a model expects of its input, and pixels -> model input with PIL and numpy only.

Prediction needs no torch: `model_input` resizes, centre-crops and normalises an image with
PIL and numpy exactly as the training cache + evaluation transform do with torchvision
(data/transforms.py; tests/test_preprocess.py checks the two agree), so `imgrec predict` on a
cached ONNX graph starts without importing torch at all.

Both paths resize through `resize_short_side`, which first centre-crops images whose long side
is more than MAX_ASPECT times the short side: scaling the short side of a 20000 x 1 image to
256 pixels would otherwise ask for 5 million x 256 pixels (gigabytes) from 138 bytes of PNG.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imgrec.data.decode import open_image
from imgrec.errors import ImgrecError

# The longest side kept, in multiples of the short side. Panoramas (3-4:1) pass untouched; the
# centre crop a model sees is square, so what is cut never reached the model anyway, and a
# resized image stays under MAX_ASPECT * resize_size**2 pixels whatever the file claims.
MAX_ASPECT = 8


@dataclass(frozen=True)
class Preprocessing:
    """Input size and normalisation a model expects; `resize_size` is the short side before the
    centre crop (256 for 224, i.e. crop_pct 0.875, as timm and torchvision evaluate)."""

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_size: int

    def __post_init__(self) -> None:
        if self.input_size <= 0 or self.resize_size < self.input_size:
            raise ImgrecError(
                f"Preprocessing needs 0 < input_size <= resize_size; got input_size="
                f"{self.input_size}, resize_size={self.resize_size}."
            )
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ImgrecError(
                "Preprocessing needs three mean values and three positive std values."
            )

    @classmethod
    def from_crop_pct(
        cls,
        input_size: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        crop_pct: float = 0.875,
    ) -> Preprocessing:
        """Build from a timm-style pretrained config (input size + crop_pct)."""
        return cls(input_size, tuple(mean), tuple(std), int(round(input_size / crop_pct)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for model.imgrec metadata."""
        return {
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "resize_size": self.resize_size,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        """Inverse of to_dict; a damaged model file yields an ImgrecError, not a KeyError."""
        try:
            return cls(
                input_size=int(d["input_size"]),
                mean=tuple(float(x) for x in d["mean"]),  # type: ignore[arg-type]
                std=tuple(float(x) for x in d["std"]),  # type: ignore[arg-type]
                resize_size=int(d["resize_size"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ImgrecError(
                f"The preprocessing settings {d!r} are incomplete or invalid."
            ) from exc


def crop_extreme_aspect(img: Image.Image, max_aspect: int = MAX_ASPECT) -> Image.Image:
    """The centre of `img` at most `max_aspect` times as long as it is short (else `img`)."""
    width, height = img.size
    short = min(width, height)
    longest = short * max_aspect
    if max(width, height) <= longest:
        return img
    if width > height:
        left = (width - longest) // 2
        return img.crop((left, 0, left + longest, height))
    top = (height - longest) // 2
    return img.crop((0, top, width, top + longest))


def short_side_size(width: int, height: int, short: int) -> tuple[int, int]:
    """(width, height) with the short side `short`, the long side truncated as torchvision's
    Resize([short]) computes it, so the training cache and prediction agree to the pixel."""
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def resize_short_side(img: Image.Image, p: Preprocessing) -> Image.Image:
    """Short side -> `p.resize_size` (bilinear; PIL antialiases when shrinking), after capping
    the aspect ratio at MAX_ASPECT."""
    img = crop_extreme_aspect(img)
    size = short_side_size(*img.size, p.resize_size)
    return img if size == img.size else img.resize(size, Image.Resampling.BILINEAR)


def centre_crop_box(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) of the centred `size` square, rounded as torchvision's
    CenterCrop rounds (Python's round: halves to even)."""
    left = int(round((width - size) / 2.0))
    top = int(round((height - size) / 2.0))
    return left, top, left + size, top + size


def model_input(img: Image.Image, p: Preprocessing) -> np.ndarray:
    """An RGB image -> the normalised float32 (3, S, S) array the model sees."""
    return normalise(model_pixels(img, p)[None], p)[0]


def model_pixels(img: Image.Image, p: Preprocessing) -> np.ndarray:
    """An RGB image -> the uint8 (S, S, 3) crop the model sees, before normalisation: a
    quarter of the bytes, what a cluster job ships from its decoding stage to inference."""
    resized = resize_short_side(img, p)
    return np.asarray(resized.crop(centre_crop_box(*resized.size, p.input_size)))


def normalise(pixels: np.ndarray, p: Preprocessing, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 crops (N, S, S, 3) -> the normalised float32 batch (N, 3, S, S); element by
    element, so a batch gives the same floats as its images one at a time.

    Written channel by channel into `out` (a float32 (N, 3, S, S) array, reused across
    batches by a caller that runs many) with no temporary arrays: a batch of 32 crops at
    256 px is 25 MB of floats, and each fresh array of that size is new memory that the
    kernel zeroes page by page (in Ray's inference actors that zeroing had 8-11% of their
    perf samples; benchmarks/RESULTS.md, "Ray on 2026-12-05")."""
    n, size = len(pixels), pixels.shape[1]
    if out is None:
        out = np.empty((n, 3, size, size), np.float32)
    scale = np.float32(1.0 / 255.0)
    for c in range(3):
        channel = out[:, c]
        np.multiply(pixels[..., c], scale, out=channel, dtype=np.float32)
        np.subtract(channel, np.float32(p.mean[c]), out=channel)
        np.divide(channel, np.float32(p.std[c]), out=channel)
    return out


def prepare_input(source: Path | bytes, p: Preprocessing) -> np.ndarray:
    """One file or uploaded bytes -> model input; raises UnreadableImage with a short reason.

    The single place where prediction and serving turn pixels into model input, so the same
    photo gives the same answer from `imgrec predict` and from `imgrec serve`.
    """
    return model_input(open_image(source, draft=p.resize_size), p)


def prepare_pixels(source: Path | bytes, p: Preprocessing) -> np.ndarray:
    """`prepare_input` before normalisation: the uint8 (S, S, 3) crop (see `model_pixels`)."""
    return model_pixels(open_image(source, draft=p.resize_size), p)
