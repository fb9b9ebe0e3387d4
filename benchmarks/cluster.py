"""`imgrec predict --on ray` against `--on local`, and one 2-CPU node against two 1-CPU nodes.

In one run, on N photos (default 10,000: the 3,000 JPEGs of cats_and_dogs_filtered copied
round-robin under new names, so every file is read and decoded):
- local: `imgrec predict MODEL DATA -f csv -o FILE` (one process: decode threads + ONNX
  Runtime) and ray: `imgrec predict MODEL DATA --on ray --out DIR` (a local Ray cluster of
  this machine's CPUs that the command starts), each as a real process; and the same Ray job
  on a local cluster already running (`ray start --head` first, timed apart), as a cluster
  user runs it. The three alternate for `--repeats` rounds: this machine's speed drifts.
  Rates are the ones the commands print (local: first decode to last row; Ray: from starting
  or joining the cluster, actors included, to the last row), plus whole-process wall time.
  Memory: peak RSS of the command's process alone, and the
  peak of the sum over it and every process it started (raylet, GCS, workers; shared
  object-store pages count once per process that maps them, so the sum is an upper bound).
- scaling (root only: network namespaces, tests/netns.py): the same Ray job on a cluster of
  one node with 2 CPUs, and of two nodes with 1 CPU each joined by a veth pair. Both share
  this machine's 2 cores, so the pair shows what crossing a network costs, not a speed-up;
  the per-actor rate is what docs/scaling.md projects to N nodes from.
One JSON line per result, appended to benchmarks/cluster.jsonl (date, commit, CPU).

    python benchmarks/cluster.py [--images 10000] [--repeats 2] [--skip scaling]
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict import DEFAULT_MODEL, ensure_model  # noqa: E402
from presets import appender, commit, cpu  # noqa: E402

CATS = Path("/work/shared/datasets/cats_and_dogs_filtered")
OUT = Path(__file__).resolve().parent / "cluster.jsonl"
RAY_CLI = Path(sys.executable).with_name("ray")
RATE = re.compile(r"\(([\d,]+) (?:unreadable|skipped)[^;]*; (\d+) img/s")


def copies(folder: Path, n: int) -> Path:
    """n JPEGs in folder/<class>/: the dataset's files round-robin, each under a new name."""
    sources = sorted(CATS.rglob("*.jpg"))
    for i in range(n):
        source = sources[i % len(sources)]
        target = folder / source.parent.name / f"{i:06d}-{source.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return folder


class TreeMemory:
    """Polls a process and its descendants: peak RSS of the process, and of the whole tree."""

    def __init__(self, pid: int, every: float = 0.25) -> None:
        self.root = psutil.Process(pid)
        self.every = every
        self.own_mb = 0.0
        self.tree_mb = 0.0
        self.largest_child_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                own = self.root.memory_info().rss / 1e6
                children = [c.memory_info().rss / 1e6 for c in self.root.children(recursive=True)]
            except psutil.Error:
                children, own = [], 0.0
            self.own_mb = max(self.own_mb, own)
            self.tree_mb = max(self.tree_mb, own + sum(children))
            self.largest_child_mb = max(self.largest_child_mb, max(children, default=0.0))
            self._stop.wait(self.every)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {
            "peak_rss_mb": round(self.own_mb),
            "peak_tree_rss_mb": round(self.tree_mb),
            "largest_child_rss_mb": round(self.largest_child_mb),
        }


def run_command(args: list[str], env: dict | None = None) -> dict:
    """Run an imgrec command; its printed rate, wall seconds and memory."""
    start = time.perf_counter()
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    memory = TreeMemory(process.pid)
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - start
    row = memory.stop()
    if process.returncode != 0:
        raise SystemExit(
            f"{' '.join(args[:6])}... failed ({process.returncode}):\n{stderr[-3000:]}"
        )
    found = RATE.search(stdout)
    if not found:
        raise SystemExit(f"no rate in: {stdout!r}")
    return {"images_per_s": int(found.group(2)), "wall_s": round(wall, 1), **row}


def imgrec(*args: object) -> list[str]:
    return [sys.executable, "-m", "imgrec", *(str(a) for a in args)]


