"""Windows from a prediction log: the SQLite file that `serve --log` and `predict --log` write.

The log is opened read-only (a check may run while a server writes it) and checked before any
row is read: tables `predictions` and `log_info`, schema version 1, the columns drift needs.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import numpy as np

from imgrec.errors import ImgrecError
from imgrec.monitor.window import SIGNATURE_DIMS, Window, iso_time

LOG_SCHEMA_VERSION = 1
_SQLITE_MAGIC = b"SQLite format 3\x00"
_LOG_COLUMNS = (
    "ts",
    "model_id",
    "label",
    "confidence",
    "brightness",
    "contrast",
    "sharpness",
    "width",
    "height",
    "signature",
    "top_k",
)


def is_sqlite_file(path: Path) -> bool:
    """True for a file that starts with SQLite's header (whatever its extension)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC
    except OSError:
        return False


def model_id(path: str | Path) -> str:
    """How the prediction log names a model: the first 16 hex digits of its file's SHA-256."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise ImgrecError(f"cannot read {path} ({exc.strerror or exc}).") from exc
    return digest.hexdigest()[:16]


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
    connection = _open_log(path)
    try:
        _check_log(connection, path)
        where, args = ["1 = 1"], []
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        if until is not None:
            where.append("ts < ?")
            args.append(until)
        if model is not None:
            ids = dict(
                connection.execute(
                    f"SELECT model_id, COUNT(*) FROM predictions WHERE {' AND '.join(where)} "
                    "GROUP BY model_id",
                    args,
                ).fetchall()
            )
            if ids and model not in ids:
                found = ", ".join(sorted(ids)[:5])
                raise ImgrecError(
                    f"{path} holds no predictions of this model (id {model}) in that time "
                    f"range, only of other model files ({found}); pass --all-models to "
                    "compare them anyway."
                )
            where.append("model_id = ?")
            args.append(model)
        rows = connection.execute(
            f"SELECT {', '.join(_LOG_COLUMNS)} FROM predictions WHERE {' AND '.join(where)} "
            "ORDER BY ts",
            args,
        ).fetchall()
    except sqlite3.DatabaseError as exc:
        raise ImgrecError(f"cannot read the prediction log {path} ({exc}).") from exc
    finally:
        connection.close()
    return _log_window(rows, path, since, until)


def check_log(path: str | Path) -> None:
    """Raise ImgrecError unless `path` is a prediction log this imgrec can read."""
    connection = _open_log(Path(path))
    try:
        _check_log(connection, Path(path))
    except sqlite3.DatabaseError as exc:
        raise ImgrecError(f"cannot read the prediction log {path} ({exc}).") from exc
    finally:
        connection.close()


def _open_log(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise ImgrecError(f"no such prediction log: {path}")
    if not is_sqlite_file(path):
        raise ImgrecError(f"{path} is not a SQLite file, so not an imgrec prediction log.")
    try:  # read-only: a monitor must never change the log a server is writing
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise ImgrecError(f"cannot open the prediction log {path} ({exc}).") from exc


def _check_log(connection: sqlite3.Connection, path: Path) -> None:
    tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "predictions" not in tables or "log_info" not in tables:
        raise ImgrecError(
            f"{path} is a SQLite database but not an imgrec prediction log (it has no "
            "predictions and log_info tables)."
        )
    row = connection.execute("SELECT schema_version FROM log_info").fetchone()
    version = row[0] if row else None
    if version is None:
        raise ImgrecError(f"{path} is a prediction log without a schema version (log_info).")
    if version != LOG_SCHEMA_VERSION:
        raise ImgrecError(
            f"{path} is a prediction log of schema version {version}; this imgrec reads "
            f"version {LOG_SCHEMA_VERSION}: use the imgrec that wrote it."
        )
    columns = {r[1] for r in connection.execute("PRAGMA table_info(predictions)")}
    missing = [c for c in _LOG_COLUMNS if c not in columns]
    if missing:
        raise ImgrecError(
            f"{path} does not follow the prediction-log schema (no column {', '.join(missing)})."
        )


def _top_class(top_k: str | None, label: str) -> str:
    try:
        return str(json.loads(top_k)[0][0])
    except (TypeError, ValueError, IndexError, KeyError):
        return str(label)


def _log_window(rows: list[tuple], path: Path, since: float | None, until: float | None) -> Window:
    n = len(rows)
    # the model's top class, from top_k: `label` is 'unknown' where the server abstained,
    # which is a threshold setting, not something the reference window could show
    labels = np.array([_top_class(r[10], r[2]) for r in rows], dtype=object).astype(str)
    numeric = np.array(
        [[_num(r[3]), _num(r[4]), _num(r[5]), _num(r[6]), _num(r[7]), _num(r[8])] for r in rows],
        dtype=np.float32,
    ).reshape(n, 6)
    signatures = np.full((n, SIGNATURE_DIMS), np.nan, dtype=np.float32)
    bad = 0
    for i, r in enumerate(rows):
        blob = r[9]
        if blob is None:
            continue
        if isinstance(blob, bytes) and len(blob) == 2 * SIGNATURE_DIMS:
            signatures[i] = np.frombuffer(blob, dtype="<f2").astype(np.float32)
        else:
            bad += 1
    notes = []
    if bad:
        notes.append(f"{bad} signatures of the wrong size were ignored")
    times = [float(r[0]) for r in rows]
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
