"""Micro-batching: requests that arrive within a few milliseconds share one forward pass.

A forward pass over 16 images costs far less than 16 passes over one, so under load the
server collects whatever is queued (up to `max_batch` images or `max_wait_s`) and runs it
as one batch. All inference happens on one worker thread: torch already uses every core
inside an operation, and two passes at once would only fight over them.

A batch's result is a tuple of per-image arrays (probabilities, and the drift signatures the
prediction log keeps), each sliced back to the callers row by row.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

# One array (or None) per output, each with one row per image of the batch.
Outputs = tuple[np.ndarray | None, ...]


@dataclass
class _Job:
    images: torch.Tensor  # (n, 3, S, S)
    future: asyncio.Future[Outputs]


class MicroBatcher:
    """Collect image tensors from concurrent callers and run them through `run_batch` together.

    `run_batch` maps an (N, 3, S, S) tensor to a tuple of arrays with N rows each (or None
    for an output it does not have); it runs on a single worker thread, never on the event
    loop, so the server keeps accepting requests meanwhile.
    """

    def __init__(
        self,
        run_batch: Callable[[torch.Tensor], Outputs],
        max_batch: int = 32,
        max_wait_s: float = 0.005,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.run_batch = run_batch
        self.max_batch = max(1, max_batch)
        self.max_wait_s = max(0.0, max_wait_s)
        self.on_batch = on_batch
        self._pending: deque[_Job] = deque()
        self._arrived = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imgrec-infer")
        self._task = asyncio.create_task(self._serve_forever(), name="imgrec-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for job in self._pending:
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))
        self._pending.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def predict(self, images: torch.Tensor) -> Outputs:
        """`run_batch`'s outputs for `images`, computed in whichever batch they end up in."""
        if self._task is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        self._pending.append(_Job(images, future))
        self._arrived.set()
        return await future

    async def _serve_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            jobs = await self._collect(loop)
            batch = torch.cat([job.images for job in jobs]) if len(jobs) > 1 else jobs[0].images
            try:
                outputs = await loop.run_in_executor(self._executor, self.run_batch, batch)
            except Exception as exc:  # reported to every caller of this batch
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            if self.on_batch is not None:
                self.on_batch(len(batch))
            start = 0
            for job in jobs:
                end = start + len(job.images)
                if not job.future.done():  # the client may have gone away
                    job.future.set_result(
                        tuple(None if out is None else out[start:end] for out in outputs)
                    )
                start = end

    async def _collect(self, loop: asyncio.AbstractEventLoop) -> list[_Job]:
        """Take queued jobs until the batch is full or the first job has waited max_wait_s."""
        jobs = [self._pending.popleft()]
        count = len(jobs[0].images)
        deadline = loop.time() + self.max_wait_s
        while count < self.max_batch:
            if self._pending:
                if count + len(self._pending[0].images) > self.max_batch:
                    break
                job = self._pending.popleft()
                jobs.append(job)
                count += len(job.images)
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
        return jobs
