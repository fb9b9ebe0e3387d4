"""Fine-tuning on a GPU: `imgrec train` at batch 64 and 128 in bf16 and float32, against the
model's own step rate on the same GPU, in one run.

1. model_only: imgrec's EfficientNet-Lite0 (ImageNet weights, layers up to stride 8 frozen as
   fine-tuning freezes them, channels_last), random 224 px batches already on the GPU, AdamW
   steps under the same autocast as `--precision`: images/s after warm-up. The ceiling: no
   decoding, augmentation, copying or validation.
2. imgrec: `imgrec train DATA --no-audit --epochs E --patience E --batch-size B --precision P`
   (everything else default: RAM cache, DataLoader workers, pinned memory). Fine-tuning
   images/s = train images x epochs / phases.finetune.seconds, and steady images/s = train
   images / the median duration of the epochs after the first (history.csv; the validation
   pass of each epoch included): the first epoch also pays one-off costs (loader workers
   starting, CUDA kernels and lazily imported libraries loading). Ratio to model_only (steady,
   same batch and precision); wall time of the whole command; accuracy.
3. loader_only: imgrec's training DataLoader alone (default augmentation, batch 128) with 4
   workers and with every core but one: the images/s the CPU side can feed.
4. defaults: `imgrec train DATA --no-audit` with no other flag: what the defaults do on a GPU.
   (--no-audit everywhere: the audit's libraries are not needed for the figures here.)

    PYTHONPATH=src python benchmarks/gpu.py --data DIR [--epochs 4] [--out FILE]
        [--skip model_only,loader,defaults]

One JSON line per result, appended to --out (default benchmarks/gpu.jsonl) as soon as it is
measured, so a crash keeps what finished. Needs CUDA; exits in one sentence without it.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BATCHES = (64, 128)
PRECISIONS = ("bf16", "32")


def environment() -> dict:
    import torch

    props = torch.cuda.get_device_properties(0)
    return {
        "gpu": props.name,
        "gpu_memory_gb": round(props.total_memory / 2**30, 1),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }


def model_only(batch: int, precision: str, steps: int = 30, warmup: int = 8) -> dict:
    """AdamW steps of Lite0 on random GPU batches: the model's own rate."""
    import torch
    import torch.nn.functional as F

    from imgrec.models.anatomy import freeze_early_layers
    from imgrec.models.registry import create_model, get_spec
    from imgrec.train.precision import training_dtype

    model = create_model(get_spec("efficientnet_lite0"), num_classes=2).cuda().train()
    freeze_early_layers(model, 8)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    dtype = training_dtype(precision, "cuda", from_scratch=False)
    x = torch.randn(batch, 3, 224, 224, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch,), device="cuda")

    def step() -> None:
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"images_per_s": batch * steps / seconds, "ms_per_step": seconds / steps * 1000}


def loader_only(data: Path, workers: int, epochs: int = 2) -> dict:
    """imgrec's training DataLoader alone (RAM cache of data/train, default augmentation at
    224 px, batch 128, pinned memory, batches copied to the GPU): images/s per epoch."""
    import torch
    from torch.utils.data import DataLoader

    from imgrec.data.cache import DecodedCache, ImageTensorDataset
    from imgrec.data.preprocess import Preprocessing
    from imgrec.data.transforms import train_transform

    p = Preprocessing(224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 256)
    paths = sorted((data / "train").rglob("*.jpg"))
    cache = DecodedCache(paths, p)
    cache.build()
    dataset = ImageTensorDataset(cache, [0] * len(paths), train_transform(p, "default"))
    loader = DataLoader(
        dataset, batch_size=128, shuffle=True, num_workers=workers,
        persistent_workers=True, pin_memory=True,
    )  # fmt: skip
    rates = []
    for _ in range(epochs):
        start, n = time.perf_counter(), 0
        for x, _y in loader:
            n += len(x.cuda(non_blocking=True))
        torch.cuda.synchronize()
        rates.append(n / (time.perf_counter() - start))
    return {"workers": workers, "images_per_s_each_epoch": rates}


