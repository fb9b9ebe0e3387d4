"""`imgrec drift` as one function: load the model, build both windows, compare them.

Inputs are checked before the model loads, so a typo in a path costs a second, not a model
load. The current window is a prediction log (any SQLite file) or images; the reference is
images, a log, or by default the summary that `imgrec train` stored in the model file.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from imgrec.errors import ImgrecError
from imgrec.monitor.drift import ALPHA, PERMUTATIONS, DriftResult, compare_windows
from imgrec.monitor.image_window import window_from_images
from imgrec.monitor.log_window import window_from_log
from imgrec.monitor.window import Window
from imgrec.prediction_log.reader import check_log, is_sqlite_file
from imgrec.prediction_log.schema import model_id

MIN_PERMUTATIONS = 100
_LOG_SUFFIXES = frozenset({".db", ".sqlite", ".sqlite3"})


@dataclass
class DriftRun:
    """A comparison and the two windows behind it (the report plots them)."""

    result: DriftResult
    reference: Window
    current: Window
    model_path: Path


def input_kind(source: str | Path, option: str) -> str:
    """'log' for a SQLite file, 'images' for anything else that exists (or is a glob)."""
    text = str(source)
    path = Path(text).expanduser()
    if path.is_file() and is_sqlite_file(path):
        return "log"
    if path.suffix.lower() in _LOG_SUFFIXES and path.is_file():
        raise ImgrecError(f"{option} {text} is not a SQLite file, so not a prediction log.")
    if not path.exists() and not glob.has_magic(text):
        raise ImgrecError(f"{option}: no such file or folder: {text}")
    return "images"


def detect_drift(
    model_path: str | Path,
    current: str | Path,
    reference: str | Path | None = None,
    *,
    alpha: float = ALPHA,
    since: float | None = None,
    until: float | None = None,
    permutations: int = PERMUTATIONS,
    seed: int = 0,
    engine: str = "auto",
    all_models: bool = False,
    progress: bool = False,
) -> DriftRun:
    """Compare `current` (a prediction log, or images) with `reference` (images or a log;
    default: the reference summary in the model file). `since` / `until` (unix seconds)
    select the current log's predictions; a log is read for this model file only unless
    `all_models`."""
    model_path = Path(model_path)
    current_kind = input_kind(current, "--current")
    reference_kind = input_kind(reference, "--reference") if reference is not None else None
    if (since is not None or until is not None) and current_kind != "log":
        raise ImgrecError("--since and --until select predictions of a log; --current is images.")
    _check_settings(alpha, permutations)
    for source, kind in ((current, current_kind), (reference, reference_kind)):
        if kind == "log":
            check_log(source)
    from imgrec.bundle.format import read_metadata

    metadata = read_metadata(model_path)  # the header only: a log needs no network
    predictor = None
    own_id = None if all_models else model_id(model_path)

    def window(source: str | Path, kind: str, window_since=None, window_until=None) -> Window:
        nonlocal predictor
        if kind == "log":
            return window_from_log(source, window_since, window_until, own_id)
        if predictor is None:
            from imgrec.bundle.model import load_model

            predictor = load_model(model_path).predictor(engine)
        return window_from_images(predictor, source, progress)

    if reference is None:
        stored = metadata.get("monitor", {}).get("reference")
        if not stored:
            raise ImgrecError(
                f"{model_path} carries no reference summary (it was trained by an older "
                "imgrec); pass --reference with images like the ones it was trained on."
            )
        ref_window = Window.from_metadata(stored, f"{model_path.name} (held-out images)")
        skip = _calibrated_since(stored, metadata)
    else:
        ref_window = window(reference, reference_kind)
        skip = {}
    cur_window = window(current, current_kind, since, until)
    result = compare_windows(ref_window, cur_window, alpha, permutations, seed, skip)
    return DriftRun(result, ref_window, cur_window, model_path)


def _check_settings(alpha: float, permutations: int) -> None:
    if permutations < MIN_PERMUTATIONS:
        raise ImgrecError(f"--permutations must be at least {MIN_PERMUTATIONS}.")
    if not 0 < alpha < 1:
        raise ImgrecError(f"--alpha must be between 0 and 1, not {alpha}.")


def _calibrated_since(stored: dict, metadata: dict) -> dict[str, str]:
    """The confidence test is void when the model was calibrated after its reference was
    stored: the same images now get other confidences (classes and signatures do not change)."""
    then = float(stored.get("temperature", 1.0))
    now = float(metadata.get("calibration", {}).get("temperature", 1.0))
    if abs(then - now) <= 1e-6 * max(then, now):
        return {}
    return {
        "confidence": f"the model was calibrated after its reference was stored (temperature "
        f"{then:.3g} -> {now:.3g}); pass --reference images to compare confidences"
    }
