"""The cluster examples (examples/) parse, use only flags `imgrec train` has, and describe one
job shape throughout: a launcher's nodes and processes per node must be the command's
--num-nodes and --devices (imgrec refuses to train otherwise), and the GPUs asked for must
match the processes. They cannot run here (no SLURM, no Kubernetes), so these checks are
what keeps them from going stale as the CLI changes.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import typer.main
import yaml

from imgrec.cli import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted([*EXAMPLES.rglob("*.sh"), *EXAMPLES.rglob("*.sbatch")])
SBATCH = EXAMPLES / "slurm" / "train.sbatch"
TORCHRUN = EXAMPLES / "torchrun.sh"
PYTORCHJOB = EXAMPLES / "kubernetes" / "pytorchjob.yaml"


def _train_options() -> set[str]:
    train = typer.main.get_command(app).commands["train"]
    return {opt for param in train.params for opt in (*param.opts, *param.secondary_opts)}


def _logical_lines(text: str) -> list[str]:
    """Shell lines with backslash continuations joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.strip() for line in joined.splitlines() if not line.lstrip().startswith("#")]


def _imgrec_words(lines: list[str]) -> list[str]:
    """The words given to `imgrec train`: after it on its line, and in the lines that build
    its arguments first (a bash array `what=(...)`, or `set -- ...` in POSIX sh)."""
    words = []
    for line in lines:
        if "imgrec train" in line:
            words += shlex.split(line.split("imgrec train", 1)[1])
        elif line.startswith("what=("):
            words += shlex.split(line.removeprefix("what=(").removesuffix(")"))
        elif line.startswith("set -- "):
            words += shlex.split(line.removeprefix("set -- "))
    return words


def _value(words: list[str], flag: str) -> str:
    assert flag in words, f"{flag} missing from {words}"
    return words[words.index(flag) + 1]


def _sbatch_options(text: str) -> dict[str, str]:
    options = {}
    for match in re.finditer(r"^#SBATCH --([\w-]+)(?:=(\S+))?", text, re.MULTILINE):
        options[match.group(1)] = match.group(2) or ""
    return options


def _container(job: dict) -> dict:
    (container,) = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"]
    return container


def _documents() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(PYTORCHJOB.read_text())}


def _pytorchjob_lines() -> list[str]:
    return _logical_lines("\n".join(_container(_documents()["PyTorchJob"])["args"]))


def _all_imgrec_words() -> dict[str, list[str]]:
    return {
        SBATCH.name: _imgrec_words(_logical_lines(SBATCH.read_text())),
        TORCHRUN.name: _imgrec_words(_logical_lines(TORCHRUN.read_text())),
        PYTORCHJOB.name: _imgrec_words(_pytorchjob_lines()),
    }


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_the_shell_scripts_parse(script):
    result = subprocess.run(["bash", "-n", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_the_examples_are_all_here():
    assert {p.name for p in SCRIPTS} == {"train.sbatch", "torchrun.sh"}
    assert set(_documents()) == {"PersistentVolumeClaim", "PyTorchJob"}


def test_the_examples_use_only_flags_imgrec_train_has():
    options = _train_options()
    for name, words in _all_imgrec_words().items():
        flags = {w for w in words if w.startswith("-")}
        assert {"--devices", "--num-nodes"} <= flags, name
        assert flags <= options, f"{name}: {sorted(flags - options)} are not imgrec train options"


def test_the_slurm_job_asks_for_what_the_command_says():
    text = SBATCH.read_text()
    sbatch = _sbatch_options(text)
    words = _imgrec_words(_logical_lines(text))
    assert sbatch["nodes"] == _value(words, "--num-nodes") == "2"
    assert sbatch["ntasks-per-node"] == sbatch["gpus-per-node"] == _value(words, "--devices")
    # a requeued job continues its run folder: Lightning's requeue signal, and --resume
    assert "requeue" in sbatch
    assert sbatch["signal"].startswith("USR1@")  # not B:USR1: the tasks must receive it
    assert "--resume" in words and "--out" in words
    assert sbatch["job-name"] not in ("bash", "interactive")  # Lightning ignores SLURM then
    srun = [line for line in _logical_lines(text) if line.startswith("srun ")]
    assert len(srun) == 1 and "imgrec train" in srun[0]


def test_the_torchrun_command_starts_what_imgrec_expects():
    (line,) = [line for line in _logical_lines(TORCHRUN.read_text()) if "imgrec train" in line]
    launcher, _ = line.split("imgrec train", 1)
    torchrun = shlex.split(launcher)
    words = _imgrec_words([line])
    assert torchrun[0] == "torchrun" and torchrun[-1] == "-m"
    assert _value(torchrun, "--nnodes") == _value(words, "--num-nodes") == "2"
    assert _value(torchrun, "--nproc-per-node") == _value(words, "--devices") == "4"
    assert _value(torchrun, "--rdzv-backend") == "c10d"
    assert _value(words, "--out") == "runs/big"


def test_the_pytorchjob_is_one_the_training_operator_runs():
    documents = _documents()
    job, claim = documents["PyTorchJob"], documents["PersistentVolumeClaim"]
    assert job["apiVersion"] == "kubeflow.org/v1"
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1
    nodes = sum(spec["replicas"] for spec in replicas.values())
    per_node = job["spec"]["nprocPerNode"]
    assert isinstance(per_node, str)  # the CRD's field is a string ("auto" or a number)
    container = _container(job)
    # the operator finds the container and the port by these names (MASTER_PORT, Service)
    assert container["name"] == "pytorch"
    assert [p["name"] for p in container["ports"]] == ["pytorchjob-port"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == int(per_node)
    # every replica runs the same pod, on the shared volume
    assert all(spec["template"] == replicas["Master"]["template"] for spec in replicas.values())
    volumes = replicas["Master"]["template"]["spec"]["volumes"]
    claims = [
        v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v
    ]
    assert claims == [claim["metadata"]["name"]]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]

    (line,) = [line for line in _pytorchjob_lines() if "imgrec train" in line]
    launcher = shlex.split(line.split("imgrec train", 1)[0])
    words = _imgrec_words(_pytorchjob_lines())
    assert launcher[:4] == ["exec", "python", "-m", "torch.distributed.run"]
    assert _value(launcher, "--nnodes") == _value(words, "--num-nodes") == str(nodes)
    assert _value(launcher, "--nproc-per-node") == _value(words, "--devices") == per_node
    # the operator's RANK is the pod's index: torchrun's node rank, not a process rank
    assert _value(launcher, "--node-rank") == "$RANK"
    assert _value(launcher, "--master-addr") == "$MASTER_ADDR"
