"""`imgrec calibrate`: fit a model file's temperature on held-out images and rewrite only its
calibration metadata (weights untouched)."""

from __future__ import annotations

from pathlib import Path

from imgrec.bundle.model import load_model, update_metadata
from imgrec.data.dataset import Dataset
from imgrec.evaluate.calibrate import CalibrationReport, calibrate_classifier


def calibrate_file(
    model_path: str | Path,
    data: Dataset | str | Path,
    out: str | Path | None = None,
    split: str = "val",
    batch_size: int = 32,
) -> tuple[CalibrationReport, Path]:
    """Calibrate the model in `model_path` and write it to `out` (default: in place), with
    only its calibration metadata changed. Returns the report and the path written."""
    model_path = Path(model_path)
    report = calibrate_classifier(load_model(model_path), data, split, batch_size)

    def add_calibration(metadata: dict) -> None:
        metadata["calibration"] = {**metadata.get("calibration", {}), **report.to_metadata()}

    return report, update_metadata(model_path, add_calibration, out)