def train_images(split_csv: Path) -> int:
    with split_csv.open() as f:
        return sum(1 for row in csv.DictReader(f) if row["split"] == "train")


def imgrec_train(data: Path, out: Path, flags: list[str]) -> dict:
    """`imgrec train DATA --no-audit FLAGS` in a child: fine-tuning rate, epochs, accuracy."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p
        ),
    }
    with tempfile.TemporaryDirectory(prefix="imgrec-gpu-cache-") as cache:
        env["IMGREC_CACHE_DIR"] = cache
        cmd = [sys.executable, "-m", "imgrec", "train", str(data), "--out", str(out)]
        start = time.perf_counter()
        done = subprocess.run(
            [*cmd, "--exist-ok", "-q", "--no-audit", *flags],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        wall = time.perf_counter() - start
    if done.returncode != 0:
        return {"flags": flags, "error": done.stderr[-2000:]}
    metrics = json.loads((out / "metrics.json").read_text())
    with (out / "history.csv").open() as f:  # seconds: since the run started, per epoch
        ends = [float(r["seconds"]) for r in csv.DictReader(f) if r["phase"] == "finetune"]
    durations = [b - a for a, b in zip(ends, ends[1:], strict=False)]
    phases = metrics["phases"]
    finetune = phases.get("finetune", {})
    n_train, epochs, seconds = (
        train_images(out / "split.csv"),
        finetune.get("epochs", 0),
        finetune.get("seconds"),
    )
    return {
        "flags": flags,
        "accuracy": metrics["accuracy"],
        "train_images": n_train,
        "finetune_epochs": epochs,
        "finetune_s": seconds,
        "s_per_epoch": seconds / epochs if seconds and epochs else None,
        # the first fine-tuning epoch carries one-off costs (loader workers starting, CUDA
        # kernels and lazily imported libraries loading); the later ones are the steady rate
        "setup_and_first_epoch_s": seconds - sum(durations) if seconds else None,
        "later_epochs_s": durations,
        "steady_images_per_s": n_train / statistics.median(durations) if durations else None,
        "finetune_images_per_s": n_train * epochs / seconds if seconds and epochs else None,
        "phase_s": {name: value.get("seconds") for name, value in phases.items()},
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "gpu.jsonl")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "gpu-runs")
    parser.add_argument("--skip", default="", help="comma-separated: model_only,loader,defaults")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py needs a CUDA GPU; this machine has none.")
    base = {
        "date": datetime.date.today().isoformat(),
        "commit": subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        or None,  # fmt: skip
        **environment(),
    }

    def emit(row: dict) -> None:
        line = json.dumps({**base, **row})
        print(line, flush=True)
        with args.out.open("a") as f:
            f.write(line + "\n")

    run_all(args, emit)


def run_all(args: argparse.Namespace, emit) -> None:
    """Each bench not in --skip, in the order the docstring lists them."""
    ceiling = {}
    if "model_only" not in args.skip:
        for batch in BATCHES:
            for precision in PRECISIONS:
                ceiling[batch, precision] = model_only(batch, precision)
                emit({"bench": "model_only", "batch": batch, "precision": precision,
                      **ceiling[batch, precision]})  # fmt: skip
    if "loader" not in args.skip:
        for workers in (4, (os.cpu_count() or 2) - 1):
            emit({"bench": "loader_only", **loader_only(args.data, workers)})
    for batch in BATCHES:
        for precision in PRECISIONS:
            flags = ["--epochs", str(args.epochs), "--patience", str(args.epochs),
                     "--batch-size", str(batch), "--precision", precision]  # fmt: skip
            row = imgrec_train(args.data, args.work / f"b{batch}-{precision}", flags)
            rate, top = row.get("steady_images_per_s"), ceiling.get((batch, precision))
            ratio = rate / top["images_per_s"] if rate and top else None
            emit({"bench": "imgrec_train", "batch": batch, "precision": precision,
                  "ratio_to_model_only": ratio, **row})  # fmt: skip
    if "defaults" not in args.skip:
        emit({"bench": "defaults", **imgrec_train(args.data, args.work / "defaults", [])})


if __name__ == "__main__":
    main()
