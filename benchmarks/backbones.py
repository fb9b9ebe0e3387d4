"""The offline backbones side by side: size and CPU speed of EfficientNet-Lite0/1/2.

For each backbone imgrec can build with ImageNet weights offline (models/registry.py), one JSON
line: parameters (the 1000-class ImageNet network), the size of the weights file its package
ships, the input size it runs at, and its speed on this CPU with a 2-class head, at batch 32 on
random input of that size:
- ONNX Runtime, as `imgrec predict` runs it (the graph of infer/engine.py's network_graph:
  softmax, drift signature; one session, batch axis pinned to 32, `--threads`);
- eager PyTorch for comparison (eval, channels_last, inference_mode, torch.set_num_threads).
Timing: after `--warmup` batches each, the two engines and the backbones take turns batch by
batch (`--repeats` rounds), so a burst of other work on the machine slows them alike; the rate
is 32 / the median seconds of one batch. `vs_lite0` divides by EfficientNet-Lite0's ONNX rate
from the same run (machines are noisy: compare ratios). The figures `imgrec models` shows
(cli/model.py OFFLINE_FACTS) come from this script.

    python benchmarks/backbones.py [--threads 2] [--repeats 12] > benchmarks/backbones-DATE.jsonl
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import time
from importlib import import_module
from pathlib import Path

BATCH = 32


def cpu() -> str:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from presets import cpu as described

    return described()


def commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"


def weights_mb(variant) -> float:
    module = import_module(variant.module)
    path = getattr(module, variant.file_class).get_model_file_path()
    return round(os.path.getsize(path) / 1e6, 1)


def prepare(name: str, threads: int) -> dict:
    import numpy as np
    import torch

    from imgrec.infer.engine import OnnxEngine, network_graph
    from imgrec.models import efficientnet_lite
    from imgrec.models.registry import create_model, get_spec

    spec = get_spec(name)
    members = name.split("+")  # `--preset best` joins the three (models/ensemble.py)
    variants = [efficientnet_lite.VARIANTS[m] for m in members]
    params = sum(
        p.numel()
        for v in variants
        for p in efficientnet_lite.imagenet_model(v.timm_name).parameters()
    )
    network = create_model(spec, num_classes=2).eval()
    size = spec.input_size
    start = time.perf_counter()
    engine = OnnxEngine(network_graph(network, size), (BATCH,), threads=threads)
    export_s = time.perf_counter() - start
    images = np.random.default_rng(0).standard_normal((BATCH, 3, size, size), dtype=np.float32)
    tensor = torch.from_numpy(images).contiguous(memory_format=torch.channels_last)

    def eager() -> None:
        with torch.inference_mode():
            network(tensor)

    return {
        "backbone": name,
        "timm_name": spec.timm_name,
        "params_m": round(params / 1e6, 2),
        "weights_mb": round(sum(weights_mb(v) for v in variants), 1),
        "weights_package": "+".join(v.package for v in variants),
        "input_size": size,
        "resize_size": spec.resize_size,
        "onnx_export_s": round(export_s, 2),
        "runs": {"onnx": lambda: engine(images), "torch": eager},
        "times": {"onnx": [], "torch": []},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    from imgrec.models.efficientnet_lite import VARIANTS
    from imgrec.models.families import BEST_ENSEMBLE

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    rows = [prepare(name, args.threads) for name in [*VARIANTS, BEST_ENSEMBLE]]
    for row in rows:
        for run in row["runs"].values():
            for _ in range(args.warmup):
                run()
    for _ in range(args.repeats):
        for row in rows:
            for engine, run in row["runs"].items():
                start = time.perf_counter()
                run()
                row["times"][engine].append(time.perf_counter() - start)
    lite0 = BATCH / statistics.median(rows[0]["times"]["onnx"])
    today, head = datetime.date.today().isoformat(), commit()
    for row in rows:
        times = row.pop("times")
        row.pop("runs")
        onnx = BATCH / statistics.median(times["onnx"])
        torch_rate = BATCH / statistics.median(times["torch"])
        row |= {
            "onnx_img_s": onnx,
            "torch_img_s": torch_rate,
            "onnx_vs_torch": onnx / torch_rate,
            "onnx_vs_lite0": onnx / lite0,
            "batch": BATCH,
            "threads": args.threads,
            "timing": f"median of {args.repeats} batches after {args.warmup} warm-up, engines "
            "and backbones interleaved batch by batch, random input, 2-class head",
            "onnxruntime": import_module("onnxruntime").__version__,
            "torch": torch.__version__,
            "loadavg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "date": today,
            "commit": head,
            "cpu": cpu(),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
