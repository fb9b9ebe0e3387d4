"""Windows from image files: a folder, a CSV, a glob, or the decoded cache of a training run.

Every image is predicted once; the same forward pass gives the class, the confidence and the
signature, and the normalised batch gives the input properties. Unreadable files are skipped
and listed in the window, never fatal.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imgrec.errors import ImgrecError
from imgrec.monitor.window import Window

if TYPE_CHECKING:
    from imgrec.data.cache import DecodedCache
    from imgrec.infer.predict import BatchPredictor

REFERENCE_LIMIT = 500  # images in a model file's reference: as many as the MMD test uses


def image_paths(source: str | Path) -> list[Path]:
    """The images of a folder (recursive), a glob, one file, or a CSV with a `path` column
    (paths relative to the CSV, as `imgrec train` reads them)."""
    path = Path(source)
    if path.suffix.lower() == ".csv" and path.is_file():
        return _csv_paths(path)
    from imgrec.data.inputs import expand_inputs

    return expand_inputs([str(source)])


def _csv_paths(csv_path: Path) -> list[Path]:
    from imgrec.data.dataset import read_csv_rows

    rows = read_csv_rows(csv_path)
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
    return _run_and_describe(predictor, batch)[0]


def _run_and_describe(predictor: BatchPredictor, batch: np.ndarray) -> tuple[tuple, np.ndarray]:
    """(describe_batch's tuple, the probabilities) of one normalised batch."""
    from imgrec.data.properties import input_properties

    probs, signatures = predictor.engine.run(batch)
    top = probs.argmax(axis=1)
    labels = np.array([predictor.classes[i] for i in top], dtype=object)
    confidence = probs[np.arange(len(top)), top].astype(np.float32)
    properties = input_properties(batch, predictor.preprocessing)
    if signatures is not None:
        signatures = np.asarray(signatures, dtype=np.float32)
    return (labels, confidence, properties, signatures), probs


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
    from imgrec.infer.batches import iter_decoded_batches
    from imgrec.infer.predict import image_progress

    paths = image_paths(source)
    collected = _Collector()
    skipped: list[tuple[str, str]] = []
    mtimes: list[float] = []
    batches = iter_decoded_batches(
        paths, predictor.preprocessing, predictor.batch_size, predictor.workers
    )
    with image_progress(progress, len(paths), "Describing images", transient=True) as advance:
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
    probabilities: dict[Path, np.ndarray] | None = None,
) -> Window:
    """The window of up to `limit` (sampled) images of an already decoded cache: what training
    stores as the model's reference, at the cost of one forward pass and no decode. The
    probabilities of the images it ran go into `probabilities` (by path) when given, so that
    evaluating the same images does not run them again."""
    from imgrec.data.cache import cached_batches
    from imgrec.data.transforms import eval_transform

    cache.build()
    indices = list(cache.valid_indices)
    if len(indices) > limit:
        chosen = np.random.default_rng(seed).choice(len(indices), limit, replace=False)
        indices = [indices[i] for i in sorted(chosen)]
    transform = eval_transform(predictor.preprocessing)
    collected = _Collector()
    for chunk, batch in cached_batches(cache, indices, transform, predictor.batch_size):
        sizes = [_cached_size(cache, i) for i in chunk]
        described, probs = _run_and_describe(predictor, batch.numpy())
        collected.add(described, sizes)
        if probabilities is not None:
            probabilities.update(zip((cache.paths[i] for i in chunk), probs, strict=True))
    now = datetime.now(UTC).timestamp()
    return collected.window(
        source=source, kind="reference", time_range=(now, now), time_basis="training time"
    )


def _cached_size(cache: DecodedCache, i: int) -> tuple[float, float]:
    facts = cache.facts[i]
    if facts is not None:
        return float(facts.width), float(facts.height)
    return original_size(cache.paths[i])