def ray_env() -> dict:
    """The environment of a cluster this script starts: token authentication, no usage stats."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}
    env["RAY_AUTH_TOKEN"] = secrets.token_hex(16)
    return env


def running_cluster(env: dict, temp: Path) -> tuple[str, float]:
    """`ray start --head` with this machine's CPUs; (its address, seconds it took to start)."""
    port = 6390 + secrets.randbelow(100)
    start = time.perf_counter()
    subprocess.run(
        [RAY_CLI, "start", "--head", f"--port={port}", f"--num-cpus={os.cpu_count()}"]
        + ["--include-dashboard=false", f"--temp-dir={temp}"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return f"127.0.0.1:{port}", time.perf_counter() - start


def bench_local_vs_ray(emit, model: Path, data: Path, work: Path, n: int, repeats: int) -> None:
    """Interleaved repetitions of: local; ray, the command starting its own local cluster;
    ray on a local cluster already running (`ray start --head` first, its start timed apart).
    This machine's speed drifts by 10-20% within an hour, so only the pairs compare."""
    for rep in range(repeats):
        local = run_command(imgrec("predict", model, data, "-f", "csv", "-o", work / "l.csv", "-q"))
        emit({"bench": "predict", "on": "local", "images": n, "repeat": rep, **local})
        shutil.rmtree(work / "r", ignore_errors=True)
        own = run_command(imgrec("predict", model, data, "--on", "ray", "--out", work / "r", "-q"))
        own_cluster = {"cluster": "started by the command", "images": n, "repeat": rep}
        emit({"bench": "predict", "on": "ray", **own_cluster, **own})
        env = ray_env()
        temp = Path(tempfile.mkdtemp(prefix="imgrec-ray-"))
        address, started_s = running_cluster(env, temp)
        try:
            shutil.rmtree(work / "r", ignore_errors=True)
            args = imgrec("predict", model, data, "--on", "ray", "--address", address)
            running = run_command([*args, "--out", str(work / "r"), "-q"], env=env)
        finally:
            subprocess.run([RAY_CLI, "stop"], env=env, capture_output=True)
            shutil.rmtree(temp, ignore_errors=True)
        emit(
            {
                "bench": "predict",
                "on": "ray",
                "cluster": "running (ray start --head before)",
                "cluster_start_s": round(started_s, 1),
                "images": n,
                "repeat": rep,
                **running,
            }
        )
        emit(
            {
                "bench": "predict-ratio",
                "images": n,
                "repeat": rep,
                "ray_vs_local": round(own["images_per_s"] / local["images_per_s"], 3),
                "ray_vs_local_wall": round(local["wall_s"] / own["wall_s"], 3),
                "running_cluster_vs_local": round(
                    running["images_per_s"] / local["images_per_s"], 3
                ),
            }
        )


def bench_scaling(emit, model: Path, data: Path, work: Path, n: int) -> None:
    from netns import can_make_namespaces, two_hosts

    reason = can_make_namespaces()
    if reason is not None:
        print(f"scaling skipped: {reason}", file=sys.stderr)
        return
    env = ray_env()
    rates = {}
    for layout, cpus in (("1 node x 2 CPUs", [2]), ("2 nodes x 1 CPU", [1, 1])):
        temp = Path(tempfile.mkdtemp(prefix="imgrec-ray-"))
        with two_hosts() as hosts:
            head = hosts[0]
            address = f"{head.address}:6379"
            for k, count in enumerate(cpus):
                flags = ["--head", "--port=6379"] if k == 0 else [f"--address={address}"]
                command = [RAY_CLI, "start", "--block", f"--num-cpus={count}", *flags]
                command += [f"--node-ip-address={hosts[k].address}", f"--temp-dir={temp / str(k)}"]
                hosts[k].run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(12)  # the node registers with the head
            out = work / f"scale-{len(cpus)}"
            args = imgrec("predict", model, data, "--on", "ray", "--address", address)
            row = run_command(head.command([*args, "--out", out, "-q"]), env=env)
        shutil.rmtree(temp, ignore_errors=True)
        rates[layout] = row["images_per_s"]
        emit({"bench": "scaling", "layout": layout, "images": n, **row})
    emit(
        {
            "bench": "scaling-ratio",
            "images": n,
            "two_nodes_vs_one": round(rates["2 nodes x 1 CPU"] / rates["1 node x 2 CPUs"], 3),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved local/ray rounds")
    parser.add_argument("--skip", default="", help="comma-separated: predict, scaling")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    stamp = {"date": datetime.date.today().isoformat(), "commit": commit(ROOT), "cpu": cpu()}
    emit = appender(args.out, stamp)
    model = ensure_model(args.model)
    with tempfile.TemporaryDirectory(prefix="imgrec-bench-cluster-") as tmp:
        work = Path(tmp)
        data = copies(work / "photos", args.images)
        if "predict" not in skip:
            bench_local_vs_ray(emit, model, data, work, args.images, args.repeats)
        if "scaling" not in skip:
            bench_scaling(emit, model, data, work, args.images)


if __name__ == "__main__":
    main()
