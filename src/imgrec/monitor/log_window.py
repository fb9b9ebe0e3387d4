"""Windows from a prediction log: its rows (read by prediction_log/reader.py, which opens the
file read-only and checks its schema) turned into the Window that drift tests compare.
"""

from __future__ import annotations

import json
from pathlib import Path
from sqlite3 import Row

import numpy as np

from imgrec.errors import ImgrecError
from imgrec.monitor.window import PROPERTY_NAMES, SIGNATURE_DIMS, Window, iso_time
from imgrec.prediction_log.reader import LogReader
from imgrec.prediction_log.schema import SIGNATURE_DTYPE

_COLUMNS = ("ts", "label", "confidence", *PROPERTY_NAMES, "signature", "top_k")  # what drift needs
_SIGNATURE_BYTES = np.dtype(SIGNATURE_DTYPE).itemsize * SIGNATURE_DIMS


def window_from_log(
    path: str | Path,
    since: float | None = None,
    until: float | None = None,
    model: str | None = None,
) -> Window:
    """The predictions of a prediction log with since <= ts < until (unix seconds), of the
    model whose id is `model` (all models when None). Rows without a signature still count
    for every test except the embedding test."""
    path = Path(path)
    with LogReader(path) as log:
        if model is not None:
            ids = log.model_counts(since, until)
            if ids and model not in ids:
                found = ", ".join(sorted(ids)[:5])
                raise ImgrecError(
                    f"{path} holds no predictions of this model (id {model}) in that time "
                    f"range, only of other model files ({found}); pass --all-models to "
                    "compare them anyway."
                )
        rows = log.rows(_COLUMNS, since, until, model)
    return _log_window(rows, path, since, until)


def _top_class(top_k: str | None, label: str) -> str:
    try:
        return str(json.loads(top_k)[0][0])
    except (TypeError, ValueError, IndexError, KeyError):
        return str(label)


def _log_window(rows: list[Row], path: Path, since: float | None, until: float | None) -> Window:
    n = len(rows)
    # the model's top class, from top_k: `label` is 'unknown' where the server abstained,
    # which is a threshold setting, not something the reference window could show
    labels = np.array([_top_class(r["top_k"], r["label"]) for r in rows], dtype=object).astype(str)
    numeric = np.array(
        [[_num(r[c]) for c in ("confidence", *PROPERTY_NAMES)] for r in rows], dtype=np.float32
    ).reshape(n, 1 + len(PROPERTY_NAMES))
    signatures = np.full((n, SIGNATURE_DIMS), np.nan, dtype=np.float32)
    bad = 0
    for i, r in enumerate(rows):
        blob = r["signature"]
        if blob is None:
            continue
        if isinstance(blob, bytes) and len(blob) == _SIGNATURE_BYTES:
            signatures[i] = np.frombuffer(blob, dtype=SIGNATURE_DTYPE).astype(np.float32)
        else:
            bad += 1
    notes = []
    if bad:
        notes.append(f"{bad} signatures of the wrong size were ignored")
    times = [float(r["ts"]) for r in rows]
    span = f" from {iso_time(since)}" if since is not None else ""
    span += f" until {iso_time(until)}" if until is not None else ""
    return Window(
        labels=labels,
        confidence=numeric[:, 0],
        properties=numeric[:, 1:],
        signatures=signatures,
        source=f"{path}{span}",
        kind="log",
        time_range=(min(times), max(times)) if times else None,
        time_basis="prediction time",
        notes=notes,
    )


def _num(value) -> float:
    try:
        return float(value) if value is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")
