"""Out-of-core and multi-process training measured against plain baselines, in one run.

1. shards: `imgrec shards` (a child process, all cores, default 292 px) on
   cats_and_dogs_filtered (train + validation, 3,000 JPEGs) vs the plain decode + resize of
   the same files to the same short side, nothing written: a process pool over the files
   (PIL open, draft, EXIF transpose, RGB, resize) and imgrec's threaded DecodedCache.build();
   the faster is the baseline. Page cache warm for both. Also with --images-per-shard 300,
   to tell per-image cost from idle cores at the end (3 shards of 1,000 on 2 cores, against
   the default's 16).
2. stream: `imgrec train DATA --cache disk` vs `--cache ram` on cats_and_dogs_filtered/train
   (2,000 images), same seed and flags, paired ram, disk, ram, disk; fine-tuning images/s is
   (train images in split.csv x epochs run) / phases.finetune.seconds; the disk run's shard
   writing (before training) is reported on its own. Medians, peak RSS, accuracy.
3. rss: peak RSS of `imgrec train GEN --cache disk` on generated datasets of 10k, 50k and
   100k JPEGs (160x120, three shapes on noise), with the head phase (which keeps the frozen
   features of every training image in RAM) and with --no-head; growth from the smallest
   to the largest size in %. Each run has --time-limit 30m (--rss-time-limit; see
   RSS_TIME_LIMIT), so its fine-tuning rate is not reported: an epoch cut short counts as one.
4. ddp: `imgrec train DATA --devices 2` vs `--devices 1` on cats_and_dogs_filtered/train:
   fine-tuning images/s (overall and per process), wall time, accuracy, batches per process.

Memory of a child: `peak_rss_mb` is wait4's ru_maxrss, which Linux gives as the largest
single process among the child and the descendants it waited for (max, not sum: the
torchrun agent's two workers are not added up; `largest_hwm_mb`, the largest VmHWM read
from /proc while it ran, cross-checks it). For the whole process tree a sampler reads
/proc every TICK seconds: `tree_peak_pss_mb` (PSS summed, shared pages split among the
processes that map them: what the job takes), `tree_peak_rss_mb` (RSS summed, shared pages
counted in every process) and `hwm_sum_mb` (each process's own peak, added: an upper bound).
Sampled peaks can miss a spike shorter than TICK.

    PYTHONPATH=src .venv/bin/python benchmarks/scale.py [--skip shards,stream,rss,ddp]
        [--sizes 10000,50000,100000] [--quick] [--out FILE]

--quick: rss at 2k and 4k images, stream and ddp on 150 images per class; a smoke test.
Run it on an idle machine: in smoke runs beside other tests, one training process (2 torch
threads) fine-tuned 5-10x slower than alone, while the DDP processes (1 thread each) did not.
One JSON line per result, appended to benchmarks/scale.jsonl (date, commit, CPU) as soon as
it is measured, so a crash keeps what finished.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from presets import appender, commit, cpu  # noqa: E402
from transfer import OUT, SHARED  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CATS = SHARED / "cats_and_dogs_filtered"
SHARD_SIZE = 292  # imgrec shards' default short side
TICK = 0.1  # seconds between samples of the process tree
TARGET_RATIO = 0.8
TARGET_GROWTH_PCT = 10
STREAM_FLAGS = ["--epochs", "2", "--patience", "9", "--seed", "0"]
RSS_FLAGS = ["--cache", "disk", "--image-size", "64", "--epochs", "1", "--batch-size", "64"]
RSS_FLAGS += ["--seed", "0"]
# One epoch of a 100k run takes over an hour on 2 cores (~16 fine-tuning images/s at 64 px), so
# runs are limited. The run keeps an estimate of its evaluation in reserve (~9 min at 100k: 45k
# images scored) and the head phase extracts ~85k features first (~7 min): 30 min leaves
# fine-tuning ~10 min at 100k; the 10k runs end before the limit.
RSS_TIME_LIMIT = "30m"
RSS_VARIANTS = {"head+finetune": [], "no-head": ["--no-head"]}
SHAPES = ("circle", "square", "triangle")
GEN_SIZE = (160, 120)


# ---- a child process, measured ---------------------------------------------------------------
@dataclass
class Child:
    wall_s: float
    peak_rss_mb: float  # wait4: the largest single process of the tree
    largest_hwm_mb: float
    hwm_sum_mb: float
    tree_peak_rss_mb: float
    tree_peak_pss_mb: float
    processes: int
    shard_write_s: float | None  # shard writing inside a train run (--cache disk)
    stdout: str = field(repr=False)


def _proc_kb(pid: int) -> dict[str, int]:
    """Rss and Pss (smaps_rollup) and VmHWM (status) of one process, in kB; {} once gone."""
    values: dict[str, int] = {}
    try:
        for name in ("smaps_rollup", "status"):
            for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
                key, _, rest = line.partition(":")
                if key in ("Rss", "Pss", "VmHWM"):
                    values[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        return values
    return values


class TreeSampler:
    """Every TICK seconds: RSS and PSS summed over `pid` and its descendants, each process's
    high-water mark, and when the folder `watch` first appeared."""

    def __init__(self, pid: int, watch: Path | None = None) -> None:
        self.root = psutil.Process(pid)
        self.watch = watch
        self.peak_rss_kb = self.peak_pss_kb = 0
        self.hwm_kb: dict[int, int] = {}
        self.appeared: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(TICK):
            self.sample()

    def sample(self) -> None:
        if self.watch is not None and self.appeared is None and self.watch.exists():
            self.appeared = time.time()
        try:
            pids = [self.root.pid, *(p.pid for p in self.root.children(recursive=True))]
        except psutil.Error:
            return
        rss = pss = 0
        for pid in pids:
            kb = _proc_kb(pid)
            rss, pss = rss + kb.get("Rss", 0), pss + kb.get("Pss", 0)
            if "VmHWM" in kb:
                self.hwm_kb[pid] = max(self.hwm_kb.get(pid, 0), kb["VmHWM"])
        self.peak_rss_kb = max(self.peak_rss_kb, rss)
        self.peak_pss_kb = max(self.peak_pss_kb, pss)


def _shard_write_seconds(cache: Path, appeared: float | None) -> float | None:
    """From the cache's shards folder appearing (the writer makes it before its first shard)
    to the shards index being written (the writer's last act)."""
    index = next(cache.glob("shards/*/imgrec-shards.json"), None)
    if index is None or appeared is None:
        return None
    return index.stat().st_mtime - appeared


def run_measured(args: list[str], watch_shards: bool = False) -> Child:
    """Run a child with an empty IMGREC_CACHE_DIR and this checkout's src on PYTHONPATH;
    exit with its stderr's tail if it fails."""
    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
        tempfile.TemporaryDirectory(prefix="imgrec-bench-cache-") as tmp,
    ):
        cache = Path(tmp)
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "IMGREC_CACHE_DIR": tmp}
        start = time.perf_counter()
        proc = subprocess.Popen(args, stdout=out, stderr=err, text=True, env=env)
        with TreeSampler(proc.pid, cache / "shards" if watch_shards else None) as tree:
            _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"{' '.join(args)} failed:\n{err.read()[-3000:]}")
        return Child(
            wall_s=wall,
            peak_rss_mb=usage.ru_maxrss / 1024,
            largest_hwm_mb=max(tree.hwm_kb.values(), default=0) / 1024,
            hwm_sum_mb=sum(tree.hwm_kb.values()) / 1024,
            tree_peak_rss_mb=tree.peak_rss_kb / 1024,
            tree_peak_pss_mb=tree.peak_pss_kb / 1024,
            processes=len(tree.hwm_kb),
            shard_write_s=_shard_write_seconds(cache, tree.appeared),
            stdout=out.read(),
        )


