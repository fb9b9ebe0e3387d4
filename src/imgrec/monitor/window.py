"""A window: what a model saw and said for a set of images, the unit that drift tests compare.

Per image it holds the model's signature (models/signature.py), the top-1 class and confidence,
and the input properties (data/properties.py) plus the original width and height. A window
comes from image files (folder, CSV, glob), from a prediction log (the SQLite file that
`serve --log` / `predict --log` write), or from the reference summary that `imgrec train`
stores in the model file: the validation split, which the weights never trained on.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imgrec.errors import ImgrecError

if TYPE_CHECKING:
    from imgrec.data.cache import DecodedCache
    from imgrec.predicting import BatchPredictor

PROPERTY_NAMES = ("brightness", "contrast", "sharpness", "width", "height")
MIN_IMAGES = 20  # below this no test has the power to say anything
REFERENCE_LIMIT = 500  # images in a model file's reference: as many as the MMD test uses
REFERENCE_FORMAT = 1
SIGNATURE_DIMS = 32  # models/signature.py's, restated so that reading a log needs no torch
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
)


@dataclass
class Window:
    """Per-image facts of one set of images; arrays are row-aligned, NaN where unknown."""

    labels: np.ndarray  # (N,) str: the top-1 class ('unknown' where a log abstained)
    confidence: np.ndarray  # (N,) float32: the top-1 probability
    properties: np.ndarray  # (N, 5) float32, columns PROPERTY_NAMES
    signatures: np.ndarray | None  # (N, SIGNATURE_DIMS) float32, NaN rows where not logged
    source: str  # what a person would recognise: a path, "model.imgrec (validation split)"
    kind: str  # "images", "log" or "reference"
    time_range: tuple[float, float] | None = None  # unix seconds, first and last
    time_basis: str = ""  # what the times are: prediction, file modification, training
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(len(self.labels))

    @property
    def signature_rows(self) -> np.ndarray:
        """The signatures that are there (rows without NaN)."""
        if self.signatures is None:
            return np.zeros((0, SIGNATURE_DIMS), np.float32)
        return self.signatures[np.isfinite(self.signatures).all(axis=1)]

    def take(self, indices: Sequence[int] | np.ndarray) -> Window:
        """The window of some of its images (for re-splitting one window into two)."""
        idx = np.asarray(indices, dtype=int)
        signatures = None if self.signatures is None else self.signatures[idx]
        return replace(
            self,
            labels=self.labels[idx],
            confidence=self.confidence[idx],
            properties=self.properties[idx],
            signatures=signatures,
            skipped=[],
            notes=list(self.notes),
        )

    def summary(self) -> dict:
        """Size, origin and time range, as drift.json and the report show them."""
        span = None
        if self.time_range is not None:
            span = [_iso(self.time_range[0]), _iso(self.time_range[1])]
        return {
            "source": self.source,
            "kind": self.kind,
            "images": len(self),
            "with_signature": int(len(self.signature_rows)),
            "skipped": len(self.skipped),
            "time_range": span,
            "time_basis": self.time_basis,
            "notes": list(self.notes),
        }

    # ---- the reference summary inside a model file -----------------------------------------
    def to_metadata(self) -> dict:
        """A compact JSON form (float16 arrays in base64: about 120 bytes per image)."""
        classes = sorted(set(self.labels.tolist()))
        index = {c: i for i, c in enumerate(classes)}
        data = {
            "format": REFERENCE_FORMAT,
            "images": len(self),
            "source": self.source,
            "time_range": list(self.time_range) if self.time_range else None,
            "labels": classes,
            "label_index": _pack(np.array([index[c] for c in self.labels.tolist()]), "<u2"),
            "confidence": _pack(self.confidence, "<f2"),
            "properties": _pack(self.properties[:, :3], "<f2"),
            "sizes": _pack(np.nan_to_num(self.properties[:, 3:], nan=0.0), "<u4"),
            "signatures": None if self.signatures is None else _pack(self.signatures, "<f2"),
        }
        return data

    @classmethod
    def from_metadata(cls, data: dict, source: str) -> Window:
        """Inverse of to_metadata; a damaged summary is an ImgrecError naming `source`."""
        try:
            if int(data["format"]) > REFERENCE_FORMAT:
                raise ImgrecError(
                    f"{source} holds a reference summary from a newer imgrec; upgrade imgrec."
                )
            classes = list(data["labels"])
            labels = np.array(classes + [""], dtype=object)[_unpack(data["label_index"])]
            sizes = _unpack(data["sizes"]).astype(np.float32)
            sizes[sizes == 0] = np.nan
            properties = np.concatenate([_unpack(data["properties"]), sizes], axis=1)
            signatures = data.get("signatures")
            span = data.get("time_range")
            window = cls(
                labels=labels.astype(str),
                confidence=_unpack(data["confidence"]),
                properties=properties.astype(np.float32),
                signatures=None if signatures is None else _unpack(signatures),
                source=source,
                kind="reference",
                time_range=(float(span[0]), float(span[1])) if span else None,
                time_basis="training time",
            )
        except ImgrecError:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ImgrecError(f"the reference summary in {source} is damaged ({exc}).") from exc
        n = len(window)
        if window.confidence.shape != (n,) or window.properties.shape != (n, 5):
            raise ImgrecError(f"the reference summary in {source} is damaged (array sizes).")
        return window


def _pack(array: np.ndarray, dtype: str) -> dict:
    values = np.ascontiguousarray(np.asarray(array).astype(dtype))
    return {
        "dtype": dtype,
        "shape": list(values.shape),
        "data": base64.b64encode(values.tobytes()).decode("ascii"),
    }


def _unpack(packed: dict) -> np.ndarray:
    raw = base64.b64decode(packed["data"], validate=True)
    values = np.frombuffer(raw, dtype=np.dtype(packed["dtype"])).reshape(packed["shape"])
    if values.dtype.kind == "f":
        return values.astype(np.float32)
    return values.astype(np.int64)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


# ---- windows from images ----------------------------------------------------------------------
def image_paths(source: str | Path) -> list[Path]:
    """The images of a folder (recursive), a glob, one file, or a CSV with a `path` column
    (paths relative to the CSV, as `imgrec train` reads them)."""
    path = Path(source)
    if path.suffix.lower() == ".csv" and path.is_file():
        return _csv_paths(path)
    from imgrec.data.inputs import expand_inputs

    return expand_inputs([str(source)])


def _csv_paths(csv_path: Path) -> list[Path]:
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ImgrecError(f"cannot read the CSV file {csv_path} ({exc}).") from exc
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if "path" not in header:
        raise ImgrecError(f"the CSV file {csv_path} needs a header with a 'path' column.")
    col = header.index("path")
    paths = [
        Path(row[col]) if Path(row[col]).is_absolute() else csv_path.parent / row[col]
        for row in rows[1:]
        if len(row) > col and row[col].strip()
    ]
    if not paths:
        raise ImgrecError(f"the CSV file {csv_path} lists no images.")
    return paths


def original_size(path: Path) -> tuple[float, float]:
    """(width, height) as the photo is shown (EXIF rotation applied), read from the header
    only; NaN where the header cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            width, height = im.size
            orientation = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - any header problem only loses the size
        return float("nan"), float("nan")
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return float(width), float(height)


