"""Batched prediction over image files: decoding in a thread pipeline, one forward per batch.

Decoding + resizing runs in a thread pool a few batches ahead of the forward pass (PIL, torch
and ONNX Runtime all release the GIL), so on a multi-core machine the model, not the JPEG
decoder, sets the pace. Memory stays flat: at most `prefetch + 1` batches are in flight.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from imgrec.data.dataset import Skipped
from imgrec.data.preprocess import Preprocessing, prepare_input

PREFETCH_BATCHES = 2


def iter_decoded_batches(
    paths: Sequence[Path],
    preprocessing: Preprocessing,
    batch_size: int = 32,
    workers: int | None = None,
    prefetch: int = PREFETCH_BATCHES,
) -> Iterator[tuple[list[Path], np.ndarray, list[Skipped]]]:
    """Yield (readable paths, float32 images (n, 3, S, S), skipped files) batch by batch, in
    input order, while the next `prefetch` batches decode in `workers` threads.

    A file that cannot be decoded (or fails in any other way) is a Skipped entry, never an
    exception, so one bad file cannot stop a run over 10 000.
    """
    size = preprocessing.input_size
    batch_size = max(1, batch_size)

    def load(path: Path) -> np.ndarray:
        return prepare_input(path, preprocessing)

    pool = ThreadPoolExecutor(
        max_workers=max(1, workers or os.cpu_count() or 1), thread_name_prefix="imgrec-decode"
    )
    starts = iter(range(0, len(paths), batch_size))
    pending: deque[tuple[list[Path], list[Future[np.ndarray]]]] = deque()

    def submit_next() -> None:
        start = next(starts, None)
        if start is not None:
            chunk = [Path(p) for p in paths[start : start + batch_size]]
            pending.append((chunk, [pool.submit(load, p) for p in chunk]))

    try:
        for _ in range(prefetch + 1):
            submit_next()
        while pending:
            chunk, futures = pending.popleft()
            submit_next()
            ok: list[Path] = []
            images: list[np.ndarray] = []
            skipped: list[Skipped] = []
            for path, future in zip(chunk, futures, strict=True):
                try:
                    images.append(future.result())
                    ok.append(path)
                except Exception as exc:  # noqa: BLE001 - UnreadableImage, or anything else
                    skipped.append(Skipped(path, str(exc) or type(exc).__name__))
            batch = np.stack(images) if images else np.zeros((0, 3, size, size), np.float32)
            yield ok, batch, skipped
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def stream_probabilities(
    forward: Callable[[np.ndarray], np.ndarray],
    paths: Sequence[Path],
    preprocessing: Preprocessing,
    batch_size: int = 32,
    workers: int | None = None,
) -> Iterator[tuple[list[Path], np.ndarray, list[Skipped]]]:
    """Yield (readable paths, probabilities (n, C), skipped files) batch by batch; `forward`
    is an engine (infer/engine.py) and runs while the next batches decode."""
    for ok, images, skipped in iter_decoded_batches(paths, preprocessing, batch_size, workers):
        if not ok:
            yield [], np.zeros((0, 0), dtype=np.float32), skipped
            continue
        yield ok, forward(images), skipped
