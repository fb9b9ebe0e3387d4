"""Training on two machines over a real network: two network namespaces joined by a veth
pair, one `imgrec train --num-nodes 2` in each, as a user runs it on two hosts (MASTER_ADDR
on node 0's address, NODE_RANK 0 and 1); they meet through torchrun's static rendezvous and
train over gloo across the veth. The run folder is on the filesystem both share here, as it
must be on a cluster for --resume.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import pytest
from netns import free_port, needs_namespaces, two_hosts_fixture  # noqa: F401
from runhelpers import SAMPLE, cli_env, epochs_by_phase, run_imgrec, squash

pytestmark = [needs_namespaces, pytest.mark.slow]


def _start(host, node_rank: int, master, port: int, *args, log):
    env = {**cli_env(), "MASTER_ADDR": master.address, "MASTER_PORT": str(port)}
    env["NODE_RANK"] = str(node_rank)
    env["OMP_NUM_THREADS"] = "1"  # two "machines" share this one's cores
    command = [sys.executable, "-m", "imgrec", "train", *(str(a) for a in args)]
    return host.run(command, env=env, stdout=log, stderr=log, text=True)


def _both(hosts, tmp_path, name: str, *args):
    """Start node 0 and node 1 of the same command; (processes, logs)."""
    head, worker = hosts
    port = free_port(head)
    logs = [open(tmp_path / f"{name}-node{n}.log", "w") for n in (0, 1)]  # noqa: SIM115
    flags = ["--devices", "1", "--num-nodes", "2", "-q", *args]
    procs = [
        _start(host, n, head, port, *flags, log=logs[n]) for n, host in enumerate((head, worker))
    ]
    return procs, logs


def _wait(procs, logs, timeout: float = 300) -> list[int]:
    try:
        return [p.wait(timeout=timeout) for p in procs]
    finally:
        for log in logs:
            log.close()


def test_a_node_killed_mid_epoch_stops_the_other_and_the_run_resumes(two_hosts, tmp_path):
    """Two nodes train one model; one dies mid-epoch, the other stops and says how to go on,
    and the resumed run on both nodes finishes the same run folder."""
    run = tmp_path / "run"
    history = run / "checkpoints" / "history.csv"
    procs, logs = _both(
        two_hosts, tmp_path, "first", SAMPLE, "--out", run, "--epochs", "2", "--patience", "2"
    )  # killed in epoch 2 (an epoch takes seconds here), which the resumed run then trains
    deadline = time.monotonic() + 240
    while not (history.exists() and "finetune" in history.read_text()):
        assert time.monotonic() < deadline, "no fine-tuning epoch finished in 4 minutes"
        assert all(p.poll() is None for p in procs), "a node ended before being killed"
        time.sleep(0.2)
    time.sleep(1.0)  # into the next epoch
    for pid in two_hosts[1].pids():  # node 1 goes down: its agent and its training process
        os.kill(pid, signal.SIGKILL)
    codes = _wait(procs, logs, timeout=120)
    head_log = (tmp_path / "first-node0.log").read_text()
    assert codes[0] == 1, head_log
    assert "Traceback" not in head_log, head_log
    errors = [line for line in head_log.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, head_log
    assert "another training process stopped" in errors[0]
    assert "--resume" in squash(errors[0])
    done_before = epochs_by_phase(history)["finetune"]

    procs, logs = _both(two_hosts, tmp_path, "resumed", "--resume", run)
    codes = _wait(procs, logs)
    texts = [(tmp_path / f"resumed-node{n}.log").read_text() for n in (0, 1)]
    assert codes == [0, 0], texts
    finetune = epochs_by_phase(history)["finetune"]
    assert finetune[: len(done_before)] == done_before  # kept, not repeated
    assert finetune == list(range(1, len(finetune) + 1)) and len(finetune) > len(done_before)

    # one model for both nodes: node 0 reports, each node ran its half of every epoch
    assert "done test accuracy" in texts[0] and "done" not in texts[1]
    phases = json.loads((run / "metrics.json").read_text())["phases"]
    batches = phases["finetune"]["batches_per_process"]
    assert len(batches) == 2 and len(set(batches)) == 1  # one process on each host
    loaded = run_imgrec("predict", run / "model.imgrec", SAMPLE / "val" / "bees", "-q")
    assert loaded.returncode == 0, loaded.stderr
