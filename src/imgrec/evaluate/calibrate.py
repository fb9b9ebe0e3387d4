"""Temperature scaling of a trained network on held-out images: logits, fit, before/after.

Held-out means images the model did not train on: the validation (or test) split when the
data has split folders or a split column, otherwise every image given, which the user vouches
for. The logits come from one eager PyTorch pass; the fit itself is evaluate/temperature.py.
`imgrec calibrate` (runs/calibrate.py) writes the result into the model file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from imgrec.data.dataset import Dataset, Skipped, check_known_labels, load_dataset
from imgrec.data.preprocess import Preprocessing
from imgrec.errors import ImgrecError
from imgrec.evaluate.calibration import expected_calibration_error
from imgrec.evaluate.temperature import (
    cross_fitted,
    fit_temperature,
    negative_log_likelihood,
    softmax,
)
from imgrec.infer.batches import iter_decoded_batches


class Calibratable(Protocol):
    """A trained network with its classes and preprocessing (a TrainedModel or a classifier)."""

    network: torch.nn.Module | None
    preprocessing: Preprocessing
    classes: list[str]
    temperature: float


MIN_IMAGES = 20  # two halves of 10 for the cross-fitted figure; fewer fit noise
SPLITS = ("val", "test")


@dataclass
class CalibrationReport:
    """What one calibration did, before -> after, on `images` held-out images."""

    images: int
    source: str
    temperature_before: float
    temperature: float
    accuracy: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    cross_fitted: dict
    skipped: list[tuple[str, str]]

    def to_metadata(self) -> dict:
        """The `calibration` entry of the model file (everything but the skipped files)."""
        data = asdict(self)
        data.pop("skipped")
        data.pop("temperature_before")
        return data


def held_out(data: Dataset | str | Path, split: str = "val") -> tuple[Dataset, str]:
    """The images to calibrate on and a short description of where they come from."""
    if split not in SPLITS:
        raise ImgrecError(f"--split is one of {', '.join(SPLITS)}, not '{split}'.")
    dataset = load_dataset(data) if isinstance(data, str | Path) else data
    if dataset.has_splits():
        part = dataset.subset(split)
        if len(part) == 0:
            raise ImgrecError(
                f"{dataset.root} has splits but no '{split}' images; choose another --split."
            )
        return part, f"{dataset.root} ({split} split)"
    return dataset, f"{dataset.root} (all images)"


def collect_logits(
    clf: Calibratable, dataset: Dataset, batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray, list[Skipped]]:
    """(logits (N, C) float64, targets (N,), unreadable files) of `dataset` under `clf`.

    A classic model's logits are its log-probabilities. Raises ImgrecError when the data has
    labels the model does not know.
    """
    network = clf.network
    if network is None:
        raise ImgrecError("this classifier is not trained yet; call fit() or load() first.")
    check_known_labels(dataset, clf.classes)
    label_of = {s.path: s.label for s in dataset.samples}
    chunks: list[np.ndarray] = []
    targets: list[int] = []
    skipped: list[Skipped] = list(dataset.skipped)
    network.eval()
    with torch.inference_mode():
        for ok, images, bad in iter_decoded_batches(
            [s.path for s in dataset.samples], clf.preprocessing, batch_size
        ):
            skipped += bad
            if ok:
                x = torch.from_numpy(images).contiguous(memory_format=torch.channels_last)
                chunks.append(network(x).double().numpy())
                targets += [clf.classes.index(label_of[p]) for p in ok]
    logits = np.concatenate(chunks) if chunks else np.zeros((0, len(clf.classes)))
    return logits, np.asarray(targets, dtype=np.int64), skipped


def calibrate_classifier(
    clf: Calibratable, data: Dataset | str | Path, split: str = "val", batch_size: int = 32
) -> CalibrationReport:
    """Fit `clf.temperature` on held-out `data` (see `held_out`) and report before -> after."""
    dataset, source = held_out(data, split)
    logits, targets, skipped = collect_logits(clf, dataset, batch_size)
    if len(targets) < MIN_IMAGES:
        raise ImgrecError(
            f"calibration needs at least {MIN_IMAGES} readable held-out images; "
            f"{source} has {len(targets)}."
        )
    before = clf.temperature
    temperature = fit_temperature(logits, targets)
    probs_before, probs_after = softmax(logits, before), softmax(logits, temperature)
    if not np.array_equal(probs_before.argmax(1), probs_after.argmax(1)):
        raise AssertionError("temperature scaling changed a top-1 class")  # never: T > 0
    clf.temperature = temperature
    return CalibrationReport(
        images=int(len(targets)),
        source=source,
        temperature_before=float(before),
        temperature=float(temperature),
        accuracy=float(np.mean(probs_after.argmax(1) == targets)),
        ece_before=expected_calibration_error(probs_before, targets),
        ece_after=expected_calibration_error(probs_after, targets),
        nll_before=negative_log_likelihood(logits, targets, before),
        nll_after=negative_log_likelihood(logits, targets, temperature),
        cross_fitted=cross_fitted(logits, targets, folds=2, base_temperature=before),
        skipped=[(str(s.path), s.reason) for s in skipped],
    )
