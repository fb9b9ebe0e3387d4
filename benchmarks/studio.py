"""The studio measured against plain baselines, in one run, on this machine.

1. upload: 1,000 JPEGs of cats_and_dogs_filtered through the page's API (file batches of
   BATCH, two requests in flight, as the page sends them: static/js/uploads.js) vs copying
   the same files into a folder.
2. train: the studio's Train button (a job over the API) vs `imgrec train DATA` on the same
   project folder: accuracy and wall time; during the studio's run the page's API is polled
   (project, image page, job) and its latency percentiles recorded.
3. grid: a class of 5,000 generated images in headless Chromium: time to the first
   thumbnails painted and the frame times while scrolling through it (Performance API,
   requestAnimationFrame).
4. live: frames per second of the Try-it tab's webcam loop in headless Chromium with a fake
   camera at 224 px.

    PYTHONPATH=src .venv/bin/python benchmarks/studio.py [--skip upload,train,grid,live]

One JSON line per result, appended to benchmarks/studio.jsonl (date, commit, CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
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

from imgrec.serve.uploads import FILE_BATCH_TYPE  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CATS = SHARED / "cats_and_dogs_filtered" / "train"
BATCH = 64
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
    """The page's way: file batches of BATCH, IN_FLIGHT requests at once; images added.

    Sent with the standard library's http.client, one kept-alive connection per request in
    flight, as a browser keeps them: a browser builds and sends the request in native code,
    and httpx's pure-Python send path cost the client about as much CPU as the studio spent
    on the same photos, on the same two cores."""
    batches = [files[i : i + BATCH] for i in range(0, len(files), BATCH)]
    url = httpx.URL(str(client.base_url))
    local = threading.local()

    def post(path: str, body: bytes) -> dict:
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection(url.host, url.port, timeout=120)
        headers = {"Content-Type": FILE_BATCH_TYPE, **dict(client.headers)}
        headers.pop("content-length", None)
        local.connection.request("POST", path, body=body, headers=headers)
        answer = local.connection.getresponse()
        data = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"upload answered {answer.status}: {data[:300]!r}")
        return json.loads(data)

    def send(batch: list[tuple[str, Path]]) -> int:
        cls = batch[0][0]
        datas = [(p.name, p.read_bytes()) for c, p in batch if c == cls]
        rest = [(c, p) for c, p in batch if c != cls]
        manifest = json.dumps([{"name": name, "size": len(data)} for name, data in datas])
        body = b"".join([manifest.encode() + b"\n", *(data for _, data in datas)])
        added = len(post(f"/api/projects/{pid}/classes/{cls}/images", body)["added"])
        return added + (send(rest) if rest else 0)

    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        return sum(pool.map(send, batches))


def bench_upload(emit, work: Path, reps: int = 9) -> None:
    """Paired repetitions, both sides reading the files from the page cache: a copy into a
    fresh folder (shutil.copyfile, what a person's file manager does) and an upload into a
    fresh project; the medians are reported and compared. Each side starts after os.sync():
    without it the disk was still flushing the other side's 23 MB, and the copy rate fell
    from 22,900 to 3,800 images/s over four back-to-back runs."""
    files = [(cls, p) for cls in ("cats", "dogs") for p in sorted((CATS / cls).glob("*.jpg"))[:500]]
    megabytes = sum(len(p.read_bytes()) for _, p in files) / 1e6  # now in the page cache
    copies, uploads = [], []
    with studio(work / "home-upload") as client:
        for rep in range(reps):
            copy_to = work / f"copy-{rep}"
            os.sync()  # each side starts with no earlier writes still being flushed
            tic = time.perf_counter()
            for cls, p in files:
                (copy_to / cls).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(p, copy_to / cls / p.name)
            copies.append(time.perf_counter() - tic)
            pid = new_project(client, f"upload {rep}", ["cats", "dogs"])
            os.sync()
            tic = time.perf_counter()
            added = upload_all(client, pid, files)
            uploads.append(time.perf_counter() - tic)
            assert added == len(files), f"only {added} of {len(files)} uploaded"
    copy_s, upload_s = statistics.median(copies), statistics.median(uploads)
    emit(
        {
            "bench": "upload",
            "images": len(files),
            "megabytes": round(megabytes, 1),
            "reps": reps,
            "studio_images_per_s": len(files) / upload_s,
            "copy_images_per_s": len(files) / copy_s,
            "ratio": copy_s / upload_s,
            "ratio_of_each_pair": [c / u for c, u in zip(copies, uploads, strict=True)],
            "studio_s_each": uploads,
            "copy_s_each": copies,
            "target_ratio": 0.5,
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


def train_job(client: httpx.Client, pid: str) -> tuple[dict, float]:
    """Press Train: the job from its POST to its final status, seconds by the clock here."""
    tic = time.perf_counter()
    job = client.post(f"/api/projects/{pid}/jobs", json={"kind": "train"}).json()
    while job["status"] not in ("done", "failed", "cancelled", "interrupted"):
        time.sleep(0.1)
        job = client.get(f"/api/projects/{pid}/jobs/{job['id']}").json()
    assert job["status"] == "done", job
    return job, time.perf_counter() - tic


def listen(client: httpx.Client, pid: str, stop: threading.Event) -> int:
    """The open page's event stream, read until `stop`; events received."""
    received = 0
    with client.stream("GET", f"/api/projects/{pid}/events", timeout=None) as stream:
        for line in stream.iter_lines():
            received += line.startswith("event:")
            if stop.is_set():
                break
    return received


def insects_project(client: httpx.Client, files: list[tuple[str, Path]]) -> str:
    pid = new_project(client, "insects", ["ants", "bees"])
    upload_all(client, pid, files)
    return pid


def bench_train(emit, work: Path, skip: frozenset[str] = frozenset(), reps: int = 2) -> None:
    """Per repetition: `imgrec train` on the project folder, then the studio's Train button
    with the page's event stream open (a fresh studio each time, so no run reuses cached
    features). Then one more studio run while the page's API is polled, for its latency."""
    source = SHARED / "hymenoptera_data"
    files = [
        (cls, p)
        for split in ("train", "val")
        for cls in ("ants", "bees")
        for p in sorted((source / split / cls).iterdir())
    ]
    for rep in range(reps):
        home = work / f"home-train-{rep}"
        with studio(home) as client:
            pid = insects_project(client, files)
            cli_out = OUT / "studio-cli-train"
            cmd = [sys.executable, "-m", "imgrec", "train", str(home / pid / "data")]
            cmd += ["--out", str(cli_out), "--exist-ok", "--quiet"]
            cli_s, cli_rss, _ = run_child(cmd, env={"PYTHONPATH": str(ROOT / "src")})
            cli_acc = json.loads((cli_out / "metrics.json").read_text())["accuracy"]
            stop = threading.Event()
            with ThreadPoolExecutor(1) as pool:
                events = pool.submit(listen, client, pid, stop)
                job, studio_s = train_job(client, pid)
                stop.set()
            run = client.get(f"/api/projects/{pid}/runs/{job['run']}").json()
            emit(
                {
                    "bench": "train",
                    "rep": rep,
                    "images": len(files),
                    "studio_accuracy": run["accuracy"],
                    "cli_accuracy": cli_acc,
                    "studio_wall_s": studio_s,
                    "cli_wall_s": cli_s,
                    "wall_ratio": studio_s / cli_s,
                    "cli_peak_rss_mb": cli_rss,
                    "page_events": events.result(),
                }
            )
    with studio(work / "home-latency") as client:
        pid = insects_project(client, files)
        stop = threading.Event()
        with ThreadPoolExecutor(1) as pool:
            latencies = pool.submit(poll_latencies, client, pid, stop)
            job, studio_s = train_job(client, pid)
            stop.set()
            seconds = sorted(latencies.result())
        emit(
            {
                "bench": "api_during_training",
                "studio_wall_s": studio_s,
                "api_requests": len(seconds),
                "api_p50_ms": 1000 * statistics.median(seconds),
                "api_p95_ms": 1000 * seconds[int(0.95 * (len(seconds) - 1))],
                "api_max_ms": 1000 * seconds[-1],
                "target_p95_ms": 300,
            }
        )
        if "live" not in skip:
            bench_live(emit, str(client.base_url), pid, job["run"])


def chromium(*flags: str):
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--window-size=1280,800", *flags):
        options.add_argument(flag)
    service = webdriver.ChromeService("/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_script_timeout(120)
    return driver


def bench_live(emit, url: str, pid: str, run: str) -> None:
    """The Try-it tab's webcam loop on Chromium's fake camera (640x480), frames sent at 224 px:
    frames per second over 10 s, counted from the page's own /predict requests."""
    from selenium.webdriver.common.by import By

    driver = chromium("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")
    try:
        driver.get(f"{url}/#/p/{pid}/try/{run}")
        driver.execute_script("performance.setResourceTimingBufferSize(100000)")
        from selenium.webdriver.support.ui import WebDriverWait

        start = WebDriverWait(driver, 60).until(
            lambda d: next(
                (b for b in d.find_elements(By.CSS_SELECTOR, "button") if b.text == "Start camera"),
                False,
            )
        )
        start.click()
        time.sleep(3)  # camera up, model loaded, first frames answered
        window = driver.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            const t0 = performance.now();
            setTimeout(() => {
              const frames = performance.getEntriesByType("resource").filter(
                (e) => e.name.includes("/predict") && e.responseEnd >= t0);
              const ms = frames.map((e) => e.responseEnd - e.startTime).sort((a, b) => a - b);
              done({frames: frames.length, seconds: (performance.now() - t0) / 1000,
                    p50_ms: ms[Math.floor(ms.length / 2)] || null,
                    shown: (document.querySelector(".fps") || {}).textContent || ""});
            }, 10000);
            """
        )
    finally:
        driver.quit()
    emit(
        {
            "bench": "live",
            "frames": window["frames"],
            "frames_per_s": window["frames"] / window["seconds"],
            "request_p50_ms": window["p50_ms"],
            "page_shows": window["shown"],
            "target_frames_per_s": 5,
        }
    )


def make_images(folder: Path, n: int) -> None:
    """n small distinct JPEGs (a colour ramp with a square that moves): made, not copied."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = Image.new("RGB", (160, 120), ((i * 7) % 256, (i * 13) % 256, (i * 29) % 256))
        ImageDraw.Draw(image).rectangle([i % 120, i % 80, i % 120 + 40, i % 80 + 40], fill="white")
        image.save(folder / f"img{i:05d}.jpg", quality=85)


FIRST_THUMBS = """
const done = arguments[arguments.length - 1];
(function check() {
  const imgs = [...document.querySelectorAll(".grid-scroller img")].slice(0, 20);
  if (imgs.length === 20 && imgs.every((i) => i.complete && i.naturalWidth > 0)) {
    requestAnimationFrame(() => done({
      thumbs_ms: performance.now(),
      fcp_ms: (performance.getEntriesByName("first-contentful-paint")[0] || {}).startTime,
    }));
  } else setTimeout(check, 5);
})();
"""

SCROLL = """
const done = arguments[arguments.length - 1];
const el = document.querySelector(".grid-scroller");
const frames = [];
let last = performance.now();
const end = last + 5000;
function step(t) {
  frames.push(t - last);
  last = t;
  el.scrollTop += 40;
  if (t < end && el.scrollTop < el.scrollHeight - el.clientHeight) requestAnimationFrame(step);
  else done({frames, nodes: document.querySelectorAll(".grid-canvas img").length,
             scrolled_px: el.scrollTop, heap_mb: performance.memory.usedJSHeapSize / 1e6});
}
requestAnimationFrame(step);
"""


def bench_grid(emit, work: Path) -> None:
    """A class of 5,000 photos: first 20 thumbnails painted (cold: thumbnails made on demand;
    warm: from the disk cache) and frame times while scrolling 40 px per frame for 5 s."""
    make_images(work / "grid-src" / "many", 5000)
    with studio(work / "home-grid") as client:
        pid = new_project(client, "grid", [])
        answer = client.post(
            f"/api/projects/{pid}/import/folder", json={"path": str(work / "grid-src")}
        )
        assert answer.raise_for_status().json()["added"] == 5000, answer.text
        driver = chromium()
        try:
            for visit in ("cold", "warm"):
                driver.get("about:blank")
                driver.get(f"{client.base_url}/#/p/{pid}/images/many")
                paint = driver.execute_async_script(FIRST_THUMBS)
                scroll = driver.execute_async_script(SCROLL)
                frames = sorted(scroll["frames"][1:])
                emit(
                    {
                        "bench": "grid",
                        "visit": visit,
                        "images": 5000,
                        "first_contentful_paint_ms": paint["fcp_ms"],
                        "first_20_thumbnails_ms": paint["thumbs_ms"],
                        "scroll_frames": len(frames),
                        "frame_p50_ms": statistics.median(frames),
                        "frame_p95_ms": frames[int(0.95 * (len(frames) - 1))],
                        "frame_max_ms": frames[-1],
                        "frames_over_50ms": sum(f > 50 for f in frames),
                        "img_elements_after_scroll": scroll["nodes"],
                        "scrolled_px": scroll["scrolled_px"],
                        "js_heap_mb": scroll["heap_mb"],
                    }
                )
        finally:
            driver.quit()


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
        if "upload" not in skip:
            bench_upload(emit, work)
        if "train" not in skip:
            bench_train(emit, work, frozenset(skip))
        if "grid" not in skip:
            bench_grid(emit, work)


if __name__ == "__main__":
    main()
