"""Starting a training run as several processes: torchrun's elastic agent, run for the user.

`imgrec train DATA --devices 2` is `torchrun --standalone --nproc-per-node 2 -m imgrec train
DATA --devices 2`: the same agent people start by hand on a cluster, so the processes
and their environment are exactly what torchrun, SLURM or a Kubernetes operator give
(train/distributed.py reads them). With `--num-nodes M`, the command runs on each machine
with MASTER_ADDR, MASTER_PORT and NODE_RANK set, as torchrun's static rendezvous expects.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from imgrec.errors import ImgrecError
from imgrec.train import distributed

DEFAULT_PORT = 29500


def needs_launch(devices: int, num_nodes: int) -> bool:
    """Whether this command must start the processes itself (no launcher started it)."""
    return devices * num_nodes > 1 and not distributed.launched()


def check_world(devices: int, num_nodes: int) -> None:
    """Under a launcher, --devices and --num-nodes must describe the job it started."""
    if not distributed.launched():
        return
    world = distributed.current()
    if (world.local_size, world.nodes) != (devices, num_nodes):
        raise ImgrecError(
            f"the launcher started {world.nodes} node(s) x {world.local_size} process(es), but "
            f"the command says --num-nodes {num_nodes} --devices {devices}; make them agree."
        )


def launch(devices: int, num_nodes: int, argv: Sequence[str]) -> None:
    """Run `python -m imgrec <argv>` as devices x num_nodes processes under torchrun's agent;
    returns when they all finished, raises ImgrecError (one sentence) when one failed."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = ["--nproc-per-node", str(devices), "--nnodes", str(num_nodes), *_rendezvous(num_nodes)]
    _quiet_agent()
    _threads_per_process(devices)
    try:
        run(get_args_parser().parse_args([*args, "-m", "imgrec", *argv]))
    except ChildFailedError as failed:
        rank, failure = min(failed.failures.items())
        how = (
            f"was killed by signal {-failure.exitcode}"
            if failure.exitcode < 0
            else f"exited with code {failure.exitcode}"
        )
        raise ImgrecError(
            f"training process {rank} of {devices * num_nodes} {how}; finished epochs are kept "
            "in the run folder (continue with --resume)."
        ) from None


def _rendezvous(num_nodes: int) -> list[str]:
    """One machine: torchrun's standalone rendezvous on a free local port. Several: the
    static one at MASTER_ADDR:MASTER_PORT, this machine being NODE_RANK."""
    if num_nodes == 1:
        return ["--standalone"]
    missing = [name for name in ("MASTER_ADDR", "NODE_RANK") if not os.environ.get(name)]
    if missing:
        raise ImgrecError(
            f"--num-nodes {num_nodes} needs {' and '.join(missing)} set on every machine "
            "(MASTER_ADDR: node 0's address; NODE_RANK: 0 there, 1, 2, ... elsewhere; "
            f"MASTER_PORT: default {DEFAULT_PORT}), or start imgrec with torchrun or srun."
        )
    node_rank = os.environ["NODE_RANK"]
    if not node_rank.isdigit() or int(node_rank) >= num_nodes:
        raise ImgrecError(f"NODE_RANK must be 0 to {num_nodes - 1}, got '{node_rank[:20]}'.")
    return [
        "--node-rank",
        node_rank,
        "--master-addr",
        os.environ["MASTER_ADDR"],
        "--master-port",
        os.environ.get("MASTER_PORT", str(DEFAULT_PORT)),
    ]


def _quiet_agent() -> None:
    """The agent's own log lines (rendezvous, worker groups) are for debugging torchrun."""
    for name in ("torch.distributed.elastic", "torch.distributed.run", "torch.distributed"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _threads_per_process(devices: int) -> None:
    """torchrun gives every process one thread unless told; on a CPU the processes share
    the cores instead (each process's torch then uses its part)."""
    if "OMP_NUM_THREADS" not in os.environ:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        os.environ["OMP_NUM_THREADS"] = str(max(1, (cores or os.cpu_count() or 1) // devices))