def memory(child: Child) -> dict:
    return {k: v for k, v in asdict(child).items() if k != "stdout"}


# ---- imgrec train ----------------------------------------------------------------------------
def train_images(split_csv: Path) -> int:
    with split_csv.open() as f:
        return sum(1 for row in csv.DictReader(f) if row["split"] == "train")


def train(data: Path, label: str, flags: list[str], watch_shards: bool = False) -> dict:
    """`imgrec train DATA` in a measured child; its accuracy, phases and fine-tuning rate."""
    out = OUT / f"scale-{label}"
    cmd = [sys.executable, "-m", "imgrec", "train", str(data), "--out", str(out)]
    child = run_measured([*cmd, "--exist-ok", "-q", *flags], watch_shards)
    metrics = json.loads((out / "metrics.json").read_text())
    phases = metrics["phases"]
    finetune = phases.get("finetune", {})
    n_train, epochs = train_images(out / "split.csv"), finetune.get("epochs", 0)
    seconds = finetune.get("seconds")
    return {
        "run": label,
        "flags": flags,
        "accuracy": metrics["accuracy"],
        "train_images": n_train,
        "finetune_epochs": epochs,
        "finetune_s": seconds,
        "finetune_images_per_s": n_train * epochs / seconds if seconds and epochs else None,
        "batches_per_process": finetune.get("batches_per_process"),
        "phase_s": {name: value.get("seconds") for name, value in phases.items()},
        **memory(child),
    }


