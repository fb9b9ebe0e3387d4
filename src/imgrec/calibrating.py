"""`imgrec calibrate`: fit a model's temperature on held-out images and write it into the file.

Held-out means images the model did not train on: the validation (or test) split when the
data has split folders or a split column, otherwise every image given, which the user vouches
for. The logits come from one eager PyTorch pass; the fit itself is evaluate/temperature.py.
The model file is rewritten with only `metadata["calibration"]` changed, atomically (a crash
leaves the old file), in place or to a new path.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from imgrec.data.dataset import Dataset, Skipped, load_dataset
from imgrec.errors import ImgrecError
from imgrec.evaluate.calibration import expected_calibration_error
from imgrec.evaluate.temperature import (
    cross_fitted,
    fit_temperature,
    negative_log_likelihood,
    softmax,
)
from imgrec.models.inference import iter_decoded_batches

if TYPE_CHECKING:
    from imgrec.api import ImageClassifier

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
    clf: ImageClassifier, dataset: Dataset, batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray, list[Skipped]]:
    """(logits (N, C) float64, targets (N,), unreadable files) of `dataset` under `clf`.

    A classic model's logits are its log-probabilities. Raises ImgrecError when the data has
    labels the model does not know.
    """
    network = clf._require_fitted()
    clf.check_labels(dataset)
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
    clf: ImageClassifier, data: Dataset | str | Path, split: str = "val", batch_size: int = 32
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


def calibrate_file(
    model_path: str | Path,
    data: Dataset | str | Path,
    out: str | Path | None = None,
    split: str = "val",
    batch_size: int = 32,
) -> tuple[CalibrationReport, Path]:
    """Calibrate the model in `model_path` and write it to `out` (default: in place), with
    only its calibration metadata changed. Returns the report and the path written."""
    from imgrec.api import ImageClassifier
    from imgrec.bundle.format import load_bundle, save_bundle

    model_path = Path(model_path)
    clf = ImageClassifier.load(model_path)
    report = calibrate_classifier(clf, data, split, batch_size)
    state, metadata = load_bundle(model_path)  # the file as it is, not as re-saved by clf
    metadata["calibration"] = {**metadata.get("calibration", {}), **report.to_metadata()}
    target = Path(out) if out is not None else model_path
    if target.is_dir():
        raise ImgrecError(f"--out {target} is a folder; give a file name such as model.imgrec.")
    try:
        save_bundle(target, state, metadata)
    except OSError as exc:
        raise ImgrecError(f"cannot write {target} ({exc.strerror or exc}).") from None
    return report, target
