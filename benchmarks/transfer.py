"""Transfer learning: `imgrec train` with defaults vs two baselines, same backbone and weights.

(a) the PyTorch transfer-learning tutorial recipe (full fine-tune, SGD 1e-3 momentum 0.9,
    StepLR 7/0.1, RandomResizedCrop 224 + flip, batch 32) for a fixed wall-clock budget;
(b) frozen features (Resize 256, CenterCrop 224, batch 32) + scikit-learn LogisticRegression.
Each runs in its own process so peak RSS is its own. Prints one JSON line per result.

    python benchmarks/transfer.py [--datasets cats_and_dogs_filtered hymenoptera_data]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DATASETS = {
    "cats_and_dogs_filtered": ("train", "validation", 420),
    "hymenoptera_data": ("train", "val", 200),
}
OUT = Path(__file__).parent / "out"
# DataLoader workers of the baselines (the tutorial uses 4; on 2 cores 0 is fastest).
LOADER_WORKERS = int(__import__("os").environ.get("BASELINE_LOADER_WORKERS", "2"))


def run_child(
    args: list[str], ok_codes: tuple[int, ...] = (0,), env: dict[str, str] | None = None
) -> tuple[float, float, str]:
    """Run a child process; return (wall seconds, its own peak RSS in MB, stdout).

    Each child gets an empty embedding cache, so no run profits from features an earlier
    run (or an audit) left behind. `env` adds variables (e.g. PYTHONPATH of another checkout).
    """
    import os
    import tempfile

    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
        tempfile.TemporaryDirectory(prefix="imgrec-bench-cache-") as cache,
    ):
        start = time.perf_counter()
        env = {**os.environ, **(env or {}), "IMGREC_CACHE_DIR": cache}
        proc = subprocess.Popen(args, stdout=out, stderr=err, text=True, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) not in ok_codes:
            sys.exit(f"{' '.join(args)} failed:\n{err.read()[-3000:]}")
        return wall, usage.ru_maxrss / 1024, out.read()


def tutorial_eval_transform():
    """The tutorials' evaluation preprocessing for this backbone: Resize 256, CenterCrop 224."""
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize([0.5] * 3, [0.5] * 3),
        ]
    )


def baseline_b(root: Path, train_dir: str, val_dir: str) -> dict:
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from torchvision import datasets

    from imgrec.models.efficientnet_lite import imagenet_model

    start = time.perf_counter()
    model = imagenet_model().eval()
    tf = tutorial_eval_transform()

    def features(folder: Path):
        data = datasets.ImageFolder(folder, tf)
        loader = torch.utils.data.DataLoader(data, batch_size=32, num_workers=LOADER_WORKERS)
        feats, ys = [], []
        with torch.inference_mode():
            for x, y in loader:
                feats.append(model.forward_head(model.forward_features(x), pre_logits=True))
                ys.append(y)
        return torch.cat(feats).numpy(), torch.cat(ys).numpy()

    xtr, ytr = features(root / train_dir)
    xva, yva = features(root / val_dir)
    clf = LogisticRegression(max_iter=2000).fit(xtr, ytr)
    pred = clf.predict(xva)
    return {
        "accuracy": float(accuracy_score(yva, pred)),
        "macro_f1": float(f1_score(yva, pred, average="macro")),
        "seconds": time.perf_counter() - start,
        "n_val": int(np.size(yva)),
    }


def baseline_a(root: Path, train_dir: str, val_dir: str, budget: float) -> dict:
    import torch
    from torch import nn
    from torchvision import datasets, transforms

    from imgrec.models.efficientnet_lite import imagenet_model

    start = time.perf_counter()
    norm = transforms.Normalize([0.5] * 3, [0.5] * 3)
    train_tf = transforms.Compose(
        [
            transforms.RandomResizedCrop(224),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            norm,
        ]
    )
    val_tf = transforms.Compose(
        [transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), norm]
    )
    train = datasets.ImageFolder(root / train_dir, train_tf)
    val = datasets.ImageFolder(root / val_dir, val_tf)
    tl = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True, num_workers=LOADER_WORKERS)
    vl = torch.utils.data.DataLoader(val, batch_size=32, num_workers=LOADER_WORKERS)
    model = imagenet_model()
    model.reset_classifier(len(train.classes))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.1)
    loss_fn = nn.CrossEntropyLoss()
    epochs, best, best_at = [], 0.0, None
    while time.perf_counter() - start < budget:
        model.train()
        for x, y in tl:
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
        sched.step()
        model.eval()
        correct = 0
        with torch.inference_mode():
            for x, y in vl:
                correct += (model(x).argmax(1) == y).sum().item()
        acc = correct / len(val)
        epochs.append(
            {"epoch": len(epochs) + 1, "val_acc": acc, "seconds": time.perf_counter() - start}
        )
        if acc > best:
            best, best_at = acc, time.perf_counter() - start
    return {
        "accuracy": best,
        "seconds_to_best": best_at,
        "seconds": time.perf_counter() - start,
        "epochs": epochs,
        "budget_s": budget,
    }


