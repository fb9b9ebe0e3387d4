"""Who this process is in a multi-process training run, and the few collectives imgrec needs.

imgrec never launches or connects processes itself: torchrun (`imgrec train --devices N`
runs it for you), SLURM's srun or a Kubernetes operator start one process per device and
describe the job in environment variables; Lightning's cluster environments read them, as
Lightning's own DDP does. Every process runs the whole `train_run`; rank 0 alone audits,
splits, plans and writes the run folder, and the others follow what it broadcasts, so two
processes never decide differently (which would leave one waiting forever in a collective).
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

from imgrec.errors import ImgrecError

T = TypeVar("T")

# How long a process waits for the others in one collective. Rank 0 audits and plans while
# the rest wait, so it must cover that; a process that dies closes its sockets, which the
# others notice at once, so this only bounds a peer that hangs.
TIMEOUT_ENV = "IMGREC_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800


@dataclass(frozen=True)
class World:
    """This process's place in the job: global rank, rank on its node, and the job's shape."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1
    node_rank: int = 0
    nodes: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def local_size(self) -> int:
        return self.size // self.nodes


SINGLE = World()
# what torchrun sets for each process it starts
LAUNCH_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK")


def launched() -> bool:
    """Whether a launcher (torchrun, srun with several tasks) started this process as one of
    several; cheap, so a plain `imgrec train` never imports Lightning's environments."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return True
    return int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in os.environ


def _environment():
    """Lightning's view of the launcher's variables (torchrun first, then SLURM)."""
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    if TorchElasticEnvironment.detect():
        return TorchElasticEnvironment()
    if SLURMEnvironment.detect():
        return SLURMEnvironment()
    raise ImgrecError(
        "RANK and WORLD_SIZE are set, but not by torchrun or SLURM: start the processes with "
        "torchrun (or `imgrec train --devices N`), or with srun under SLURM."
    )


def current() -> World:
    """This process's World: SINGLE unless a launcher started it as one of several."""
    if not launched():
        return SINGLE
    env = _environment()
    size = env.world_size()
    # SLURM writes tasks per node as "4" or "4(x2)"
    per_node = os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("SLURM_NTASKS_PER_NODE", "")
    local = int(re.match(r"\d*", per_node).group() or size)
    return World(
        rank=env.global_rank(),
        local_rank=env.local_rank(),
        size=size,
        node_rank=env.node_rank(),
        nodes=max(1, size // max(1, local)),
    )


def join(world: World) -> None:
    """Connect this process to the others (gloo on CPUs, NCCL on GPUs); a no-op alone or when
    already connected. Lightning's DDP then uses this process group as it finds it."""
    if not world.distributed or torch.distributed.is_initialized():
        return
    env = _environment()
    os.environ.setdefault("MASTER_ADDR", env.main_address)
    os.environ.setdefault("MASTER_PORT", str(env.main_port))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(world.local_rank)
    timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
    try:
        torch.distributed.init_process_group(
            backend, rank=world.rank, world_size=world.size, timeout=timeout
        )
    except (RuntimeError, ValueError) as exc:
        raise ImgrecError(
            f"process {world.rank} of {world.size} could not reach the others at "
            f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} ({first_line(exc)})."
        ) from None


def leave() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def broadcast(world: World, value: T) -> T:
    """Rank 0's `value` on every rank (any picklable object)."""
    if not world.distributed:
        return value
    box = [value if world.is_main else None]
    _collective(torch.distributed.broadcast_object_list, box, src=0)
    return box[0]


def decided_by_main(world: World, decide: Callable[[], T]) -> T:
    """`decide()` run on rank 0 only, its result (or its ImgrecError) on every rank: what
    depends on files only rank 0 writes, or on one draw of the clock."""
    if not world.distributed:
        return decide()
    outcome: tuple[str, object] = ("", None)
    if world.is_main:
        try:
            outcome = ("ok", decide())
        except ImgrecError as exc:
            outcome = ("error", str(exc))
    kind, value = broadcast(world, outcome)
    if kind == "error":
        raise ImgrecError(str(value))
    return value  # type: ignore[return-value]


def gather_rows(world: World, rows: torch.Tensor, total: int) -> torch.Tensor | None:
    """Rows computed as each rank's `share` of `total` items, put back in item order on rank
    0 (rank r computed items r, r + size, r + 2 * size, ...); None on the other ranks, which
    need not hold them all."""
    if not world.distributed:
        return rows
    parts: list[torch.Tensor | None] | None = [None] * world.size if world.is_main else None
    _collective(torch.distributed.gather_object, rows.cpu(), parts, dst=0)
    if parts is None:
        return None
    out = torch.empty((total, *rows.shape[1:]), dtype=rows.dtype)
    for r, part in enumerate(parts):
        out[r :: world.size] = part
    return out


def share(world: World, items: list[T]) -> list[T]:
    """This rank's items: every size-th, starting at its rank (balanced to within one)."""
    return items[world.rank :: world.size] if world.distributed else items


def gather_objects(world: World, value: T) -> list[T]:
    """Every rank's `value`, in rank order, on every rank."""
    if not world.distributed:
        return [value]
    out: list = [None] * world.size
    _collective(torch.distributed.all_gather_object, out, value)
    return out


def _collective(op, *args, **kwargs) -> None:
    """A collective whose failure (a peer died or hung) is one sentence, not a traceback."""
    try:
        op(*args, **kwargs)
    except (RuntimeError, torch.distributed.DistError) as exc:
        raise PeerLost(f"another training process stopped or hung ({first_line(exc)})") from None


# What gloo and NCCL say when a peer's process or machine went away mid-collective.
_PEER_SIGNS = (
    "connection",
    "closed",
    "reset by peer",
    "timed out",
    "timeout",
    "broken pipe",
    "nccl",
)


def lost_peer(exc: BaseException) -> bool:
    """Whether an error raised inside training is a collective failing because another
    process died or stopped answering (not a bug to show as a traceback)."""
    if isinstance(exc, torch.distributed.DistError):
        return True
    text = str(exc).lower()
    return any(sign in text for sign in _PEER_SIGNS) and ("gloo" in text or "nccl" in text)


class PeerLost(ImgrecError):
    """A process of the job died or stopped answering; the run can be resumed."""


def first_line(exc: BaseException) -> str:
    """The gist of an error: its first line, without gloo's source location and advice
    ("[.../pair.cc:545] Read error ...: Connection reset by peer. This is typically ...")."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    if line.startswith("[") and "] " in line:
        line = line.split("] ", 1)[1]
    return line.split(". This is typically")[0][:200]
