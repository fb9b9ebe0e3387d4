"""Disk shards: a dataset bigger than memory as pre-resized JPEGs in tar files, plus an index.

The RAM cache (data/cache.py) keeps ~200 KB of decoded pixels per image; 100 000 images would
need 20 GB. A shards folder keeps each image once, already EXIF-rotated and shrunk so its short
side is `image_size` (never enlarged), as a quality-90 RGB JPEG (~20-40 KB), and training
decodes it again on every access (data/shard_reader.py), which costs a small JPEG decode.

The folder (docs/scaling.md):
- `shard-000000.tar`, ...: plain POSIX tars in the WebDataset convention, two members per
  record, `<key>.jpg` and `<key>.json` ({"path", "label", "split"}), so the `webdataset`
  library and `tar` itself read them;
- `shard-000000.json`: the sidecar of each finished shard (its inputs, settings and
  records). It is kept: a second run into the same folder reuses every shard whose inputs
  and settings are unchanged, which is how an interrupted run resumes. Edited photos under
  unchanged names are not noticed; `overwrite=True` writes everything again;
- `records.jsonl`: one line per image in dataset order, with where its JPEG bytes are
  (shard, byte offset, size, CRC-32) and the audit's facts about the original file;
- `imgrec-shards.json`, the index, written last and atomically: its presence means the
  folder is complete.

Why not read them with webdataset's IterableDataset or LitData's streaming dataset: DDP
needs every rank to get the same number of batches from a seeded sampler (a map-style
dataset with DistributedSampler does exactly that), and evaluation and the audit need
records by index. Byte offsets in the index give both, with one `pread` per image.

Writing runs one task per shard (data/shard_tar.py) in a process pool: Pillow releases the GIL
while it decodes and encodes, but the audit facts (statistics, perceptual hash) and the Python
around each image do not, so processes scale where threads would queue. A task
returns counts only; records travel through the sidecars, so memory stays flat. Reading is in
data/shard_reader.py.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import pickle
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.progress import Progress

from imgrec.data.cache_policy import DEFAULT_SHARD_SIZE
from imgrec.data.dataset import Dataset, Skipped
from imgrec.data.shard_tar import (
    FORMAT,
    OURS,
    RECORDS_FILE,
    SHARD_INDEX,
    VERSION,
    ShardDone,
    ShardInput,
    ShardSettings,
    ShardTask,
    atomic_text,
    finished_shard,
    read_local,
    read_sidecar,
    shard_name,
    write_json_atomic,
    write_shard,
)
from imgrec.errors import ImgrecError
from imgrec.text import shown

__all__ = [
    "SHARD_INDEX",
    "ShardInput",
    "ShardManifest",
    "inputs_from_dataset",
    "read_local",
    "write_shards",
]

MIN_IMAGE_SIZE = 32


@dataclass(frozen=True)
class ShardManifest:
    """A finished shards folder: its index, and what this call wrote or found done."""

    folder: Path
    index: dict[str, Any]
    written: int  # shards written by this call
    reused: int  # shards an earlier call had finished with the same inputs and settings
    seconds: float

    @property
    def images(self) -> int:
        return int(self.index["images"])

    @property
    def shards(self) -> int:
        return len(self.index["shards"])

    @property
    def bytes(self) -> int:
        return sum(int(s["bytes"]) for s in self.index["shards"])

    @property
    def skipped(self) -> list[Skipped]:
        return [Skipped(Path(s["path"]), s["reason"]) for s in self.index["skipped"]]


def inputs_from_dataset(dataset: Dataset) -> list[ShardInput]:
    """A listed local dataset as writer inputs, paths relative to its root, in its order."""
    return [
        ShardInput(str(s.path), dataset.relative(s.path), s.label, s.split) for s in dataset.samples
    ]


def write_shards(
    inputs: Sequence[ShardInput],
    out: Path,
    image_size: int = DEFAULT_SHARD_SIZE,
    *,
    read: Callable[[str], bytes] = read_local,
    workers: int | None = None,
    images_per_shard: int | None = None,
    with_facts: bool = True,
    quality: int = 90,
    source: str = "",
    progress: bool = False,
    overwrite: bool = False,
    skipped: Sequence[Skipped] = (),
) -> ShardManifest:
    """Write `inputs` as shards into `out` and return the finished index.

    `read` is a picklable module-level function (worker processes call it) that returns the
    bytes of `ShardInput.source`; it raises UnreadableImage or OSError for a file to skip,
    anything else stops the writing. Shards an interrupted run finished are reused.
    `skipped` are files the listing already left out, recorded in the index with the rest.
    """
    images_per_shard = images_per_shard or default_shard_images(len(inputs))
    _check_settings(image_size, images_per_shard, quality)
    out, inputs = Path(out), list(inputs)
    if not inputs:
        raise ImgrecError("There are no images to write as shards.")
    _prepare_folder(out, source, image_size, overwrite)
    settings = ShardSettings(image_size, quality, with_facts)
    step = images_per_shard
    tasks = [
        ShardTask(k, out, inputs[start : start + step], settings, read)
        for k, start in enumerate(range(0, len(inputs), step))
    ]
    started = time.perf_counter()
    done = {t.shard: d for t in tasks if (d := finished_shard(t)) is not None}
    todo = [t for t in tasks if t.shard not in done]
    already = sum(len(t.inputs) for t in tasks if t.shard in done)
    done.update(_run(todo, workers, progress, len(inputs), already))
    header = {
        "image_size": image_size,
        "classes": sorted({i.label for i in inputs}),
        "source": source,
        "quality": quality,
    }
    index = _finish(out, tasks, done, header, [[s.path.as_posix(), s.reason] for s in skipped])
    seconds = time.perf_counter() - started
    return ShardManifest(out, index, len(todo), len(tasks) - len(todo), seconds)


MOST_PER_SHARD = 1000
LEAST_TASKS = 16


def default_shard_images(images: int) -> int:
    """1,000 images a shard, fewer for a small dataset: at least 16 shards when there are at
    least 800 images, so no core idles while the last shard is written (3 shards on 2 cores
    leave one idle for a third of the time; benchmarks/scale.py measures both). A function of
    the count alone, so a rerun with other workers still finds its finished shards."""
    return min(MOST_PER_SHARD, max(50, -(-images // LEAST_TASKS)))


def _check_settings(image_size: int, images_per_shard: int, quality: int) -> None:
    if image_size < MIN_IMAGE_SIZE:
        raise ImgrecError(
            f"An image size of {image_size} px is too small; use {MIN_IMAGE_SIZE} or more."
        )
    if images_per_shard < 1:
        raise ImgrecError(f"images_per_shard must be 1 or more; got {images_per_shard}.")
    if not 1 <= quality <= 100:
        raise ImgrecError(f"JPEG quality must be from 1 to 100; got {quality}.")


def _prepare_folder(out: Path, source: str, image_size: int, overwrite: bool) -> None:
    """Make `out` ready: refuse a file, a folder of other things, or another complete shard
    set (unless `overwrite`); then remove the index, so the folder reads as unfinished."""
    if out.exists() and not out.is_dir():
        raise ImgrecError(f"{out} is a file; the shards need a folder (a new or empty one).")
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n in os.listdir(out) if not n.startswith(".")]
    others = sorted(n for n in names if not OURS.fullmatch(n))
    if others:
        raise ImgrecError(
            f"{out} holds files that are not shards (for example {shown(others[0])}); "
            "write the shards into a new or empty folder."
        )
    old = _read_index(out / SHARD_INDEX)
    if old is not None and not overwrite and not _same_set(old, source, image_size):
        raise ImgrecError(
            f"{out} already holds shards of {shown(old.get('source') or 'other images')} "
            f"at {old.get('image_size')} px; overwrite them (--overwrite) or choose "
            "another folder."
        )
    for name in names:
        if overwrite or name in (SHARD_INDEX, RECORDS_FILE):
            (out / name).unlink()


def _read_index(path: Path) -> dict[str, Any] | None:
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # a damaged index: another set, as far as anyone can tell
    return index if isinstance(index, dict) else {}


def _same_set(index: dict[str, Any], source: str, image_size: int) -> bool:
    return index.get("source") == source and index.get("image_size") == image_size


# ---- running the tasks: in worker processes, or here when one worker is enough --------------
_images_done: Any = None  # a counter shared with the parent, set in every worker


def _start_worker(counter: Any) -> None:
    """Worker set-up: the shared counter; Ctrl-C is the parent's to handle (it stops us)."""
    global _images_done
    _images_done = counter
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _count_one() -> None:
    with _images_done.get_lock():
        _images_done.value += 1


