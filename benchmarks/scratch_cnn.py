"""CNN from scratch: `imgrec train --model cnn-scratch` against a plain PyTorch CNN, same clock.

    python benchmarks/scratch_cnn.py [--time-limit 600] [--datasets cats_and_dogs_filtered]

Both arms train from random weights on the dataset's train folder for the same wall-clock
limit, each in its own child process, one after the other, and are scored on its validation
folder after every epoch. The baseline is the CNN a person writes from the tutorials (the
reference figures in shared/MEASURED.md): four conv-ReLU-max-pool blocks (32-64-128-128), a
512-unit dense layer with dropout 0.5, Adam at 1e-3, batch 32, 128x128 resize with random
horizontal flips, images decoded by an ImageFolder DataLoader each epoch. imgrec runs its
family recipe with `--time-limit`; its reported model is the best validation epoch, and the
JSON also gives the last epoch, for both arms. One JSON line per dataset.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from compare import IMGREC  # noqa: E402
from transfer import DATASETS, LOADER_WORKERS, SHARED, run_child  # noqa: E402


def baseline(root: Path, train_dir: str, val_dir: str, limit: float) -> dict:
    """The tutorial CNN, trained epoch by epoch until `limit` seconds have passed."""
    import torch
    from torch import nn
    from torchvision import datasets, transforms

    torch.manual_seed(0)
    started = time.perf_counter()
    normalise = [transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)]
    train_tf = transforms.Compose(
        [transforms.Resize((128, 128)), transforms.RandomHorizontalFlip(), *normalise]
    )
    val_tf = transforms.Compose([transforms.Resize((128, 128)), *normalise])
    loader = {"batch_size": 32, "num_workers": LOADER_WORKERS}
    train = torch.utils.data.DataLoader(
        datasets.ImageFolder(root / train_dir, train_tf), shuffle=True, **loader
    )
    val = torch.utils.data.DataLoader(datasets.ImageFolder(root / val_dir, val_tf), **loader)

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]

    model = nn.Sequential(
        *block(3, 32), *block(32, 64), *block(64, 128), *block(128, 128),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(128 * 8 * 8, 512), nn.ReLU(),
        nn.Linear(512, len(train.dataset.classes)),
    )  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = []
    while time.perf_counter() - started < limit:
        model.train()
        for x, y in train:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        model.eval()
        correct = 0
        with torch.inference_mode():
            for x, y in val:
                correct += int((model(x).argmax(1) == y).sum())
        history.append(
            {"val_acc": correct / len(val.dataset), "seconds": time.perf_counter() - started}
        )
    return _summary(history)


def _summary(history: list[dict]) -> dict:
    best = max(range(len(history)), key=lambda i: history[i]["val_acc"])
    return {
        "epochs": len(history),
        "best_accuracy": round(history[best]["val_acc"], 4),
        "best_epoch": best + 1,
        "best_epoch_seconds": round(history[best]["seconds"], 1),
        "last_accuracy": round(history[-1]["val_acc"], 4),
        "last_seconds": round(history[-1]["seconds"], 1),
        "curve": [round(h["val_acc"], 4) for h in history],
        "curve_seconds": [round(h["seconds"], 1) for h in history],
    }


def imgrec_arm(root: Path, limit: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="imgrec-bench-") as tmp:
        run = Path(tmp) / "run"
        args = IMGREC + [
            "train", str(root), "--model", "cnn-scratch", "--no-audit",
            "--time-limit", f"{limit:g}s", "--out", str(run), "-q",
        ]  # fmt: skip
        wall, rss, _ = run_child(args)
        rows = list(csv.DictReader((run / "history.csv").open()))
        metrics = json.loads((run / "metrics.json").read_text())
    history = [{"val_acc": float(r["val_acc"]), "seconds": float(r["seconds"])} for r in rows]
    summary = _summary(history)
    summary.update(
        evaluated_accuracy=round(metrics["accuracy"], 4),
        macro_f1=round(metrics["macro_f1"], 4),
        wall_seconds=round(wall, 1),
        peak_rss_mb=round(rss),
    )
    return summary


def seconds_to_reach(arm: dict, accuracy: float) -> float | None:
    """When `arm` first scored at least `accuracy` on validation (None: never)."""
    reached = zip(arm["curve"], arm["curve_seconds"], strict=True)
    return next((s for a, s in reached if a >= accuracy), None)


def main() -> None:
    if sys.argv[1:2] == ["_baseline"]:
        root, train_dir, val_dir, limit = sys.argv[2:6]
        print(json.dumps(baseline(Path(root), train_dir, val_dir, float(limit))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["cats_and_dogs_filtered"])
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds per arm")
    args = parser.parse_args()
    for name in args.datasets:
        root = SHARED / name
        train_dir, val_dir, _ = DATASETS[name]
        ours = imgrec_arm(root, args.time_limit)
        base_args = [sys.executable, __file__, "_baseline", str(root), train_dir, val_dir]
        base_wall, base_rss, out = run_child(base_args + [str(args.time_limit)])
        base = json.loads(out)
        base.update(wall_seconds=round(base_wall, 1), peak_rss_mb=round(base_rss))
        reached = seconds_to_reach(ours, base["best_accuracy"])
        print(
            json.dumps(
                {
                    "benchmark": "scratch_cnn",
                    "dataset": name,
                    "time_limit_seconds": args.time_limit,
                    "imgrec": ours,
                    "baseline": base,
                    "accuracy_gain": round(ours["best_accuracy"] - base["best_accuracy"], 4),
                    "accuracy_ratio": round(ours["best_accuracy"] / base["best_accuracy"], 3),
                    # imgrec's time to the baseline's best accuracy / the baseline's time to it
                    "time_to_baseline_best_ratio": (
                        round(reached / base["best_epoch_seconds"], 3) if reached else None
                    ),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
