"""A batch job over image sources into an output folder of parts, here or on a Ray cluster.

`imgrec predict --on ray` and `imgrec embed` run through `run_job`: list what the output
already holds (with resume), run the two stages of infer/stages.py over the rest (in this
process, or on Ray through infer/on_ray.py), and write the rows as parts while they come.
Ctrl-C writes the rows already answered before it stops, so `--resume` continues from them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from imgrec.config import PLACES
from imgrec.data.preprocess import Preprocessing
from imgrec.errors import ImgrecError
from imgrec.infer.on_ray import RayOptions, connect, run_on_ray
from imgrec.infer.parts import OutputParts
from imgrec.infer.predict import image_progress
from imgrec.infer.stages import DecodeStage, GraphRunner, Head, run_local
from imgrec.runtime import cpu_threads


@dataclass
class JobSummary:
    """What one job did: rows written (errors among them), sources an earlier run had done."""

    written: int = 0
    errors: int = 0
    already_done: int = 0
    seconds: float = 0.0
    parts: int = 0

    @property
    def images_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Job:
    """What to run: an ONNX graph, the head that makes rows of its outputs, the model's
    preprocessing, and whether the decoding stage also computes the audit's facts."""

    graph: bytes
    head: Head
    preprocessing: Preprocessing
    facts: bool = False


def run_job(
    job: Job,
    sources: Sequence[str],
    out: Path,
    *,
    fmt: str = "parquet",
    resume: bool = False,
    on: str = "local",
    options: RayOptions | None = None,
    rows_per_part: int = 10_000,
) -> JobSummary:
    """Answer every source once into `out`; see the module docstring."""
    options = options or RayOptions()
    parts = OutputParts(out, job.head.schema, fmt, resume=resume, rows_per_part=rows_per_part)
    summary = JobSummary()
    done = parts.done_sources() if resume else set()
    todo = [s for s in sources if s not in done]
    summary.already_done = len(sources) - len(todo)
    start = time.perf_counter()
    try:
        with image_progress(options.progress, len(todo), "Working") as advance:
            for table in tables_of(job, todo, on, options):
                parts.add(table.drop_columns(["index"]))
                summary.written += table.num_rows
                summary.errors += table.num_rows - pc.sum(pc.is_null(table["error"])).as_py()
                advance(table.num_rows)
    finally:
        parts.close()  # also on Ctrl-C or an error: the answered rows are kept
        summary.seconds = time.perf_counter() - start
        summary.parts = parts.parts_written
    return summary


def tables_of(job: Job, sources: Sequence[str], on: str, options: RayOptions) -> Iterator[pa.Table]:
    """The job's rows as tables (with `index`), from this process or from the cluster."""
    if on not in PLACES:
        raise ImgrecError(f"--on is one of {', '.join(PLACES)}, not '{on}'.")
    if not sources:
        return
    if on == "ray":
        decode = DecodeStage(job.preprocessing, job.facts)  # one thread: Ray scales by tasks
        started = connect(options.address)
        try:
            yield from run_on_ray(sources, job.graph, job.head, decode, options)
        finally:
            if started:
                import ray

                ray.shutdown()
        return
    threads = cpu_threads()
    runner = GraphRunner(job.graph, job.head, job.preprocessing, options.batch_size, threads)
    decode = DecodeStage(job.preprocessing, job.facts, threads)
    yield from run_local(sources, decode, runner, options.batch_size)
