"""`imgrec train` presets against today's default and baseline (b), one paired run per dataset.

For each dataset, back to back in this order, each in its own process with an empty cache:
1. today's default: `imgrec train DATA` from another checkout (`--before`, e.g. a worktree of
   the commit before the presets), the reference the targets are ratios of;
2. the default now: `imgrec train DATA`;
3. `--preset fast`;
4. `--preset best --time-limit 15m`;
5. baseline (b) of benchmarks/transfer.py: frozen EfficientNet-Lite0 features at 224 px +
   scikit-learn LogisticRegression (DataLoader workers: BASELINE_LOADER_WORKERS, default 2);
6. with `--ablation`, the steps between fast and best: `--preset fast --model M` for M =
   efficientnet_lite2 and efficientnet_lite0+efficientnet_lite2.
Every imgrec run reports on the data's own validation folder, which chose nothing (imgrec
chooses on 15% of train). One JSON line per run and one summary line per dataset are appended
to `--out` with the date, the commit and the CPU; nothing is rewritten.

    python benchmarks/presets.py --before /tmp/before [--ablation] [--datasets ...]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from transfer import DATASETS, OUT, SHARED, first_reach, run_child  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def commit(where: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=where, capture_output=True, text=True
    ).stdout.strip()


def cpu() -> str:
    """The CPU model and whether it has AVX-512 (VNNI, BF16) or only AVX2: machines differ."""
    info = Path("/proc/cpuinfo").read_text()
    model = next(
        line.split(":", 1)[1].strip() for line in info.splitlines() if "model name" in line
    )
    flags = set(next(ln for ln in info.splitlines() if ln.startswith("flags")).split())
    simd = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16") if f in flags]
    return f"{model}; {', '.join(simd)}; {len(info.split('processor')) - 1} cores"


def appender(out: Path, stamp: dict):
    """A function that prints one result as a JSON line and appends it to `out`, stamped."""

    def emit(row: dict) -> None:
        line = json.dumps({**stamp, **row})
        print(line, flush=True)
        with out.open("a") as f:
            f.write(line + "\n")

    return emit


def train(label: str, dataset: str, args: list[str], code: Path) -> dict:
    out = OUT / f"presets-{dataset}-{label}"
    launched = time.time()
    cmd = [sys.executable, "-m", "imgrec", "train", str(SHARED / dataset), "--out", str(out)]
    cmd += ["--exist-ok", "--quiet", *args]
    wall, rss, stdout = run_child(cmd, env={"PYTHONPATH": str(code / "src")})
    metrics = json.loads((out / "metrics.json").read_text())
    with (out / "history.csv").open() as f:
        history = [
            (row["phase"], float(row["val_acc"]), round(float(row["time"]) - launched, 1))
            for row in csv.DictReader(f)
        ]
    return {
        "run": label,
        "args": args,
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "n_scored": metrics.get("n"),
        "wall_s": wall,
        "peak_rss_mb": rss,
        "history": history,
        "plan": metrics.get("plan"),
        "phases": metrics.get("phases"),
    }


def baseline_b(dataset: str) -> dict:
    script = str(Path(__file__).parent / "transfer.py")
    wall, rss, text = run_child(
        [sys.executable, script, "--child", "b", dataset, "0"],
        env={"PYTHONPATH": str(ROOT / "src")},
    )
    return {"run": "baseline_b", **json.loads(text), "wall_s": wall, "peak_rss_mb": rss}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", type=Path, required=True, help="checkout of today's default")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--ablation", action="store_true")
    parser.add_argument("--best-limit", default="15m")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "presets.jsonl")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    stamp = {
        "date": datetime.date.today().isoformat(),
        "commit": commit(ROOT),
        "before_commit": commit(args.before),
        "cpu": cpu(),
    }

    emit = appender(args.out, stamp)
    for dataset in args.datasets:
        runs = {
            "today_default": train("today_default", dataset, [], args.before),
            "default": train("default", dataset, [], ROOT),
            "fast": train("fast", dataset, ["--preset", "fast"], ROOT),
            "best": train(
                "best", dataset, ["--preset", "best", "--time-limit", args.best_limit], ROOT
            ),
        }
        for row in runs.values():
            emit({"dataset": dataset, **row})
        b = baseline_b(dataset)
        emit({"dataset": dataset, **b})
        if args.ablation:
            for model in ("efficientnet_lite2", "efficientnet_lite0+efficientnet_lite2"):
                row = train(f"fast-{model}", dataset, ["--preset", "fast", "--model", model], ROOT)
                emit({"dataset": dataset, **row})
        today, fast = runs["today_default"], runs["fast"]
        reach = first_reach(fast["history"], b["accuracy"])
        emit(
            {
                "dataset": dataset,
                "summary": True,
                "default_vs_today_wall": runs["default"]["wall_s"] / today["wall_s"],
                "default_minus_today_accuracy": runs["default"]["accuracy"] - today["accuracy"],
                "fast_minus_b_accuracy": fast["accuracy"] - b["accuracy"],
                "fast_s_to_reach_b": reach,
                "fast_reach_b_vs_b_wall": reach / b["wall_s"] if reach else None,
                "fast_wall_vs_b_wall": fast["wall_s"] / b["wall_s"],
                "best_minus_today_accuracy": runs["best"]["accuracy"] - today["accuracy"],
                "best_wall_s": runs["best"]["wall_s"],
                "best_peak_rss_mb": runs["best"]["peak_rss_mb"],
                "default_peak_rss_mb": runs["default"]["peak_rss_mb"],
            }
        )


if __name__ == "__main__":
    main()
