"""A picture of what an augmentation preset does: one PNG grid, original then augmented views.

Choosing a preset by name alone is guesswork; seeing a few of one's own photos cropped,
flipped, recoloured and erased exactly as training will see them shows at once whether the
preset is too weak, or so strong that the class is no longer recognisable. The views come from
the same `train_transform` and the same decode + resize path as training, un-normalised only
for display.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from matplotlib.figure import Figure

from imgrec.data.dataset import Dataset, Sample, load_dataset
from imgrec.data.decode import UnreadableImage, open_image
from imgrec.data.preprocess import Preprocessing
from imgrec.data.transforms import eval_transform, resize_for_cache, train_transform
from imgrec.errors import ImgrecError

# Fixed geometry, so a grid of R rows and C columns is always the same size in pixels.
DPI = 100
CELL_INCHES = 1.6  # one image cell
LABEL_INCHES = 1.8  # the row-label column (class and file name)
TITLE_INCHES = 0.6  # the title band
_MAX_NAME_CHARS = 22


class HasPreprocessing(Protocol):
    """Anything that carries a model's preprocessing: a Preprocessing or a models ModelSpec."""

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_size: int


def grid_pixels(rows: int, columns: int) -> tuple[int, int]:
    """(width, height) in pixels of a preview grid with `rows` images and `columns` cells each."""
    width = (LABEL_INCHES + columns * CELL_INCHES) * DPI
    height = (TITLE_INCHES + rows * CELL_INCHES) * DPI
    return round(width), round(height)


def preview_augmentations(
    dataset: Dataset | str | Path,
    augment: str,
    out: str | Path,
    images: int = 6,
    views: int = 5,
    seed: int = 0,
    spec: HasPreprocessing | None = None,
) -> Path:
    """Write a PNG grid: a row per image, its eval view then `views` augmented training views.

    `dataset` is a Dataset or anything `load_dataset` accepts; images are picked seeded and
    spread over the classes; unreadable files are passed over. `spec` gives the input size,
    mean and std (a ModelSpec from `imgrec.models.registry.get_spec`, or a Preprocessing);
    None means the default model's. The same seed gives the same grid.
    """
    if images < 1 or views < 1:
        raise ImgrecError(f"need at least 1 image and 1 view; got {images} and {views}.")
    p = _preprocessing(spec)
    augmenting = train_transform(p, augment)  # an unknown preset fails before any decoding
    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    if not data.samples:
        raise ImgrecError(f"The dataset at {data.root} has no images to preview.")
    picked = _decode_first(_spread_over_classes(data, seed), images, p)
    if not picked:
        raise ImgrecError(f"none of the images in {data.root} could be decoded.")
    showing = eval_transform(p)
    with torch.random.fork_rng(devices=[]):  # seeded, without disturbing the caller's RNG
        torch.manual_seed(seed)
        rows = [
            (sample, [showing(pixels)] + [augmenting(pixels) for _ in range(views)])
            for sample, pixels in picked
        ]
    return _save_grid(rows, p, augment, Path(out))


def _preprocessing(spec: HasPreprocessing | None) -> Preprocessing:
    if spec is None:
        # Only the default needs the model registry (and timm); callers with a spec skip it.
        from imgrec.models.registry import DEFAULT_MODEL, get_spec

        spec = get_spec(DEFAULT_MODEL)
    if isinstance(spec, Preprocessing):
        return spec
    return Preprocessing(spec.input_size, tuple(spec.mean), tuple(spec.std), spec.resize_size)


def _spread_over_classes(data: Dataset, seed: int) -> Iterator[Sample]:
    """Samples class by class in turn (round robin), each class in a seeded random order, so
    the first N cover as many classes as N allows and do not depend on listing order."""
    rng = random.Random(seed)
    queues = []
    for label in data.classes:
        members = sorted((s for s in data.samples if s.label == label), key=lambda s: s.path)
        rng.shuffle(members)
        queues.append(iter(members))
    while queues:
        for queue in list(queues):
            sample = next(queue, None)
            if sample is None:
                queues.remove(queue)
            else:
                yield sample


def _decode_first(
    samples: Iterator[Sample], n: int, p: Preprocessing
) -> list[tuple[Sample, torch.Tensor]]:
    """The first `n` decodable samples, resized as the training cache does."""
    picked = []
    for sample in samples:
        try:
            pixels = resize_for_cache(open_image(sample.path, draft=p.resize_size), p)
        except UnreadableImage:
            continue
        picked.append((sample, pixels))
        if len(picked) == n:
            break
    return picked


def _displayable(x: torch.Tensor, p: Preprocessing) -> np.ndarray:
    """Undo Normalize: a normalised CHW float tensor back to an HWC array in [0, 1]."""
    mean = torch.tensor(p.mean).view(3, 1, 1)
    std = torch.tensor(p.std).view(3, 1, 1)
    return (x * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()


def _short(name: str) -> str:
    return name if len(name) <= _MAX_NAME_CHARS else name[: _MAX_NAME_CHARS - 1] + "…"


def _save_grid(
    rows: list[tuple[Sample, list[torch.Tensor]]], p: Preprocessing, augment: str, out: Path
) -> Path:
    """Draw with a bare Figure (no pyplot: headless, no global figure registry) and save."""
    columns = len(rows[0][1])
    width, height = grid_pixels(len(rows), columns)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    fig.suptitle(
        f"augmentation preset '{augment}': original, then {columns - 1} training views "
        f"({p.input_size} px)"
    )
    axes = fig.subplots(len(rows), columns, squeeze=False)
    for r, (sample, tensors) in enumerate(rows):
        for c, tensor in enumerate(tensors):
            ax = axes[r][c]
            ax.imshow(_displayable(tensor, p))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("original" if c == 0 else f"view {c}", fontsize=9)
        axes[r][0].set_ylabel(
            f"{_short(sample.label)}\n{_short(sample.path.name)}",
            rotation=0,
            ha="right",
            va="center",
            fontsize=8,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=DPI)
    return out
