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
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from imgrec.errors import ImgrecError
from imgrec.runtime import usable_cpus
from imgrec.train import distributed

DEFAULT_PORT = 29500
NOTES_ENV = "IMGREC_LAUNCH_NOTES"  # where launched processes leave their error sentence


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
    returns when they all finished, raises ImgrecError (one sentence) when one failed.

    Only local rank 0 writes to this terminal (progress, the summary); the others' output
    goes to log files, so a failure they all meet (say, a missing folder) reads once. When
    a process other than rank 0 failed alone, its own error line is the one shown."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    logs = Path(tempfile.mkdtemp(prefix="imgrec-launch-"))
    args = [
        *("--nproc-per-node", str(devices), "--nnodes", str(num_nodes)),
        *_rendezvous(num_nodes),
        *_quiet_others(devices, logs),
    ]
    _quiet_agent()
    _threads_per_process(devices)
    os.environ[NOTES_ENV] = str(logs)
    try:
        run(get_args_parser().parse_args([*args, "-m", "imgrec", *argv]))
    except ChildFailedError as failed:
        raise _failure(failed, devices * num_nodes, logs) from None
    finally:
        shutil.rmtree(logs, ignore_errors=True)


def _quiet_others(devices: int, logs: Path) -> list[str]:
    """Local rank 0 keeps the terminal (its progress bars need one); the others write to
    their log files only."""
    if devices == 1:
        return []
    others = ",".join(f"{r}:3" for r in range(1, devices))  # 3: stdout and stderr
    return ["--log-dir", str(logs), "--redirects", others]


def _failure(failed, size: int, notes: Path) -> BaseException:
    """The error to end on: nothing more when local rank 0 printed one (it is on the terminal
    already), else the error of the first local process that noted one, else how the first
    process ended (killed by a signal, say)."""
    if (notes / "error-0.txt").exists():
        return SystemExit(1)
    for note in sorted(notes.glob("error-*.txt"), key=lambda p: int(p.stem.split("-")[1])):
        return ImgrecError(note.read_text(encoding="utf-8"))
    rank, failure = min(failed.failures.items())
    how = (
        f"was killed by signal {-failure.exitcode}"
        if failure.exitcode < 0
        else f"exited with code {failure.exitcode}"
    )
    return ImgrecError(
        f"training process {rank} of {size} {how}; finished epochs are kept in the run folder "
        "(continue with --resume)."
    )


def note_error(message: str) -> None:
    """Called by the CLI as a process it launched ends on an error: the launcher then shows
    one process's sentence, not one per process."""
    folder = os.environ.get(NOTES_ENV)
    if folder:
        local_rank = os.environ.get("LOCAL_RANK", "0")
        Path(folder, f"error-{local_rank}.txt").write_text(message, encoding="utf-8")


def check_distributable(model: str) -> None:
    """Refuse, before any process starts, a family that trains in one process only."""
    from imgrec.models.families import get_family

    if get_family(model).traits.sklearn:
        raise ImgrecError(
            f"{model} is fitted by scikit-learn in one process; train it without "
            "--devices/--num-nodes (they split deep-network training across processes)."
        )


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
        os.environ["OMP_NUM_THREADS"] = str(max(1, usable_cpus() // devices))
