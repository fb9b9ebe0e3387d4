"""The two stages of a batch job over image files, as plain callables on column batches.

`DecodeStage` reads and decodes a batch of sources (local paths or object-storage URLs) into
uint8 crops; `GraphRunner` normalises them, runs an ONNX graph and turns the outputs into
rows (`PredictHead`: top-k classes, `EmbedHead`: feature vectors). Ray Data runs the first
as tasks and the second in an actor pool (infer/on_ray.py); `run_local` chains them in this
process. Both take and give dicts of numpy columns, Ray Data's "numpy" batch format:

    index   int64      the source's position in the job's list (exactly-once bookkeeping)
    path    str        the source as given
    pixels  uint8      (n, S, S, 3) crops; zeros where the source could not be read
    error   str        "" or why the source could not be read (a row, never a failed job)
    facts   str        with DecodeStage(facts=True): ImageFacts as JSON (the audit's scan)

The pixels are exactly `prepare_input`'s (data/preprocess.py) before normalisation, and the
engine is infer/engine.py's OnnxEngine, so a cluster job answers as `imgrec predict` does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from imgrec.data.decode import UnreadableImage
from imgrec.data.facts import decode_with_facts, facts_to_dict
from imgrec.data.inputs import is_url, read_source
from imgrec.data.preprocess import Preprocessing, model_pixels, normalise, prepare_pixels
from imgrec.infer.engine import OnnxEngine
from imgrec.infer.graph_io import OUTPUT
from imgrec.infer.predict import UNKNOWN, top_k_rows

Batch = dict[str, np.ndarray]
READ_THREADS = 8  # per decoding task: reads from object storage wait on the network


@dataclass(frozen=True)
class DecodeStage:
    """Sources -> uint8 crops of the model's input size (see the module docstring)."""

    preprocessing: Preprocessing
    facts: bool = False
    # Threads decoding a batch. One on a cluster: decoding is CPU work, and a scheduler that
    # gave the task a share of a CPU scales it with more tasks (on 2 cores, 8 threads cost
    # 1.60-1.77 ms of CPU a photo against 1.41 for one). In one process, its cores.
    threads: int = 1

    def __call__(self, batch: Batch) -> Batch:
        sources = [str(s) for s in batch["path"]]
        size = self.preprocessing.input_size
        pixels = np.zeros((len(sources), size, size, 3), np.uint8)
        errors = [""] * len(sources)
        facts = [""] * len(sources)
        results: Iterable[tuple[np.ndarray, str] | str]
        if self.threads > 1:
            with ThreadPoolExecutor(self.threads) as pool:
                results = list(pool.map(self._one, sources, _fetched(sources)))
        else:
            results = map(self._one, sources, _fetched(sources))
        for i, result in enumerate(results):
            if isinstance(result, str):
                errors[i] = result
            else:
                pixels[i], facts[i] = result
        out = {"index": np.asarray(batch["index"], np.int64), "path": np.array(sources)}
        out |= {"pixels": pixels, "error": np.array(errors, dtype=object)}
        if self.facts:
            out["facts"] = np.array(facts, dtype=object)
        return out

    def _one(self, source: str, data: Path | bytes | str) -> tuple[np.ndarray, str] | str:
        """(crop, facts JSON or "") of one fetched source, or the reason it cannot be read."""
        if isinstance(data, str):
            return data
        try:
            if not self.facts:
                return prepare_pixels(data, self.preprocessing), ""
            raw = data if isinstance(data, bytes) else None
            image, facts = decode_with_facts(source, self.preprocessing.resize_size, raw)
            record = facts_to_dict(facts) | {"path": source}
            return model_pixels(image, self.preprocessing), json.dumps(record)
        except (UnreadableImage, OSError) as exc:
            return _reason(exc)


def _fetched(sources: Sequence[str]) -> Iterator[Path | bytes | str]:
    """What the decoder opens for each source, in order: a local path as it is, an object's
    bytes fetched by READ_THREADS threads (they wait on the network, not on a CPU), or why
    it could not be fetched."""
    if not any(is_url(s) for s in sources):  # local files: nothing to wait for
        yield from map(_read, sources)
        return
    with ThreadPoolExecutor(min(READ_THREADS, len(sources))) as pool:
        yield from pool.map(_read, sources)


def _read(source: str) -> Path | bytes | str:
    try:
        return read_source(source)
    except (UnreadableImage, OSError) as exc:
        return _reason(exc)


def _reason(exc: UnreadableImage | OSError) -> str:
    """The row's `error`: why the source could not be read (for an OSError: the file went
    away, a permission, a dead mount)."""
    if isinstance(exc, UnreadableImage):
        return str(exc) or "unreadable"
    return exc.strerror or type(exc).__name__


