"""Parity figures between the PyTorch model and an exported copy, on real preprocessed images.

Exports are checked on photos, not random tensors: quantisation error depends on the activation
ranges real images produce, and a random input can hide a wrong normalisation constant.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from imgrec.data.cache import decode_batch_for_inference
from imgrec.data.dataset import load_dataset
from imgrec.data.preprocess import Preprocessing
from imgrec.errors import ImgrecError

CALIBRATION_IMAGES = 100  # enough for stable int8 ranges, seconds to decode on 2 cores
FP32_MAX_DIFF = 1e-4
FP32_MIN_AGREEMENT = 1.0
INT8_MIN_AGREEMENT = 0.97


@dataclass
class CalibrationSet:
    """Preprocessed images (N,3,S,S) with their label index in the model's classes (-1: unknown)."""

    source: Path
    images: torch.Tensor
    targets: np.ndarray


def calibration_set(
    source: str | Path, preprocessing: Preprocessing, classes: list[str], limit: int
) -> CalibrationSet:
    """Up to `limit` images of `source`, held-out splits first, classes interleaved.

    Validation/test images come first because the model has not trained on them; interleaving
    keeps every class present when the limit cuts the list short.
    """
    dataset = load_dataset(source)
    order = {"val": 0, "test": 1, None: 2, "train": 3}
    by_class: dict[str, list] = {}
    for sample in sorted(dataset.samples, key=lambda s: (order.get(s.split, 2), str(s.path))):
        by_class.setdefault(sample.label, []).append(sample)
    chosen = []
    queues = list(by_class.values())
    while len(chosen) < limit and any(queues):
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.append(queue.pop(0))
    images, ok, _ = decode_batch_for_inference([s.path for s in chosen], preprocessing)
    if not ok:
        raise ImgrecError(f"none of the calibration images in {source} could be read.")
    index = {name: i for i, name in enumerate(classes)}
    targets = np.array([index.get(chosen[i].label, -1) for i in ok], dtype=int)
    return CalibrationSet(Path(source), images, targets)


@torch.inference_mode()
def torch_probabilities(
    model: torch.nn.Module, images: torch.Tensor, temperature: float = 1.0, batch: int = 32
) -> np.ndarray:
    """Reference probabilities exactly as `imgrec predict` computes them."""
    model.eval()
    chunks = [
        torch.softmax(
            model(x.contiguous(memory_format=torch.channels_last)).float() / temperature, dim=1
        )
        for x in images.split(batch)
    ]
    return torch.cat(chunks).numpy()


def batched(run: Callable[[np.ndarray], np.ndarray], images: torch.Tensor, batch: int = 32):
    """Run an exported model over `images` in chunks; returns (N, C) probabilities."""
    return np.concatenate([run(x.contiguous().numpy()) for x in images.split(batch)])


def compare(reference: np.ndarray, candidate: np.ndarray, targets: np.ndarray) -> dict:
    """Max absolute probability difference, top-1 agreement, and top-1 accuracy of each side."""
    ref_top, cand_top = reference.argmax(1), candidate.argmax(1)
    known = targets >= 0
    figures = {
        "images": int(len(reference)),
        "max_abs_diff": float(np.abs(reference - candidate).max()) if len(reference) else 0.0,
        "top1_agreement": float((ref_top == cand_top).mean()) if len(reference) else 1.0,
    }
    if known.any():
        figures["labelled_images"] = int(known.sum())
        figures["reference_accuracy"] = float((ref_top[known] == targets[known]).mean())
        figures["export_accuracy"] = float((cand_top[known] == targets[known]).mean())
    return figures


def check(figures: dict, *, int8: bool, what: str) -> None:
    """Raise ImgrecError when an export strays beyond tolerance (fp32: 1e-4 and 100%)."""
    agreement = figures["top1_agreement"]
    if int8:
        if agreement < INT8_MIN_AGREEMENT:
            raise ImgrecError(
                f"{what} agrees with the PyTorch model on only {agreement:.1%} of "
                f"{figures['images']} images (need {INT8_MIN_AGREEMENT:.0%}); export without "
                f"--int8 or calibrate with more representative --calibration images."
            )
        return
    if figures["max_abs_diff"] > FP32_MAX_DIFF or agreement < FP32_MIN_AGREEMENT:
        raise ImgrecError(
            f"{what} differs from the PyTorch model (max probability difference "
            f"{figures['max_abs_diff']:.2e}, top-1 agreement {agreement:.1%}); the export is "
            f"not trustworthy, please report this model's architecture."
        )


def images_per_second(run: Callable[[], object], images: int, seconds: float = 2.0) -> float:
    """Throughput of `run` (one batch of `images`), after a warm-up, over at least `seconds`."""
    run()
    start, count = time.perf_counter(), 0
    while count < 3 or time.perf_counter() - start < seconds:
        run()
        count += 1
    return images * count / (time.perf_counter() - start)
