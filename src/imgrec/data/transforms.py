"""Train/eval transforms built from a model's Preprocessing (data/preprocess.py).

Images are cached once at `resize_size` (short side) as uint8 tensors; everything here works
on those tensors with torchvision.transforms.v2, so an epoch costs crops and flips, not JPEG
decodes. Prediction does the same resize, crop and normalisation without torch
(data/preprocess.model_input).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from imgrec.config import AUGMENT_PRESETS, MIXES
from imgrec.data.preprocess import Preprocessing, resize_short_side
from imgrec.errors import ImgrecError

__all__ = ["batch_mix", "eval_transform", "resize_for_cache", "train_transform"]

Transform = Callable[[torch.Tensor], torch.Tensor]
BatchTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


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
    """Short side -> resize_size (bilinear, antialiased, aspect capped as in
    data/preprocess.py); contiguous uint8 CHW tensor."""
    resized = resize_short_side(img, p)
    # numpy's HWC->CHW copy is ~30x faster than torch's permute().contiguous() on uint8.
    return torch.from_numpy(np.ascontiguousarray(np.asarray(resized).transpose(2, 0, 1)))