class PredictHead:
    """Probabilities -> the rows of `imgrec predict --on ray`: label, confidence, top-k."""

    outputs = (OUTPUT,)

    def __init__(self, classes: Sequence[str], top_k: int = 1, min_confidence: float | None = None):
        self.classes = list(classes)
        self.top_k = max(1, min(top_k, len(self.classes)))
        self.min_confidence = min_confidence

    @property
    def schema(self) -> pa.Schema:
        return pa.schema(
            [
                ("path", pa.string()),
                ("label", pa.string()),
                ("confidence", pa.float32()),
                ("classes", pa.list_(pa.string())),
                ("probabilities", pa.list_(pa.float32())),
                ("error", pa.string()),
            ]
        )

    def columns(self, n: int, ok: np.ndarray, outputs: list[np.ndarray]) -> dict[str, list]:
        labels: list[str | None] = [None] * n
        confidence: list[float | None] = [None] * n
        classes: list[list[str] | None] = [None] * n
        probabilities: list[list[float] | None] = [None] * n
        rows = top_k_rows(self.classes, outputs[0], self.top_k) if len(outputs[0]) else []
        for i, (names, probs) in zip(np.flatnonzero(ok), rows, strict=True):
            low = self.min_confidence is not None and probs[0] < self.min_confidence
            labels[i] = UNKNOWN if low else names[0]
            confidence[i], classes[i], probabilities[i] = probs[0], names, probs
        return {
            "label": labels,
            "confidence": confidence,
            "classes": classes,
            "probabilities": probabilities,
        }


class EmbedHead:
    """Features -> rows of `imgrec embed`: one float32 vector per image (with the scan's facts
    as JSON when the audit asked the decoding stage for them)."""

    def __init__(self, output: str, width: int, facts: bool = False) -> None:
        self.outputs = (output,)
        self.width = width
        self.facts = facts

    @property
    def schema(self) -> pa.Schema:
        fields = [("path", pa.string()), ("embedding", pa.list_(pa.float32(), self.width))]
        fields += [("facts", pa.string())] if self.facts else []
        return pa.schema([*fields, ("error", pa.string())])

    def columns(self, n: int, ok: np.ndarray, outputs: list[np.ndarray]) -> dict[str, list]:
        vectors: list[np.ndarray | None] = [None] * n
        for i, row in zip(np.flatnonzero(ok), outputs[0], strict=True):
            vectors[i] = row
        return {"embedding": vectors}


Head = PredictHead | EmbedHead


class GraphRunner:
    """Normalise the crops, run the graph, build the head's rows (one pyarrow Table a batch).

    The session pins its batch axis to `batch_size` (infer/engine.py) and uses `threads`
    threads: on a cluster, the CPUs the scheduler gave this actor, not the whole host's."""

    def __init__(
        self, graph: bytes, head: Head, preprocessing: Preprocessing, batch_size: int, threads: int
    ) -> None:
        self.head = head
        self.preprocessing = preprocessing
        self.engine = OnnxEngine(graph, (batch_size,), threads=threads)
        size = preprocessing.input_size
        self._floats = np.empty((batch_size, 3, size, size), np.float32)  # reused every batch

    def __call__(self, batch: Batch) -> pa.Table:
        errors = [str(e) for e in batch["error"]]
        ok = np.array([not e for e in errors], dtype=bool)
        n = len(errors)
        outputs: list[np.ndarray] = [np.zeros((0, 0), np.float32)]
        if ok.any():
            pixels = np.asarray(batch["pixels"])[ok]
            buffer = self._floats[: len(pixels)] if len(pixels) <= len(self._floats) else None
            images = normalise(pixels, self.preprocessing, out=buffer)
            outputs = self.engine.outputs(images, self.head.outputs)
        columns: dict[str, list | np.ndarray] = {
            "index": np.asarray(batch["index"], np.int64),
            "path": [str(p) for p in batch["path"]],
        }
        columns |= self.head.columns(n, ok, outputs)
        if "facts" in batch:
            columns["facts"] = [str(f) or None for f in batch["facts"]]
        columns["error"] = [e or None for e in errors]
        schema = self.head.schema.insert(0, pa.field("index", pa.int64()))
        return pa.table({name: columns[name] for name in schema.names}, schema=schema)


def source_batches(sources: Sequence[str], batch_size: int, start: int = 0) -> Iterator[Batch]:
    """The job's input as column batches of `batch_size` (index, path)."""
    for first in range(0, len(sources), max(1, batch_size)):
        chunk = sources[first : first + batch_size]
        indices = np.arange(start + first, start + first + len(chunk), dtype=np.int64)
        yield {"index": indices, "path": np.array(chunk, dtype=object)}


def run_local(
    sources: Sequence[str],
    decode: Callable[[Batch], Batch],
    runner: Callable[[Batch], pa.Table],
    batch_size: int,
) -> Iterator[pa.Table]:
    """The two stages in this process: the next batch decodes in a thread while this one runs
    (at most two batches of pixels alive), tables in input order."""
    batches = source_batches(sources, batch_size)
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = next(batches, None)
        pending: Future[Batch] | None = pool.submit(decode, first) if first else None
        while pending is not None:
            decoded = pending.result()
            following = next(batches, None)
            pending = pool.submit(decode, following) if following is not None else None
            yield runner(decoded)