def _write_counted(task: ShardTask) -> ShardDone:
    return write_shard(task, _count_one)


def _run(
    todo: list[ShardTask], workers: int | None, progress: bool, total: int, already: int
) -> dict[int, ShardDone]:
    """Write the `todo` shards, one task per shard; a Rich bar counts images."""
    n = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    with _bar(progress, total, already) as show:
        if n == 1 or not todo:  # no process start-up; Ctrl-C stops at once
            count = iter(range(1, total + 1))
            return {t.shard: write_shard(t, lambda: show(next(count))) for t in todo}
        return _run_processes(todo, n, show)


def _run_processes(
    todo: list[ShardTask], n: int, show: Callable[[int], None]
) -> dict[int, ShardDone]:
    """The shards in `n` worker processes, started with "spawn": never a fork of a process
    that may hold threads and torch, and (unlike "forkserver", whose server keeps the
    environment it started with) each sees the credentials set now. On any error or Ctrl-C
    the workers stop."""
    try:
        pickle.dumps(todo[0].read)
    except (pickle.PicklingError, AttributeError, TypeError):
        raise ImgrecError(
            f"The shard writer's `read` ({todo[0].read!r}) cannot reach worker processes; "
            "pass a module-level function, or workers=1."
        ) from None
    context = multiprocessing.get_context("spawn")
    counter = context.Value("q", 0)
    pool = ProcessPoolExecutor(n, context, initializer=_start_worker, initargs=(counter,))
    done: dict[int, ShardDone] = {}
    try:
        pending = {pool.submit(_write_counted, task) for task in todo}
        while pending:
            finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for future in finished:
                result = future.result()
                done[result.shard] = result
            show(counter.value)
    except BrokenProcessPool:
        raise ImgrecError(
            "A process writing shards stopped unexpectedly (out of memory?); run the same "
            "command again to resume, with fewer --workers."
        ) from None
    except BaseException:
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()  # what they were writing stays .part, redone on resume
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return done


