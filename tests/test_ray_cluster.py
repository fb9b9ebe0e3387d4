"""A two-node Ray cluster over a real network: `ray start --head` in one network namespace and
`ray start --address` in the other, joined by a veth pair (tests/netns.py), as a user starts
one on two machines. `imgrec predict --on ray --address` runs from the head's namespace; the
work must land on both nodes, and killing the worker node's raylet mid-job must still leave
every input answered exactly once.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from netns import needs_namespaces, two_hosts_fixture  # noqa: F401
from runhelpers import SAMPLE, cli_env
from servehelpers import small_model

from imgrec.infer.parts import read_parts

pytestmark = [needs_namespaces, pytest.mark.slow]
RAY = Path(sys.executable).with_name("ray")
PORT = 6379


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return small_model(tmp_path_factory.getbasetemp())


@pytest.fixture
def photos(tmp_path) -> Path:
    """The sample's photos, four times over (680 files): enough for a job that lasts a while."""
    folder = tmp_path / "photos"
    for n in range(4):
        for image in SAMPLE.rglob("*.jpg"):
            target = folder / image.parent.name / f"{n}-{image.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image, target)
    return folder


class Cluster:
    """A head node on hosts[0] and a worker node on hosts[1], one CPU each."""

    def __init__(self, hosts, tmp_path: Path) -> None:
        self.head, self.worker = hosts
        self.tmp = tmp_path
        self.env = {**cli_env(), "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
        # `ray start --head` on a network address turns on token authentication: every node
        # and every driver carries the cluster's token, as on real machines
        self.env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
        self.address = f"{self.head.address}:{PORT}"
        self.logs = []
        # Ray's socket paths must stay under 108 bytes: a short folder, not pytest's tmp_path
        self.temp = Path(tempfile.mkdtemp(prefix="imgrec-ray-"))

    def start(self) -> None:
        self._node(self.head, "head", "--head", f"--port={PORT}", "--include-dashboard=true")
        self._wait_for_nodes(1)
        self._node(self.worker, "worker", f"--address={self.address}")
        self._wait_for_nodes(2)

    def _node(self, host, name: str, *flags: str) -> None:
        log = open(self.tmp / f"ray-{name}.log", "w")  # noqa: SIM115 - closed with the test
        self.logs.append(log)
        command = [RAY, "start", "--block", "--num-cpus=1", f"--node-ip-address={host.address}"]
        command += [f"--temp-dir={self.temp / name}", "--disable-usage-stats", *flags]
        host.run(command, env=self.env, stdout=log, stderr=log, text=True)

    def nodes(self) -> list[dict]:
        """The cluster's nodes as Ray lists them (from the head's namespace)."""
        probe = (
            "import json, ray; ray.init(address=__import__('sys').argv[1], log_to_driver=False);"
            "print('NODES', json.dumps([{'id': n['NodeID'], 'ip': n['NodeManagerAddress'], "
            "'alive': n['Alive']} for n in ray.nodes()]))"
        )
        done = self.head.run_wait(
            [sys.executable, "-c", probe, self.address], env=self.env, timeout=60
        )
        # Ray may print its own lines around ours ("raylet has lagging heartbeats ...")
        found = [line[6:] for line in done.stdout.splitlines() if line.startswith("NODES ")]
        return json.loads(found[-1]) if done.returncode == 0 and found else []

    def _wait_for_nodes(self, n: int, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(node["alive"] for node in self.nodes()) >= n:
                return
            time.sleep(1)
        logs = [p.read_text()[-2000:] for p in sorted(self.tmp.glob("ray-*.log"))]
        raise AssertionError(f"the cluster did not reach {n} node(s): {logs}")

    def predict(self, model: Path, photos: Path, out: Path, *extra: str) -> subprocess.Popen:
        command = [sys.executable, "-m", "imgrec", "predict", str(model), str(photos)]
        command += ["--on", "ray", "--address", self.address, "--out", str(out), "-q", *extra]
        log = open(self.tmp / f"predict-{out.name}.log", "w")  # noqa: SIM115
        self.logs.append(log)
        return self.head.run(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def task_nodes(self) -> set[str]:
        """The node ids of the job's tasks and actors, from Ray's task records."""
        probe = (
            "import json, ray; from ray.util.state import list_tasks;"
            "ray.init(address=__import__('sys').argv[1], log_to_driver=False);"
            "tasks = list_tasks(limit=10000, raise_on_missing_output=False);"
            "print(json.dumps(sorted({t.node_id for t in tasks if t.node_id and "
            "'MapBatches' in t.name})))"
        )
        done = self.head.run_wait(
            [sys.executable, "-c", probe, self.address], env=self.env, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return set(json.loads(done.stdout.strip().splitlines()[-1]))

    def kill_worker_raylet(self) -> int:
        """kill -9 the worker node's raylet; how many processes were killed."""
        killed = 0
        for pid in self.worker.pids():
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"raylet/raylet" in command:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
            except OSError:
                continue  # gone already
        return killed

    def wait_for_alive(self, n: int, timeout: float = 90) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(node["alive"] for node in self.nodes()) == n:
                return True
            time.sleep(2)
        return False

    def close(self) -> None:
        for log in self.logs:
            log.close()
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture
def cluster(two_hosts, tmp_path):
    made = Cluster(two_hosts, tmp_path)
    try:
        made.start()
        yield made
    finally:
        made.close()


def _exactly_once(out: Path, photos: Path) -> None:
    rows = read_parts(out).to_pylist()
    paths = [r["path"] for r in rows]
    expected = {str(p) for p in photos.rglob("*.jpg")}
    assert len(paths) == len(set(paths)), "an input was answered twice"
    assert set(paths) == expected
    assert all(r["error"] is None and r["label"] in ("ants", "bees") for r in rows)


def test_a_job_runs_on_both_nodes_and_survives_losing_the_worker(cluster, model, photos, tmp_path):
    """One cluster, two jobs: the first lands on both nodes; during the second the worker
    node's raylet is killed, and every input is still answered exactly once."""
    out = tmp_path / "preds"
    job = cluster.predict(model, photos, out)
    assert job.wait(timeout=300) == 0, (tmp_path / "predict-preds.log").read_text()[-3000:]
    _exactly_once(out, photos)
    nodes = {n["id"] for n in cluster.nodes()}
    assert cluster.task_nodes() == nodes  # both nodes ran part of the job

    out = tmp_path / "lost"
    job = cluster.predict(model, photos, out, "--part-size", "32")
    deadline = time.monotonic() + 180
    while not list(out.glob("part-*.parquet")) and time.monotonic() < deadline:
        assert job.poll() is None, (tmp_path / "predict-lost.log").read_text()[-3000:]
        time.sleep(0.2)
    assert cluster.kill_worker_raylet() == 1  # the worker node goes down mid-job
    assert job.wait(timeout=400) == 0, (tmp_path / "predict-lost.log").read_text()[-3000:]
    _exactly_once(out, photos)
    assert cluster.wait_for_alive(1), "Ray still counts the killed node as alive"
