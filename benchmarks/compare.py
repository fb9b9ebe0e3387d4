"""Model families: imgrec's learners against the straightforward scikit-learn scripts.

Three modes, each printing one JSON line per dataset:

    python benchmarks/compare.py classic [--datasets ...]      # the five classic learners
    python benchmarks/compare.py leaderboard --budget 20m [--datasets cats_and_dogs_filtered]
    python benchmarks/compare.py tune --trials 20 [--datasets hymenoptera_data] [--keep DIR]

`classic` first fills an empty embedding cache (`imgrec audit`), then times `imgrec compare`
on the five classic families, and in the same run the baseline scripts a person writes
without imgrec: HOG as in scikit-image's example (128 px, 8 px cells) with a default SVC and a
default random forest, and frozen embeddings (Resize 256, CenterCrop 224) with a default
LogisticRegression. `leaderboard` and `tune` time the real CLI in a child process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from transfer import DATASETS, SHARED, run_child, tutorial_eval_transform  # noqa: E402

CLASSIC = ("svm-hog", "rf-hog", "tree-hog", "svm-embed", "logreg-embed")
IMGREC = [sys.executable, "-m", "imgrec"]


def _files(root: Path, split: str) -> tuple[list[Path], list[int]]:
    classes = sorted(p.name for p in (root / split).iterdir() if p.is_dir())
    paths, labels = [], []
    for k, name in enumerate(classes):
        for p in sorted((root / split / name).iterdir()):
            paths.append(p)
            labels.append(k)
    return paths, labels


def _hog(path: Path):
    import numpy as np
    from PIL import Image
    from skimage.feature import hog

    with Image.open(path) as im:
        gray = im.convert("L").resize((128, 128))
    return hog(np.asarray(gray) / 255.0, pixels_per_cell=(8, 8), cells_per_block=(2, 2))


def baseline_classic(root: Path, train_dir: str, val_dir: str) -> dict:
    """HOG + default SVC / random forest, embeddings + default logistic regression."""
    import numpy as np
    import torch
    from PIL import Image
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    from imgrec.models.efficientnet_lite import imagenet_model

    out = {}
    (tr, ytr), (va, yva) = _files(root, train_dir), _files(root, val_dir)
    tic = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        xtr, xva = np.stack(list(pool.map(_hog, tr))), np.stack(list(pool.map(_hog, va)))
    out["hog_seconds"] = round(time.perf_counter() - tic, 1)
    for name, model in (("svm_hog", SVC()), ("rf_hog", RandomForestClassifier(random_state=0))):
        tic = time.perf_counter()
        model.fit(xtr, ytr)
        out[f"{name}_accuracy"] = round(float((model.predict(xva) == np.array(yva)).mean()), 4)
        out[f"{name}_fit_seconds"] = round(time.perf_counter() - tic, 1)
    model, tf = imagenet_model().eval(), tutorial_eval_transform()

    def embed(paths):
        rows = []
        for start in range(0, len(paths), 32):
            batch = []
            for p in paths[start : start + 32]:
                with Image.open(p) as im:
                    batch.append(tf(im.convert("RGB")))
            with torch.inference_mode():
                x = model.forward_head(model.forward_features(torch.stack(batch)), pre_logits=True)
            rows.append(x.numpy())
        return np.concatenate(rows)

    tic = time.perf_counter()
    etr, eva = embed(tr), embed(va)
    out["embed_seconds"] = round(time.perf_counter() - tic, 1)
    tic = time.perf_counter()
    logreg = LogisticRegression(max_iter=3000).fit(etr, ytr)
    out["logreg_embed_accuracy"] = round(float((logreg.predict(eva) == np.array(yva)).mean()), 4)
    out["logreg_embed_fit_seconds"] = round(time.perf_counter() - tic, 1)
    return out


def classic(name: str, root: Path) -> dict:
    train_dir, val_dir, _ = DATASETS[name]
    with tempfile.TemporaryDirectory(prefix="imgrec-bench-") as tmp:
        env = {**os.environ, "IMGREC_CACHE_DIR": f"{tmp}/cache"}
        # embeddings cached first: the target is for the block once they are
        audit = subprocess.run(
            IMGREC + ["audit", str(root), "--out", f"{tmp}/audit"], env=env, capture_output=True
        )
        if audit.returncode not in (0, 3):
            sys.exit(f"imgrec audit failed:\n{audit.stderr[-2000:]}")
        args = IMGREC + ["compare", str(root), "--models", ",".join(CLASSIC), "--budget", "30m"]
        boards, walls = [], []
        for attempt in ("first", "cached"):  # the second finds the HOG vectors stored too
            tic = time.perf_counter()
            run = subprocess.run(
                args + ["--out", f"{tmp}/{attempt}", "-q"], env=env, capture_output=True, text=True
            )
            walls.append(time.perf_counter() - tic)
            if run.returncode != 0:
                sys.exit(f"imgrec compare failed:\n{run.stderr[-2000:]}")
            boards.append(json.loads((Path(tmp) / attempt / "leaderboard.json").read_text()))
        board = boards[0]
        cached_rows = {e["family"]: e for e in boards[1]["entries"]}
    rows = {e["family"]: e for e in board["entries"]}
    base_wall, base_rss, base_out = run_child(
        [sys.executable, __file__, "_baseline", str(root), train_dir, val_dir]
    )
    base = json.loads(base_out.strip().splitlines()[-1])
    train_sum = sum(rows[f]["train_seconds"] for f in CLASSIC if rows[f]["status"] == "ok")
    return {
        "benchmark": "classic",
        "dataset": name,
        "imgrec_compare_wall_seconds": round(walls[0], 1),
        "imgrec_train_seconds_sum": round(train_sum, 1),
        "cached_compare_wall_seconds": round(walls[1], 1),
        "cached_train_seconds_sum": round(
            sum(cached_rows[f]["train_seconds"] or 0 for f in CLASSIC), 1
        ),
        "imgrec": {
            f: {k: rows[f][k] for k in ("accuracy", "macro_f1", "train_seconds", "ms_per_image")}
            for f in CLASSIC
        },
        "best_classic": max(CLASSIC, key=lambda f: rows[f]["accuracy"] or 0),
        "baseline": base,
        "baseline_wall_seconds": round(base_wall, 1),
        "svm_hog_vs_baseline": round(rows["svm-hog"]["accuracy"] - base["svm_hog_accuracy"], 4),
        "rf_hog_vs_baseline": round(rows["rf-hog"]["accuracy"] - base["rf_hog_accuracy"], 4),
    }


def leaderboard(name: str, root: Path, budget: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="imgrec-bench-") as tmp:
        wall, rss, _ = run_child(
            IMGREC + ["compare", str(root), "--budget", budget, "--out", f"{tmp}/cmp", "-q"]
        )
        board = json.loads((Path(tmp) / "cmp" / "leaderboard.json").read_text())
    return {
        "benchmark": "leaderboard",
        "dataset": name,
        "budget": budget,
        "wall_seconds": round(wall, 1),
        "peak_rss_mb": round(rss),
        "evaluated_on": board["evaluated_on"],
        "rows": [
            {
                k: e[k]
                for k in (
                    "rank",
                    "family",
                    "status",
                    "accuracy",
                    "macro_f1",
                    "train_seconds",
                    "ms_per_image",
                    "size_mb",
                    "note",
                )
            }
            for e in board["entries"]
        ],
        "best_is_first_row": Path(board["best"]).name == "best.imgrec",
    }


def tune(name: str, root: Path, trials: int, budget: str | None, keep: Path | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="imgrec-bench-") as tmp:
        out = keep or Path(tmp) / "t"
        args = IMGREC + ["tune", str(root), "--trials", str(trials), "--out", str(out), "-q"]
        wall, rss, _ = run_child(args + (["--budget", budget] if budget else []))
        import csv

        rows = list(csv.DictReader((out / "trials.csv").open()))
    states = [r["state"] for r in rows]
    values = [float(r["value"]) for r in rows if r["state"] == "COMPLETE"]
    default = float(rows[0]["value"]) if rows[0]["state"] == "COMPLETE" else None
    return {
        "benchmark": "tune",
        "dataset": name,
        "trials": len(rows),
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
        "pruned_fraction": round(states.count("PRUNED") / len(rows), 3),
        "default_value": default,
        "best_value": max(values) if values else None,
        "best_not_worse_than_default": default is None or max(values) >= default,
        "wall_seconds": round(wall, 1),
        "budget": budget,
    }


def main() -> None:
    if sys.argv[1:2] == ["_baseline"]:
        root, train_dir, val_dir = sys.argv[2:5]
        print(json.dumps(baseline_classic(Path(root), train_dir, val_dir)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("classic", "leaderboard", "tune"))
    parser.add_argument("--datasets", nargs="+", default=None)
    parser.add_argument("--budget", default=None)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--keep", type=Path, default=None, help="tune: keep the search here")
    args = parser.parse_args()
    defaults = {
        "classic": list(DATASETS),
        "leaderboard": ["cats_and_dogs_filtered"],
        "tune": ["hymenoptera_data"],
    }
    for name in args.datasets or defaults[args.mode]:
        root = SHARED / name
        if args.mode == "classic":
            result = classic(name, root)
        elif args.mode == "leaderboard":
            result = leaderboard(name, root, args.budget or "20m")
        else:
            result = tune(name, root, args.trials, args.budget, args.keep)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