@contextlib.contextmanager
def _bar(enabled: bool, total: int, already: int) -> Iterator[Callable[[int], None]]:
    """A transient Rich bar of images written (nothing when not `enabled`)."""
    if not enabled:
        yield lambda _: None
        return
    with Progress(transient=True) as bar:
        task = bar.add_task("Writing shards", total=total, completed=already)
        yield lambda n: bar.update(task, completed=already + n)


# ---- finishing: records.jsonl and the index, written last -----------------------------------
def _finish(
    out: Path,
    tasks: list[ShardTask],
    done: dict[int, ShardDone],
    header: dict[str, Any],
    skipped: list[list[str]],
) -> dict[str, Any]:
    """Write records.jsonl from the sidecars, drop files of older, longer runs, then the index."""
    images = sum(d.images for d in done.values())
    skipped = skipped + [s for t in tasks for s in done[t.shard].skipped]
    if images == 0:
        path, reason = skipped[0] if skipped else ("?", "?")
        raise ImgrecError(
            f"None of the {len(skipped)} images could be read (for example {shown(path)}: "
            f"{shown(reason)}); no shards were written."
        )
    with atomic_text(out / RECORDS_FILE) as f:
        for task in tasks:
            for record in read_sidecar(out, task.shard)["records"]:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
    _remove_leftovers(out, len(tasks))
    index = {
        "format": FORMAT,
        "version": VERSION,
        **header,
        "images": images,
        "shards": [
            {
                "file": shard_name(t.shard),
                "images": done[t.shard].images,
                "bytes": done[t.shard].bytes,
            }
            for t in tasks
        ],
        "skipped": [{"path": p, "reason": r} for p, r in skipped],
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json_atomic(out / SHARD_INDEX, index)
    return index


def _remove_leftovers(out: Path, shards: int) -> None:
    """Unfinished shards, temporary files and the shards of an earlier, longer set."""
    for name in os.listdir(out):
        match = OURS.fullmatch(name)
        if match and (
            match.group(3) or name.endswith(".part") or int(match.group(2) or -1) >= shards
        ):
            (out / name).unlink(missing_ok=True)
