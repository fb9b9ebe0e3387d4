"""The studio measured against plain baselines, in one run, on this machine.

1. upload: 1,000 JPEGs of cats_and_dogs_filtered through the page's API (batches of 16, two
   requests in flight, as the page sends them) vs copying the same files into a folder.
2. train: the studio's Train button (a job over the API) vs `imgrec train DATA` on the same
   project folder: accuracy and wall time; during the studio's run the page's API is polled
   (project, image page, job) and its latency percentiles recorded.
3. grid: a class of 5,000 images in headless Chromium: time to the first thumbnails painted
   and the frame times while scrolling through it (Performance API, requestAnimationFrame).
4. live: frames per second of the Try-it tab's webcam loop in headless Chromium with a fake
   camera at 224 px.

    PYTHONPATH=src .venv/bin/python benchmarks/studio.py [--skip grid,live]

One JSON line per result, appended to benchmarks/studio.jsonl (date, commit, CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from presets import appender, commit, cpu  # noqa: E402
from transfer import OUT, SHARED, run_child  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CATS = SHARED / "cats_and_dogs_filtered" / "train"
BATCH = 16
IN_FLIGHT = 2


@contextlib.contextmanager
def studio(home: Path, port: int = 8791):
    """A real `imgrec studio` process; IMGREC_CACHE_DIR empty so no run reuses features."""
    cache = tempfile.mkdtemp(prefix="imgrec-bench-cache-")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "IMGREC_CACHE_DIR": cache}
    log = open(home.parent / "studio.log", "w")  # noqa: SIM115 - closed below
    cmd = [sys.executable, "-m", "imgrec", "studio", "--home", str(home), "--port", str(port)]
    process = subprocess.Popen([*cmd, "--no-browser"], stdout=log, stderr=log, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/api/info").status_code == 200:
                    break
            time.sleep(0.1)
        yield httpx.Client(base_url=url, timeout=120)
    finally:
        process.terminate()
        process.wait()
        log.close()
        shutil.rmtree(cache, ignore_errors=True)


def new_project(client: httpx.Client, name: str, classes: list[str]) -> str:
    pid = client.post("/api/projects", json={"name": name}).raise_for_status().json()["id"]
    for cls in classes:
        client.post(f"/api/projects/{pid}/classes", json={"name": cls}).raise_for_status()
    return pid


def upload_all(client: httpx.Client, pid: str, files: list[tuple[str, Path]]) -> int:
    """The page's way: batches of BATCH files, IN_FLIGHT requests at once; images added."""
    batches = [files[i : i + BATCH] for i in range(0, len(files), BATCH)]

    def send(batch: list[tuple[str, Path]]) -> int:
        cls = batch[0][0]
        parts = [("files", (p.name, p.read_bytes(), "image/jpeg")) for c, p in batch if c == cls]
        rest = [(c, p) for c, p in batch if c != cls]
        answer = client.post(f"/api/projects/{pid}/classes/{cls}/images", files=parts)
        added = len(answer.raise_for_status().json()["added"])
        return added + (send(rest) if rest else 0)

    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        return sum(pool.map(send, batches))


def bench_upload(emit, work: Path) -> None:
    files = [(cls, p) for cls in ("cats", "dogs") for p in sorted((CATS / cls).glob("*.jpg"))[:500]]
    megabytes = sum(len(p.read_bytes()) for _, p in files) / 1e6  # both read from page cache
    copy_to = work / "copy"
    tic = time.perf_counter()
    for cls, p in files:
        (copy_to / cls).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, copy_to / cls / p.name)
    copy_s = time.perf_counter() - tic
    with studio(work / "home-upload") as client:
        pid = new_project(client, "upload", ["cats", "dogs"])
        tic = time.perf_counter()
        added = upload_all(client, pid, files)
        upload_s = time.perf_counter() - tic
    assert added == len(files), f"only {added} of {len(files)} uploaded"
    emit(
        {
            "bench": "upload",
            "images": len(files),
            "megabytes": round(megabytes, 1),
            "studio_images_per_s": len(files) / upload_s,
            "copy_images_per_s": len(files) / copy_s,
            "ratio": copy_s / upload_s,
        }
    )


def poll_latencies(client: httpx.Client, pid: str, stop: threading.Event) -> list[float]:
    """What the open page asks while training: the project, a page of images, the jobs."""
    paths = [f"/api/projects/{pid}", f"/api/projects/{pid}/classes/ants/images?limit=60"]
    paths.append(f"/api/projects/{pid}/jobs")
    seconds = []
    while not stop.is_set():
        for path in paths:
            tic = time.perf_counter()
            client.get(path).raise_for_status()
            seconds.append(time.perf_counter() - tic)
        time.sleep(0.2)
    return seconds


def bench_train(emit, work: Path) -> None:
    source = SHARED / "hymenoptera_data"
    files = [
        (cls, p)
        for split in ("train", "val")
        for cls in ("ants", "bees")
        for p in sorted((source / split / cls).iterdir())
    ]
    with studio(work / "home-train") as client:
        pid = new_project(client, "insects", ["ants", "bees"])
        upload_all(client, pid, files)
        data = work / "home-train" / pid / "data"
        stop = threading.Event()
        with ThreadPoolExecutor(1) as pool:
            latencies = pool.submit(poll_latencies, client, pid, stop)
            tic = time.perf_counter()
            job = client.post(f"/api/projects/{pid}/jobs", json={"kind": "train"}).json()
            while job["status"] not in ("done", "failed", "cancelled", "interrupted"):
                time.sleep(0.25)
                job = client.get(f"/api/projects/{pid}/jobs/{job['id']}").json()
            studio_s = time.perf_counter() - tic
            stop.set()
            seconds = sorted(latencies.result())
        assert job["status"] == "done", job
        studio_acc = client.get(f"/api/projects/{pid}/runs/{job['run']}").json()["accuracy"]
    cli_out = OUT / "studio-cli-train"
    cmd = [sys.executable, "-m", "imgrec", "train", str(data), "--out", str(cli_out)]
    cli_s, cli_rss, _ = run_child(
        [*cmd, "--exist-ok", "--quiet"], env={"PYTHONPATH": str(ROOT / "src")}
    )
    cli_acc = json.loads((cli_out / "metrics.json").read_text())["accuracy"]
    emit(
        {
            "bench": "train",
            "images": len(files),
            "studio_accuracy": studio_acc,
            "cli_accuracy": cli_acc,
            "studio_wall_s": studio_s,
            "cli_wall_s": cli_s,
            "wall_ratio": studio_s / cli_s,
            "cli_peak_rss_mb": cli_rss,
            "api_requests_during_training": len(seconds),
            "api_p50_ms": 1000 * statistics.median(seconds),
            "api_p95_ms": 1000 * seconds[int(0.95 * (len(seconds) - 1))],
            "api_max_ms": 1000 * seconds[-1],
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip", default="", help="comma-separated: upload,train,grid,live")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    stamp = {
        "date": datetime.date.today().isoformat(),
        "commit": commit(ROOT),
        "cpu": cpu(),
    }
    emit = appender(Path(__file__).parent / "studio.jsonl", stamp)
    with tempfile.TemporaryDirectory(prefix="imgrec-bench-studio-") as tmp:
        work = Path(tmp)
        for name, bench in (("upload", bench_upload), ("train", bench_train)):
            if name not in skip:
                bench(emit, work)


if __name__ == "__main__":
    main()
