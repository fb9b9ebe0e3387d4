"""A window: what a model saw and said for a set of images, the unit that drift tests compare.

Per image it holds the model's signature (models/signature.py), the top-1 class and confidence,
and the input properties (data/properties.py) plus the original width and height. Windows come
from image files (image_window.py), from a prediction log (log_window.py), or from the reference
summary that `imgrec train` stores in the model file (`Window.from_metadata`).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

import numpy as np

from imgrec.errors import ImgrecError

PROPERTY_NAMES = ("brightness", "contrast", "sharpness", "width", "height")
MIN_IMAGES = 20  # below this no test has the power to say anything
REFERENCE_FORMAT = 1
SIGNATURE_DIMS = 32  # models/signature.py's, restated so that reading a log needs no torch


@dataclass
class Window:
    """Per-image facts of one set of images; arrays are row-aligned, NaN where unknown."""

    labels: np.ndarray  # (N,) str: the top-1 class ('unknown' where a log abstained)
    confidence: np.ndarray  # (N,) float32: the top-1 probability
    properties: np.ndarray  # (N, 5) float32, columns PROPERTY_NAMES
    signatures: np.ndarray | None  # (N, SIGNATURE_DIMS) float32, NaN rows where not logged
    source: str  # what a person would recognise: a path, "model.imgrec (held-out images)"
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
            span = [iso_time(self.time_range[0]), iso_time(self.time_range[1])]
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


def iso_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


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
