"""Training as several processes (DDP over gloo on this CPU), started as a user starts it.

`imgrec train --devices 2` runs torchrun's agent, which starts two real processes; they
find each other over loopback TCP. The checks: each process ran half of every epoch, the
model is as good as one process's with the same seed, and the run folder is written once.
"""

from __future__ import annotations

import json
import math
import os

import pytest
from runhelpers import (
    SAMPLE,
    assert_user_error,
    epochs_by_phase,
    read_csv,
    run_imgrec,
)


def _metrics(folder) -> dict:
    return json.loads((folder / "metrics.json").read_text())


@pytest.mark.slow
def test_two_processes_train_the_model_one_process_trains(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    flags = ["--epochs", "2", "--seed", "3", "-q"]
    single = run_imgrec("train", SAMPLE, "--out", one, *flags)
    assert single.returncode == 0, single.stderr
    double = run_imgrec("train", SAMPLE, "--out", two, "--devices", "2", *flags)
    assert double.returncode == 0, double.stderr
    assert "Traceback" not in double.stderr

    # rank 0 reported once and wrote one run folder; the other process wrote nothing there
    assert double.stdout.count("done test accuracy") == 1
    assert epochs_by_phase(two / "checkpoints" / "history.csv")["finetune"] == [1, 2]
    assert sorted(p.name for p in two.glob("*.imgrec")) == ["model.imgrec"]
    assert not list(tmp_path.glob("**/imgrec-rank*"))

    # each process ran its half of every epoch: half the images, in half-size batches
    train_images = sum(row["split"] == "train" for row in read_csv(two / "split.csv"))
    batch = json.loads((two / "config.json").read_text())["batch_size"]
    per_process = 2 * math.ceil(math.ceil(train_images / 2) / math.ceil(batch / 2))
    finetune = _metrics(two)["phases"]["finetune"]
    assert finetune["batches_per_process"] == [per_process, per_process]

    # the same split, and a model within 2 points of the single process's
    assert read_csv(one / "split.csv") == read_csv(two / "split.csv")
    assert abs(_metrics(one)["accuracy"] - _metrics(two)["accuracy"]) <= 0.02 + 1e-9
    loaded = run_imgrec("predict", two / "model.imgrec", SAMPLE / "val" / "ants", "-q")
    assert loaded.returncode == 0, loaded.stderr


def test_a_failure_every_process_meets_reads_once(tmp_path):
    result = run_imgrec("train", tmp_path / "missing", "--devices", "2", "--out", tmp_path / "r")
    assert_user_error(result, "does not exist")


def test_a_scikit_learn_family_is_refused_before_any_process_starts(tmp_path):
    result = run_imgrec(
        "train", SAMPLE, "--model", "svm-hog", "--devices", "2", "--out", tmp_path / "r"
    )
    assert_user_error(result, "svm-hog", "one process", "--devices")
    assert not (tmp_path / "r").exists()


def test_several_machines_need_the_rendezvous_address(tmp_path, monkeypatch):
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("NODE_RANK", "0")
    result = run_imgrec("train", SAMPLE, "--num-nodes", "2", "--out", tmp_path / "r")
    assert_user_error(result, "--num-nodes 2 needs MASTER_ADDR")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("NODE_RANK", "2")
    result = run_imgrec("train", SAMPLE, "--num-nodes", "2", "--out", tmp_path / "r")
    assert_user_error(result, "NODE_RANK must be 0 to 1")


def test_the_command_must_describe_the_job_its_launcher_started(tmp_path, monkeypatch):
    # what torchrun sets for one process of a 1-node, 1-process job
    for name, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    monkeypatch.setenv("GROUP_RANK", "0")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
    result = run_imgrec("train", SAMPLE, "--devices", "2", "--out", tmp_path / "r")
    assert_user_error(result, "the launcher started 1 node(s) x 1 process(es)", "--devices 2")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, (0, 0, 1, 0, 1)),
        (  # torchrun: node 1 of 2, 4 processes each
            {
                "TORCHELASTIC_RUN_ID": "job",
                "RANK": "6",
                "LOCAL_RANK": "2",
                "WORLD_SIZE": "8",
                "LOCAL_WORLD_SIZE": "4",
                "GROUP_RANK": "1",
            },
            (6, 2, 8, 1, 2),
        ),
        (  # srun under sbatch --nodes 2 --ntasks-per-node 4
            {
                "SLURM_NTASKS": "8",
                "SLURM_PROCID": "5",
                "SLURM_LOCALID": "1",
                "SLURM_NODEID": "1",
                "SLURM_NTASKS_PER_NODE": "4(x2)",
                "SLURM_JOB_NAME": "train",
                "SLURM_NODELIST": "gpu[1-2]",
                "SLURM_JOB_ID": "7",
            },
            (5, 1, 8, 1, 2),
        ),
    ],
)
def test_a_process_knows_its_place_from_the_launchers_variables(monkeypatch, env, expected):
    from imgrec.train import distributed

    for name in list(os.environ):
        if name.startswith(("SLURM_", "TORCHELASTIC_")) or name in distributed.LAUNCH_VARIABLES:
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    world = distributed.current()
    assert (world.rank, world.local_rank, world.size, world.node_rank, world.nodes) == expected
    assert world.local_size == expected[2] // expected[4]
