"""Preprocessing settings that travel with a model, plus train/eval transforms built from them.

Images are cached once at `resize_size` (short side) as uint8 tensors; everything here works
on those tensors with torchvision.transforms.v2, so an epoch costs crops and flips, not JPEG
decodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from imgrec.config import AUGMENT_PRESETS, MIXES
from imgrec.errors import ImgrecError

Transform = Callable[[torch.Tensor], torch.Tensor]
BatchTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


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


def _finish(p: Preprocessing) -> list[v2.Transform]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(p.mean), list(p.std))]


def eval_transform(p: Preprocessing) -> Transform:
    """Centre crop + normalise a cached (already short-side-resized) uint8 CHW tensor."""
    return v2.Compose([v2.CenterCrop(p.input_size), *_finish(p)])


def train_transform(p: Preprocessing, augment: str) -> Transform:
    """Augmenting transform for one of AUGMENT_PRESETS; stronger presets suit smaller datasets."""
    if augment not in AUGMENT_PRESETS:
        raise ImgrecError(
            f"Unknown augmentation preset '{augment}'; choose one of {', '.join(AUGMENT_PRESETS)}."
        )
    if augment == "none":
        return eval_transform(p)
    size = p.input_size
    if augment == "light":
        steps: list[v2.Transform] = [
            v2.RandomResizedCrop(size, scale=(0.6, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
        ]
        return v2.Compose([*steps, *_finish(p)])
    steps = [
        v2.RandomResizedCrop(size, scale=(0.35, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomRotation(10),
        # no hue jitter: a +-0.02 hue shift cost half of this preset's time per image (an
        # RGB-HSV round trip), more than the rest of it together, for a barely visible change
        v2.ColorJitter(0.2, 0.2, 0.2),
    ]
    if augment == "default":
        return v2.Compose([*steps, *_finish(p)])
    steps += [v2.RandomPerspective(distortion_scale=0.2, p=0.3), v2.RandAugment(num_ops=2)]
    return v2.Compose([*steps, *_finish(p), v2.RandomErasing(p=0.25)])


def batch_mix(mode: str, num_classes: int, alpha: float = 1.0) -> BatchTransform | None:
    """Batch-level MixUp / CutMix (torchvision v2), or None for "none".

    They blend pairs of images of a batch, so they run on whole batches after the per-image
    transform; the result is (images, soft targets of shape (N, num_classes)), which needs a
    loss that accepts probabilities. "both" picks one of the two at random for each batch, as
    timm and torchvision's reference recipes do.
    """
    if mode not in MIXES:
        raise ImgrecError(f"Unknown mix mode '{mode}'; choose one of {', '.join(MIXES)}.")
    if alpha <= 0:
        raise ImgrecError(f"mix alpha must be positive; got {alpha}.")
    if mode == "none":
        return None
    mixup = v2.MixUp(alpha=alpha, num_classes=num_classes)
    cutmix = v2.CutMix(alpha=alpha, num_classes=num_classes)
    return {"mixup": mixup, "cutmix": cutmix, "both": v2.RandomChoice([mixup, cutmix])}[mode]


def resize_for_cache(img: Image.Image, p: Preprocessing) -> torch.Tensor:
    """Short side -> resize_size (bilinear, antialiased); contiguous uint8 CHW tensor."""
    resized = F.resize(
        img, [p.resize_size], interpolation=InterpolationMode.BILINEAR, antialias=True
    )
    # numpy's HWC->CHW copy is ~30x faster than torch's permute().contiguous() on uint8.
    return torch.from_numpy(np.ascontiguousarray(np.asarray(resized).transpose(2, 0, 1)))