def run_imgrec(name: str, root: Path, extra: list[str] | None = None) -> dict:
    out = OUT / f"imgrec-{name}"
    launched = time.time()
    args = ["train", str(root), "--out", str(out), "--exist-ok", "--quiet", *(extra or [])]
    wall, rss, _ = run_child([sys.executable, "-m", "imgrec", *args])
    metrics = json.loads((out / "metrics.json").read_text())
    with (out / "history.csv").open() as f:
        history = [
            {k: (v if k == "phase" else float(v)) for k, v in row.items() if k != "params"}
            for row in csv.DictReader(f)
        ]
    return {
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "wall_s": wall,
        "peak_rss_mb": rss,
        "history": [(r["phase"], r["val_acc"], round(r["time"] - launched, 1)) for r in history],
    }


def first_reach(history: list, target: float) -> float | None:
    return next((t for _, acc, t in history if acc >= target - 1e-9), None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--only-baseline", choices=["a", "b"], help="run just one baseline")
    parser.add_argument(
        "--only-imgrec",
        action="store_true",
        help="run just imgrec; with --epochs 0 this times phase 1, which reaches (b)",
    )
    parser.add_argument("--epochs", type=int, help="passed to imgrec train")
    parser.add_argument(
        "--reach-b",
        action="store_true",
        help="imgrec (phase 1 only: --epochs 0) and baseline (b), same run: the speed target",
    )
    args = parser.parse_args()
    if args.child:
        kind, name, budget = args.child
        train_dir, val_dir, _ = DATASETS[name]
        root = SHARED / name
        result = (
            baseline_b(root, train_dir, val_dir)
            if kind == "b"
            else baseline_a(root, train_dir, val_dir, float(budget))
        )
        print(json.dumps(result))
        return
    OUT.mkdir(exist_ok=True)
    if args.only_baseline:
        for name in args.datasets:
            budget = str(DATASETS[name][2])
            wall, rss, text = run_child(
                [sys.executable, __file__, "--child", args.only_baseline, name, budget]
            )
            row = {k: v for k, v in json.loads(text).items() if k != "epochs"}
            print(
                json.dumps(
                    {
                        "dataset": name,
                        "method": f"baseline_{args.only_baseline}",
                        "loader_workers": LOADER_WORKERS,
                        **row,
                        "wall_s": wall,
                        "peak_rss_mb": rss,
                    }
                ),
                flush=True,
            )
        return
    if args.only_imgrec:
        extra = [] if args.epochs is None else ["--epochs", str(args.epochs)]
        for name in args.datasets:
            row = run_imgrec(name, SHARED / name, extra)
            print(
                json.dumps(
                    {
                        "dataset": name,
                        "method": "imgrec",
                        "extra_args": extra,
                        "first_head_row_s": row["history"][0][2],
                        **row,
                    }
                ),
                flush=True,
            )
        return
    if args.reach_b:
        for name in args.datasets:
            ours = run_imgrec(name, SHARED / name, ["--epochs", "0"])
            wall_b, rss_b, text_b = run_child([sys.executable, __file__, "--child", "b", name, "0"])
            b = {**json.loads(text_b), "wall_s": wall_b, "peak_rss_mb": rss_b}
            reach = first_reach(ours["history"], b["accuracy"])
            print(
                json.dumps(
                    {
                        "dataset": name,
                        "loader_workers_b": LOADER_WORKERS,
                        "imgrec_phase1_accuracy": ours["accuracy"],
                        "imgrec_s_to_reach_b": reach,
                        "imgrec_wall_s": ours["wall_s"],
                        "b_accuracy": b["accuracy"],
                        "b_wall_s": wall_b,
                        "ratio_reach_b": reach / wall_b if reach else None,
                    }
                ),
                flush=True,
            )
        return
    for name in args.datasets:
        _, _, budget_a = DATASETS[name]
        root = SHARED / name
        ours = run_imgrec(name, root)
        wall_b, rss_b, text_b = run_child([sys.executable, __file__, "--child", "b", name, "0"])
        b = {**json.loads(text_b), "wall_s": wall_b, "peak_rss_mb": rss_b}
        wall_a, rss_a, text_a = run_child(
            [sys.executable, __file__, "--child", "a", name, str(budget_a)]
        )
        a = {**json.loads(text_a), "wall_s": wall_a, "peak_rss_mb": rss_a}
        reach_b = first_reach(ours["history"], b["accuracy"])
        reach_a = first_reach(ours["history"], a["accuracy"])
        for label, row in (
            ("imgrec", ours),
            ("baseline_b_frozen_logreg", b),
            ("baseline_a_tutorial", a),
        ):
            print(
                json.dumps(
                    {
                        "dataset": name,
                        "method": label,
                        **{k: v for k, v in row.items() if k not in ("history", "epochs")},
                    }
                )
            )
        print(
            json.dumps(
                {
                    "dataset": name,
                    "summary": True,
                    "imgrec_accuracy": ours["accuracy"],
                    "b_accuracy": b["accuracy"],
                    "a_best_accuracy": a["accuracy"],
                    "imgrec_s_to_reach_b": reach_b,
                    "b_wall_s": b["wall_s"],
                    "ratio_reach_b": reach_b / b["wall_s"] if reach_b else None,
                    "imgrec_s_to_reach_a": reach_a,
                    "a_s_to_best": a["seconds_to_best"],
                    "ratio_reach_a": reach_a / a["seconds_to_best"] if reach_a else None,
                    "imgrec_peak_rss_mb": ours["peak_rss_mb"],
                    "history": ours["history"],
                    "a_epochs": a["epochs"],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