def median_of(rows: list[dict], key: str) -> float | None:
    values = [row[key] for row in rows if row.get(key) is not None]
    return statistics.median(values) if values else None


# ---- 1. shards -------------------------------------------------------------------------------
def _short_side(width: int, height: int, short: int) -> tuple[int, int]:
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def decode_resize(path: str, size: int = SHARD_SIZE) -> tuple[int, int]:
    """The plain way: open, let JPEG decode at a reduced scale, EXIF-rotate, RGB, resize."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im.draft("RGB", (size, size))
        image = ImageOps.exif_transpose(im).convert("RGB")
    if min(image.size) > size:
        image = image.resize(_short_side(*image.size, size), Image.Resampling.BILINEAR)
    return image.size


def child_baseline(kind: str, size: int) -> dict:
    """In a child: seconds to decode + resize every file (pool start included), nothing kept
    but the sizes (`pool`) or everything as DecodedCache keeps it (`decoded`)."""
    paths = sorted(str(p) for p in CATS.rglob("*.jpg"))
    if kind == "pool":
        start = time.perf_counter()
        workers = os.cpu_count() or 1
        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            done = sum(1 for _ in pool.map(decode_resize, paths, chunksize=16))
        return {"seconds": time.perf_counter() - start, "images": done, "workers": workers}
    from imgrec.data.cache import DecodedCache
    from imgrec.data.preprocess import Preprocessing

    cache = DecodedCache([Path(p) for p in paths], Preprocessing(256, (0.5,) * 3, (0.5,) * 3, size))
    start = time.perf_counter()
    cache.build()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "images": len(cache.valid_indices), "workers": cache.workers}


def baseline(kind: str, reps: int) -> dict:
    runs = []
    for _ in range(reps):
        child = run_measured([sys.executable, __file__, "--child", kind, str(SHARD_SIZE)])
        runs.append(
            {**json.loads(child.stdout), "wall_s": child.wall_s, "peak_rss_mb": child.peak_rss_mb}
        )
    seconds = statistics.median(r["seconds"] for r in runs)
    return {
        "images_per_s": runs[0]["images"] / seconds,
        "s": seconds,
        "s_each": [r["seconds"] for r in runs],
        "wall_s": statistics.median(r["wall_s"] for r in runs),
        "images": runs[0]["images"],
        "workers": runs[0]["workers"],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
    }


def imgrec_shards(out: Path, per_shard: int | None) -> dict:
    """`imgrec shards` into `out` (removed after): its own timing (from its final line:
    listing, worker start, writing, index), its wall time and what it wrote."""
    cmd = [sys.executable, "-m", "imgrec", "shards", str(CATS), "--out", str(out), "-q"]
    per = [] if per_shard is None else ["--images-per-shard", str(per_shard)]
    child = run_measured([*cmd, *per])
    said = re.search(r"([0-9.]+) s, [0-9,]+ images/s", child.stdout)
    if said is None:
        sys.exit(f"imgrec shards did not say its rate:\n{child.stdout[-2000:]}")
    index = json.loads((out / "imgrec-shards.json").read_text())
    row = {
        "s": float(said.group(1)),
        "wall_s": child.wall_s,
        "images": index["images"],
        "shards": len(index["shards"]),
        "tar_mb": sum(s["bytes"] for s in index["shards"]) / 1e6,
        "folder_mb": sum(p.stat().st_size for p in out.iterdir()) / 1e6,
        **{k: v for k, v in memory(child).items() if k != "wall_s"},
    }
    shutil.rmtree(out)
    return row


def bench_shards(emit, work: Path, reps: int) -> None:
    started = time.perf_counter()
    files = sorted(CATS.rglob("*.jpg"))
    source_mb = sum(len(p.read_bytes()) for p in files) / 1e6  # now in the page cache
    pool, decoded = baseline("pool", reps), baseline("decoded", reps)
    best_name, best = max(
        (("process_pool", pool), ("decoded_cache", decoded)), key=lambda kv: kv[1]["images_per_s"]
    )
    for per_shard in (None, 1000):  # the default (16 shards here), and 3 shards of 1,000
        runs = [imgrec_shards(work / f"shards-{per_shard}-{r}", per_shard) for r in range(reps)]
        seconds = statistics.median(r["s"] for r in runs)
        rate = runs[0]["images"] / seconds
        emit(
            {
                "bench": "shards",
                "images_per_shard": per_shard,
                "default": per_shard is None,
                "files": len(files),
                "source_mb": round(source_mb, 1),
                "image_size": SHARD_SIZE,
                "imgrec_images_per_s": rate,
                "imgrec_s": seconds,
                "imgrec_s_each": [r["s"] for r in runs],
                "imgrec_wall_s_each": [r["wall_s"] for r in runs],
                "imgrec_images": runs[0]["images"],
                "shards": runs[0]["shards"],
                "mb_written": runs[0]["folder_mb"],
                "tar_mb": runs[0]["tar_mb"],
                "imgrec_peak_rss_mb": runs[0]["peak_rss_mb"],
                "imgrec_tree_peak_pss_mb": runs[0]["tree_peak_pss_mb"],
                "baseline": best_name,
                "baseline_images_per_s": best["images_per_s"],
                "ratio": rate / best["images_per_s"],
                # with interpreter start and imports on both sides (imgrec's CLI loads more)
                "ratio_wall": best["wall_s"] / statistics.median(r["wall_s"] for r in runs),
                "target_ratio": TARGET_RATIO,
                "process_pool": pool,
                "decoded_cache": decoded,
                "reps": reps,
                "section_s": time.perf_counter() - started,
            }
        )


# ---- 2. stream ---------------------------------------------------------------------------------
def bench_stream(emit, data: Path, pairs: int) -> None:
    """ram, disk, ram, disk: each pair back to back, so a busy spell of the machine hits both."""
    started = time.perf_counter()
    runs: dict[str, list[dict]] = {"ram": [], "disk": []}
    for rep in range(pairs):
        for mode in ("ram", "disk"):
            flags = ["--cache", mode, *STREAM_FLAGS]
            row = train(data, f"stream-{mode}-{rep}", flags, watch_shards=mode == "disk")
            emit({"bench": "stream", "cache": mode, "rep": rep, "data": str(data), **row})
            runs[mode].append(row)
    ram, disk = (median_of(runs[m], "finetune_images_per_s") for m in ("ram", "disk"))
    ram_rss, disk_rss = (median_of(runs[m], "peak_rss_mb") for m in ("ram", "disk"))
    emit(
        {
            "bench": "stream",
            "summary": True,
            "pairs": pairs,
            "train_images": runs["ram"][0]["train_images"],
            "ram_finetune_images_per_s": ram,
            "disk_finetune_images_per_s": disk,
            "ratio": disk / ram if ram and disk else None,
            "target_ratio": TARGET_RATIO,
            "disk_shard_write_s": median_of(runs["disk"], "shard_write_s"),
            "ram_decode_audit_s": statistics.median(
                r["phase_s"]["decode_audit"] for r in runs["ram"]
            ),
            "disk_decode_audit_s": statistics.median(
                r["phase_s"]["decode_audit"] for r in runs["disk"]
            ),
            "ram_peak_rss_mb": ram_rss,
            "disk_peak_rss_mb": disk_rss,
            "disk_vs_ram_rss": disk_rss / ram_rss,
            "ram_tree_peak_pss_mb": median_of(runs["ram"], "tree_peak_pss_mb"),
            "disk_tree_peak_pss_mb": median_of(runs["disk"], "tree_peak_pss_mb"),
            "ram_wall_s": median_of(runs["ram"], "wall_s"),
            "disk_wall_s": median_of(runs["disk"], "wall_s"),
            "ram_accuracy": [r["accuracy"] for r in runs["ram"]],
            "disk_accuracy": [r["accuracy"] for r in runs["disk"]],
            "section_s": time.perf_counter() - started,
        }
    )


# ---- 3. rss --------------------------------------------------------------------------------------
def _generated(i: int):
    """Image i: one of three shapes in the inverse colour of a noisy background; seeded by i."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(i)
    width, height = GEN_SIZE
    base = rng.integers(0, 256, 3)
    noise = rng.normal(0, 12, (height, width, 3))
    image = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
    side = int(rng.integers(30, 80))
    x, y = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
    colour = tuple(int(255 - c) for c in base)
    draw, shape = ImageDraw.Draw(image), SHAPES[i % len(SHAPES)]
    if shape == "circle":
        draw.ellipse([x, y, x + side, y + side], fill=colour)
    elif shape == "square":
        draw.rectangle([x, y, x + side, y + side], fill=colour)
    else:
        draw.polygon([(x, y + side), (x + side, y + side), (x + side // 2, y)], fill=colour)
    return shape, image


def _generate_range(folder: str, start: int, stop: int) -> int:
    for i in range(start, stop):
        shape, image = _generated(i)
        image.save(Path(folder) / shape / f"img{i:06d}.jpg", quality=85)
    return stop - start


def generate(folder: Path, n: int) -> float:
    """n JPEGs in folder/<shape>/, written by one process per core; seconds taken."""
    start = time.perf_counter()
    for shape in SHAPES:
        (folder / shape).mkdir(parents=True, exist_ok=True)
    step = 500
    ranges = [(str(folder), a, min(a + step, n)) for a in range(0, n, step)]
    with ProcessPoolExecutor(os.cpu_count() or 1, mp_context=get_context("fork")) as pool:
        made = sum(pool.map(_generate_range, *zip(*ranges, strict=True)))
    assert made == n, f"generated {made} of {n}"
    return time.perf_counter() - start


def bench_rss(
    emit, work: Path, sizes: list[int], time_limit: str | None, variants: dict[str, list[str]]
) -> None:
    started = time.perf_counter()
    limited = time_limit not in (None, "", "none")
    limit = ["--time-limit", time_limit] if limited else []
    rows: dict[str, dict[int, dict]] = {variant: {} for variant in variants}
    for n in sizes:
        data = work / f"generated-{n}"
        generate_s = generate(data, n)
        data_mb = sum(p.stat().st_size for p in data.rglob("*.jpg")) / 1e6
        for variant, extra in variants.items():
            flags = [*RSS_FLAGS, *extra, *limit]
            row = train(data, f"rss-{n}-{variant}", flags, watch_shards=True)
            share = row["shard_write_s"] / row["wall_s"] if row["shard_write_s"] else None
            row = {"images": n, "variant": variant, **row, "shard_write_share": share}
            if limited:  # an epoch the limit cut short counts as one: no rate from it
                row.update(time_limit=time_limit, finetune_images_per_s=None)
            emit({"bench": "rss", "generate_s": generate_s, "data_mb": data_mb, **row})
            rows[variant][n] = row
        shutil.rmtree(data)
    for variant, by_size in rows.items():
        small, large = by_size[sizes[0]], by_size[sizes[-1]]
        emit(
            {
                "bench": "rss",
                "summary": True,
                "variant": variant,
                "sizes": sizes,
                "peak_rss_mb": [by_size[n]["peak_rss_mb"] for n in sizes],
                "tree_peak_pss_mb": [by_size[n]["tree_peak_pss_mb"] for n in sizes],
                "wall_s": [by_size[n]["wall_s"] for n in sizes],
                "shard_write_share": [by_size[n]["shard_write_share"] for n in sizes],
                "accuracy": [by_size[n]["accuracy"] for n in sizes],
                "growth_pct": 100 * (large["peak_rss_mb"] / small["peak_rss_mb"] - 1),
                "tree_pss_growth_pct": 100
                * (large["tree_peak_pss_mb"] / small["tree_peak_pss_mb"] - 1),
                "target_growth_pct": TARGET_GROWTH_PCT,
                "section_s": time.perf_counter() - started,
            }
        )


# ---- 4. ddp --------------------------------------------------------------------------------------
def bench_ddp(emit, data: Path, pairs: int) -> None:
    """1 process, 2 processes, in pairs back to back; medians."""
    started = time.perf_counter()
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for rep in range(pairs):
        for devices in (1, 2):
            flags = ["--devices", str(devices), *STREAM_FLAGS]
            row = train(data, f"ddp-{devices}-{rep}", flags)
            rate = row["finetune_images_per_s"]
            row["finetune_images_per_s_per_process"] = rate / devices if rate else None
            emit({"bench": "ddp", "devices": devices, "rep": rep, "data": str(data), **row})
            runs[devices].append(row)
    one, two = runs[1], runs[2]
    rate_1, rate_2 = (median_of(r, "finetune_images_per_s") for r in (one, two))
    wall_1, wall_2 = median_of(one, "wall_s"), median_of(two, "wall_s")
    emit(
        {
            "bench": "ddp",
            "summary": True,
            "pairs": pairs,
            "train_images": one[0]["train_images"],
            "images_per_s_1": rate_1,
            "images_per_s_2": rate_2,
            "images_per_s_per_process_2": rate_2 / 2 if rate_2 else None,
            "speedup": rate_2 / rate_1 if rate_1 and rate_2 else None,
            "wall_s_1": wall_1,
            "wall_s_2": wall_2,
            "wall_ratio": wall_2 / wall_1,
            "accuracy_1": [r["accuracy"] for r in one],
            "accuracy_2": [r["accuracy"] for r in two],
            "batches_per_process_2": two[0]["batches_per_process"],
            "tree_peak_pss_mb_1": median_of(one, "tree_peak_pss_mb"),
            "tree_peak_pss_mb_2": median_of(two, "tree_peak_pss_mb"),
            # wait4's ru_maxrss is the largest process (close to largest_hwm), not the sum
            "peak_rss_mb_2_wait4": median_of(two, "peak_rss_mb"),
            "largest_hwm_mb_2": median_of(two, "largest_hwm_mb"),
            "hwm_sum_mb_2": median_of(two, "hwm_sum_mb"),
            "section_s": time.perf_counter() - started,
        }
    )


# ---- main ------------------------------------------------------------------------------------
def subset(src: Path, dst: Path, per_class: int) -> Path:
    """The first `per_class` files of each class folder of `src`, copied: --quick's data."""
    for cls in sorted(p for p in src.iterdir() if p.is_dir()):
        (dst / cls.name).mkdir(parents=True)
        for path in sorted(cls.iterdir())[:per_class]:
            shutil.copyfile(path, dst / cls.name / path.name)
    return dst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip", default="", help="comma-separated: shards,stream,rss,ddp")
    parser.add_argument("--sizes", help="rss: images per generated dataset (10000,50000,100000)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument(
        "--rss-time-limit",
        default=RSS_TIME_LIMIT,
        help=f"rss: --time-limit of each run ('none': whole epochs); default {RSS_TIME_LIMIT}",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "scale.jsonl")
    parser.add_argument(
        "--rss-variants",
        default=",".join(RSS_VARIANTS),
        help="rss: which of " + ", ".join(RSS_VARIANTS),
    )
    parser.add_argument("--pairs", type=int, default=2, help="stream and ddp: paired repetitions")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_baseline(args.child[0], int(args.child[1]))))
        return
    skip = set(filter(None, args.skip.split(",")))
    default_sizes = "2000,4000" if args.quick else "10000,50000,100000"
    sizes = [int(n) for n in (args.sizes or default_sizes).split(",")]
    stamp = {"date": datetime.date.today().isoformat(), "commit": commit(ROOT), "cpu": cpu()}
    emit = appender(args.out, {**stamp, **({"quick": True} if args.quick else {})})
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="imgrec-bench-scale-") as tmp:
        work = Path(tmp)
        train_data = CATS / "train"
        if args.quick:
            train_data = subset(train_data, work / "cats-subset", 150)
        if "shards" not in skip:
            bench_shards(emit, work, reps=1 if args.quick else 2)
        if "stream" not in skip:
            bench_stream(emit, train_data, pairs=args.pairs)
        if "rss" not in skip:
            variants = {v: RSS_VARIANTS[v] for v in args.rss_variants.split(",")}
            bench_rss(emit, work, sizes, args.rss_time_limit, variants)
        if "ddp" not in skip:
            bench_ddp(emit, train_data, pairs=1 if args.quick else args.pairs)


if __name__ == "__main__":
    main()
