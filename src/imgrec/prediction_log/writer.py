"""The prediction log: one SQLite row per prediction, written without slowing predictions down.

`record` only appends the batch's arrays, its model input and the image bytes (or paths) to an
in-memory queue. One background thread drains it: it measures the input properties on the
model input (about a sixth of a forward pass, so not on the inference thread), hashes the
images, reads their size from the header, keeps stripped copies when asked (image_store.py),
and inserts up to MAX_BATCH_ROWS rows per transaction, so neither the server's event loop nor
the model ever waits for the log. `close` drains the queue to the last row (the server calls it
on shutdown, Ctrl-C and SIGTERM included). Retention (`max_rows`, `max_days`) runs on the same
thread at start, once a minute and at close, never per request. The file's schema lives in
schema.py; opening it for writing, and retention, in db.py.

If writing falls behind, the queue is bounded: the server drops rows (counted, on /metrics)
rather than let memory grow or requests wait; `imgrec predict` waits instead (`when_full`).

`imgrec predict` writes a batch's rows to its output file only once the log has committed them
(`checkpoint` / `settled`), so a process killed at any moment leaves no output row the log lacks;
`resumed_rows` tells a `--resume` which of the remaining images the killed run had already
logged, so they are not logged twice.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from imgrec.data.decode import pillow_notes
from imgrec.data.preprocess import Preprocessing
from imgrec.data.properties import input_properties
from imgrec.errors import ImgrecError
from imgrec.prediction_log.db import logged_since_output, open_log_db, prune
from imgrec.prediction_log.image_store import ImageStore, remove_stored
from imgrec.prediction_log.schema import INSERT, SIGNATURE_DTYPE, model_id

log = logging.getLogger(__name__)

LOG_TOP_K = 5  # classes kept per row in top_k, most likely first
MAX_BATCH_ROWS = 512  # rows per transaction
PRUNE_EVERY_S = 60.0
MAX_PENDING_ROWS = 10_000  # queued, not yet written
MAX_PENDING_BYTES = 256 * 1024 * 1024  # of image bytes and model inputs held meanwhile
PROPERTIES_CHUNK = 32  # images per input_properties call: batched, but small temporaries
_ORIENTATION = 0x0112
_WHEN_FULL = ("drop", "wait")


@dataclass
class _Batch:
    ts: float
    filenames: list[str]
    sources: list[bytes | Path]
    probabilities: np.ndarray
    signatures: np.ndarray | None
    properties: np.ndarray | None
    inputs: np.ndarray | torch.Tensor | None  # until the properties are measured
    labels: list[str] | None
    nbytes: int


class PredictionLog:
    """Append predictions of the model in `model_path` to the SQLite log at `path`.

    Raises ImgrecError (one sentence) now if the log, or the `store_images` folder, cannot be
    used; later write failures are logged and counted in `rows_dropped`, never raised.
    """

    def __init__(
        self,
        path: str | Path,
        model_path: str | Path,
        classes: Sequence[str],
        preprocessing: Preprocessing | None = None,
        *,
        source: str = "serve",
        store_images: str | Path | None = None,
        max_rows: int | None = None,
        max_days: float | None = None,
        when_full: str = "drop",
    ) -> None:
        if max_rows is not None and max_rows < 1:
            raise ImgrecError("--log-max-rows must be at least 1.")
        if max_days is not None and not max_days > 0:
            raise ImgrecError("--log-max-days must be more than 0.")
        if when_full not in _WHEN_FULL:
            raise ValueError(f"when_full is one of {_WHEN_FULL}, not {when_full!r}")
        self.path = Path(path)
        self.classes = list(classes)
        self.preprocessing = preprocessing
        self.source = source
        self.max_rows = max_rows
        self.max_days = max_days
        self.when_full = when_full
        self.model_id = model_id(model_path)
        self.model_version = model_version(model_path)
        self._conn = open_log_db(self.path)
        try:
            self.store = ImageStore(store_images) if store_images is not None else None
        except ImgrecError:
            self._conn.close()
            raise
        self.rows_written = 0
        self.rows_dropped = 0
        self.rows_pruned = 0
        self._batches: deque[_Batch] = deque()
        self._pending_rows = 0
        self._pending_bytes = 0
        self._queued = 0  # batches accepted so far
        self._settled = 0  # of those, written to the file (or given up on), in order
        self._closing = False
        self._cond = threading.Condition()
        self._last_error = ""
        self._thread = threading.Thread(target=self._run, name="imgrec-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # a caller that forgets close() still loses no rows

    # ---- producers (event loop, predict loop) -------------------------------------------------
    def record(
        self,
        filenames: Sequence[str],
        probabilities: np.ndarray,
        sources: Sequence[bytes | Path],
        *,
        signatures: np.ndarray | None = None,
        inputs: np.ndarray | torch.Tensor | None = None,
        properties: np.ndarray | None = None,
        labels: Sequence[str] | None = None,
    ) -> int:
        """Queue one row per image and return how many were accepted (0 if dropped).

        `sources` are the image bytes as received (or the files) for the sha256, the size and
        the stored copy; `signatures` (N, SIGNATURE_DIMS) come from the same batch as
        `probabilities` (N, C), and so does `inputs`, the normalised (N, 3, S, S) model input,
        whose input properties the log's thread measures (needs `preprocessing`; or pass
        them as `properties` (N, 3)); `labels` overrides the top-1 class, e.g. 'unknown'
        where the caller abstained. The arrays must not be changed afterwards.
        """
        n = len(filenames)
        if not (len(sources) == n == len(probabilities)):
            raise ValueError("filenames, probabilities and sources must have one entry per image")
        if n == 0:
            return 0
        if properties is None and inputs is not None and self.preprocessing is None:
            raise ValueError("measuring `inputs` needs the log's preprocessing")
        if properties is not None:
            inputs = None
        nbytes = sum(len(s) for s in sources if isinstance(s, bytes))
        nbytes += 0 if inputs is None else int(inputs.nbytes)
        batch = _Batch(
            time.time(),
            list(filenames),
            list(sources),
            probabilities,
            signatures,
            properties,
            inputs,
            list(labels) if labels is not None else None,
            nbytes,
        )
        with self._cond:
            while not self._closing and self._full(n, nbytes):
                if self.when_full == "drop":
                    self.rows_dropped += n
                    self._warn(f"the prediction log {self.path} is falling behind; rows dropped")
                    return 0
                self._cond.wait()
            if self._closing:
                self.rows_dropped += n
                return 0
            self._batches.append(batch)
            self._queued += 1
            self._pending_rows += n
            self._pending_bytes += nbytes
            self._cond.notify_all()
        return n

    def _full(self, n: int, nbytes: int) -> bool:
        if not self._batches:  # one oversized batch is always accepted
            return False
        rows = self._pending_rows + n > MAX_PENDING_ROWS
        return rows or self._pending_bytes + nbytes > MAX_PENDING_BYTES

    def checkpoint(self) -> int:
        """A mark for everything queued so far: `settled(mark)` is True once it is all written."""
        with self._cond:
            return self._queued

    def settled(self, mark: int, wait: bool = False) -> bool:
        """Whether every batch queued before `checkpoint()` returned `mark` is in the file (or
        was given up on with a warning); with `wait`, block until it is. A writer thread that
        has stopped settles nothing more, so waiting on it returns False instead of hanging."""
        with self._cond:
            while wait and self._settled < mark and self._thread.is_alive():
                self._cond.wait(1.0)
            return self._settled >= mark

    def resumed_rows(self, last_written: str | None, written_at: float) -> set[str]:
        """File names this model's `predict` rows logged at or after the interrupted run wrote
        its last output row `last_written` (at `written_at`, the output's modification time):
        the images a killed run logged but never wrote out. See db.logged_since_output."""
        return logged_since_output(self.path, self.model_id, self.source, last_written, written_at)

    def close(self) -> None:
        """Write every queued row, apply retention, and close the file; safe to call twice."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()
        atexit.unregister(self.close)

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- the writer thread --------------------------------------------------------------------
    def _run(self) -> None:
        next_prune = 0.0  # retention runs first thing
        try:
            while True:
                with self._cond:
                    while not self._batches and not self._closing:
                        timeout = next_prune - time.monotonic()
                        if timeout <= 0:
                            break
                        self._cond.wait(timeout)
                    taken: list[_Batch] = []
                    rows = 0
                    while self._batches and rows < MAX_BATCH_ROWS:
                        taken.append(self._batches.popleft())
                        rows += len(taken[-1].filenames)
                    finished = self._closing and not self._batches
                if taken:
                    self._write(taken)
                    with self._cond:
                        self._pending_rows -= rows
                        self._pending_bytes -= sum(b.nbytes for b in taken)
                        self._settled += len(taken)
                        self._cond.notify_all()
                if finished or time.monotonic() >= next_prune:
                    self._prune()
                    next_prune = time.monotonic() + PRUNE_EVERY_S
                if finished:
                    return
        finally:
            self._conn.close()

    def _measure(self, batches: list[_Batch]) -> None:
        """Input properties of every batch that brought its model input, PROPERTIES_CHUNK
        images per call (one image per call would pay torch's per-call cost 32 times)."""
        group: list[_Batch] = []
        size = 0
        for batch in batches:
            if batch.inputs is None:
                continue
            group.append(batch)
            size += len(batch.filenames)
            if size >= PROPERTIES_CHUNK:
                self._measure_group(group)
                group, size = [], 0
        if group:
            self._measure_group(group)

    def _measure_group(self, group: list[_Batch]) -> None:
        try:
            parts = [torch.as_tensor(b.inputs) for b in group]
            x = parts[0] if len(parts) == 1 else torch.cat(parts)
            measured = input_properties(x, self.preprocessing)
        except Exception as exc:  # noqa: BLE001 - the rows are still worth keeping
            self._warn(f"could not measure input properties ({exc})")
            measured = None
        start = 0
        for batch in group:
            n = len(batch.filenames)
            batch.properties = None if measured is None else measured[start : start + n]
            batch.inputs = None  # the pixels can go now
            start += n

    def _write(self, batches: list[_Batch]) -> None:
        self._measure(batches)
        rows: list[tuple] = []
        for batch in batches:
            try:
                rows += self._rows(batch)
            except Exception as exc:  # noqa: BLE001 - the writer must outlive any one batch
                self.rows_dropped += len(batch.filenames)
                self._warn(f"could not log {len(batch.filenames)} predictions ({exc})")
        if not rows:
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany(INSERT, rows)
            self._conn.execute("COMMIT")
            self.rows_written += len(rows)
        except Exception as exc:  # noqa: BLE001 - disk full, file removed, locked too long
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            self.rows_dropped += len(rows)
            self._warn(f"could not write {len(rows)} rows to the log {self.path} ({exc})")

    def _rows(self, batch: _Batch) -> list[tuple]:
        probs = np.asarray(batch.probabilities, dtype=np.float64)
        k = max(1, min(LOG_TOP_K, len(self.classes)))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        rows = []
        for i, name in enumerate(batch.filenames):
            source = batch.sources[i]
            try:
                data = source if isinstance(source, bytes) else Path(source).read_bytes()
            except OSError as exc:  # the file went away after it was predicted
                self.rows_dropped += 1
                self._warn(f"could not log {name} ({exc.strerror or exc})")
                continue
            digest = hashlib.sha256(data).hexdigest()
            width, height = image_size(data)
            image_path = None
            if self.store is not None:
                try:
                    image_path = self.store.save(data, digest)
                except Exception as exc:  # noqa: BLE001 - the row is still worth keeping
                    self._warn(f"could not store a copy of {name} ({exc})")
            top = [[self.classes[j], float(probs[i, j])] for j in order[i]]
            label = batch.labels[i] if batch.labels is not None else top[0][0]
            props = batch.properties[i] if batch.properties is not None else (None,) * 3
            signature = None
            if batch.signatures is not None:
                signature = np.asarray(batch.signatures[i], dtype=SIGNATURE_DTYPE).tobytes()
            rows.append(
                (
                    batch.ts, self.model_id, self.model_version, self.source, name, digest,
                    width, height, *(None if v is None else float(v) for v in props),
                    label, top[0][1], json.dumps(top), signature, image_path,
                )
            )  # fmt: skip
        return rows

    def _prune(self) -> None:
        try:
            deleted, orphans = prune(self._conn, self.max_rows, self.max_days)
        except Exception as exc:  # noqa: BLE001 - retention is retried at the next round
            self._warn(f"could not apply retention to the prediction log {self.path} ({exc})")
            return
        self.rows_pruned += deleted
        remove_stored(orphans)

    def _warn(self, message: str) -> None:
        """Log a problem once until a different one happens, so a full disk is one line."""
        if message != self._last_error:
            self._last_error = message
            log.warning(message)


def model_version(model_path: str | Path) -> str | None:
    """The model file's metadata["created"], or None (an ONNX file, an older file)."""
    from imgrec.bundle.format import read_metadata

    if Path(model_path).suffix.lower() == ".onnx":
        return None
    try:
        created = read_metadata(Path(model_path)).get("created")
    except ImgrecError:
        return None
    return None if created is None else str(created)


def image_size(data: bytes) -> tuple[int | None, int | None]:
    """(width, height) as displayed, EXIF rotation applied, from the header; None if unknown.
    Pillow's warnings (a damaged EXIF block) are dropped: decoding already named the file."""
    try:
        with pillow_notes(None, report=False), Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            try:
                orientation = im.getexif().get(_ORIENTATION)
            except Exception:  # noqa: BLE001 - a damaged EXIF block: keep the stored size
                orientation = None
    except Exception:  # noqa: BLE001 - decoded fine before; the size is only informative
        return None, None
    if orientation in (5, 6, 7, 8):  # rotated by 90 or 270 degrees
        width, height = height, width
    return width, height
