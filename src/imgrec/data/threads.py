"""Per-file work in a thread pool, results as they finish: decoding, hashing and scanning.

PIL and hashlib release the GIL while they work, so threads use every core without the
start-up and copying costs of processes. A file that cannot be read is a result, not an error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from typing import TypeVar

from rich.progress import Progress

from imgrec.data.decode import UnreadableImage

T = TypeVar("T")


def run_threaded(
    fn: Callable[[int], T],
    n: int,
    workers: int | None = None,
    progress: bool = False,
    description: str = "Decoding images",
) -> Iterator[tuple[int, T | UnreadableImage]]:
    """Yield (index, result or UnreadableImage) for fn(0..n-1) as threads finish; Ctrl-C
    cancels what has not started."""
    pool = ThreadPoolExecutor(max_workers=max(1, workers or os.cpu_count() or 1))
    try:
        futures: dict[Future[T], int] = {pool.submit(fn, i): i for i in range(n)}
        with _progress_bar(progress, n, description) as advance:
            for future in as_completed(futures):
                try:
                    result: T | UnreadableImage = future.result()
                except UnreadableImage as exc:
                    result = exc
                advance()
                yield futures[future], result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _progress_bar(enabled: bool, total: int, description: str) -> Iterator[Callable[[], None]]:
    if not enabled:
        yield lambda: None
        return
    with Progress(transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)