def describe_batch(
    predictor: BatchPredictor, batch: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(labels, confidences, brightness/contrast/sharpness (n, 3), signatures) of one
    normalised batch, in one forward pass of the predictor's engine."""
    from imgrec.data.properties import input_properties

    probs, signatures = predictor.engine.run(batch)
    top = probs.argmax(axis=1)
    labels = np.array([predictor.classes[i] for i in top], dtype=object)
    confidence = probs[np.arange(len(top)), top].astype(np.float32)
    properties = input_properties(batch, predictor.preprocessing)
    if signatures is not None:
        signatures = np.asarray(signatures, dtype=np.float32)
    return labels, confidence, properties, signatures


class _Collector:
    """Accumulates describe_batch results into one Window."""

    def __init__(self) -> None:
        self.parts: list[tuple] = []

    def add(self, described: tuple, sizes: list[tuple[float, float]]) -> None:
        self.parts.append((*described, np.array(sizes, dtype=np.float32).reshape(-1, 2)))

    def window(self, **kw) -> Window:
        if not self.parts:
            empty = np.zeros((0,), np.float32)
            return Window(
                np.zeros((0,), dtype=str), empty, np.zeros((0, 5), np.float32), None, **kw
            )
        labels, conf, props, sigs, sizes = zip(*self.parts, strict=True)
        signatures = None if any(s is None for s in sigs) else np.concatenate(sigs)
        return Window(
            labels=np.concatenate(labels).astype(str),
            confidence=np.concatenate(conf),
            properties=np.concatenate(
                [np.concatenate(props), np.concatenate(sizes)], axis=1
            ).astype(np.float32),
            signatures=signatures,
            **kw,
        )


def window_from_images(
    predictor: BatchPredictor, source: str | Path, progress: bool = False
) -> Window:
    """Predict every image of `source` (folder, CSV, glob or file) once and describe it;
    unreadable files are skipped and listed in the window, never fatal."""
    from imgrec.models.inference import iter_decoded_batches

    paths = image_paths(source)
    collected = _Collector()
    skipped: list[tuple[str, str]] = []
    mtimes: list[float] = []
    batches = iter_decoded_batches(
        paths, predictor.preprocessing, predictor.batch_size, predictor.workers
    )
    with _Progress(progress, len(paths)) as advance:
        for ok, batch, bad in batches:
            skipped += [(str(s.path), s.reason) for s in bad]
            if ok:
                collected.add(describe_batch(predictor, batch), [original_size(p) for p in ok])
                mtimes += [_mtime(p) for p in ok]
            advance(len(ok) + len(bad))
    finite = [t for t in mtimes if np.isfinite(t)]
    return collected.window(
        source=str(source),
        kind="images",
        time_range=(min(finite), max(finite)) if finite else None,
        time_basis="file modification time",
        skipped=skipped,
    )


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return float("nan")


def reference_window(
    predictor: BatchPredictor,
    cache: DecodedCache,
    source: str,
    limit: int = REFERENCE_LIMIT,
    seed: int = 0,
) -> Window:
    """The window of up to `limit` (sampled) images of an already decoded cache: what training
    stores as the model's reference, at the cost of one forward pass and no decode."""
    import torch

    from imgrec.data.transforms import eval_transform

    cache.build()
    indices = list(cache.valid_indices)
    if len(indices) > limit:
        chosen = np.random.default_rng(seed).choice(len(indices), limit, replace=False)
        indices = [indices[i] for i in sorted(chosen)]
    transform = eval_transform(predictor.preprocessing)
    collected = _Collector()
    step = max(1, predictor.batch_size)
    for start in range(0, len(indices), step):
        chunk = indices[start : start + step]
        batch = torch.stack([transform(cache[i]) for i in chunk]).numpy()
        sizes = [_cached_size(cache, i) for i in chunk]
        collected.add(describe_batch(predictor, batch), sizes)
    now = datetime.now(UTC).timestamp()
    return collected.window(
        source=source, kind="reference", time_range=(now, now), time_basis="training time"
    )


def _cached_size(cache: DecodedCache, i: int) -> tuple[float, float]:
    facts = cache.facts[i]
    if facts is not None:
        return float(facts.width), float(facts.height)
    return original_size(cache.paths[i])


class _Progress:
    """Context manager yielding advance(n): a transient Rich bar on stderr when enabled."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total, self.bar = enabled, total, None

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        import sys

        from rich.console import Console
        from rich.progress import Progress

        self.bar = Progress(console=Console(file=sys.stderr), transient=True)
        self.bar.start()
        task = self.bar.add_task("Describing images", total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


# ---- windows from a prediction log --------------------------------------------------------
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


def _log_window(rows: list[tuple], path: Path, since: float | None, until: float | None) -> Window:
    n = len(rows)
    labels = np.array([str(r[2]) for r in rows], dtype=object).astype(str)
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
    span = f" from {_iso(since)}" if since is not None else ""
    span += f" until {_iso(until)}" if until is not None else ""
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


# ---- dates on the command line --------------------------------------------------------------
def parse_when(text: str, end: bool = False) -> float:
    """Unix seconds of a date or date-time (ISO 8601; UTC unless it says otherwise). With
    `end`, a bare date means the end of that day, so --until 2026-11-07 includes the 7th."""
    value = text.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return (moment + timedelta(days=1 if end else 0)).timestamp()
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ImgrecError(
            f"'{text}' is not a date; use e.g. 2026-11-01 or 2026-11-01T08:00 (UTC)."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
