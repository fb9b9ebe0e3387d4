"""Data audit: `imgrec audit` against the hand-written way to get the same answers.

The baseline is what a person writes without imgrec: decode every photo fully with PIL,
imagehash.phash it, embed it with the same backbone in eager PyTorch (Resize 256, CenterCrop
224, batch 32, as in the PyTorch tutorials), compare all pairs of embeddings with one matrix
product, and run cross-validated logistic regression + cleanlab on the embeddings. Both run in
their own process with an empty embedding cache, so peak RSS and time are their own. A third
run audits a 1000-image subset to show that memory does not grow with the number of images.
Prints one JSON line per result.

    python benchmarks/audit.py [--datasets cats_and_dogs_filtered hymenoptera_data]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from transfer import OUT, SHARED, run_child, tutorial_eval_transform  # noqa: E402

PLACEHOLDER = "imageNotFound.gif"  # hymenoptera_data's "image not found" picture


def baseline(root: Path) -> dict:
    """The straightforward audit: full decodes, eager embeddings, all pairs."""
    import imagehash
    import numpy as np
    import torch
    from cleanlab.filter import find_label_issues
    from PIL import Image
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    from imgrec.data.dataset import load_dataset
    from imgrec.models.efficientnet_lite import imagenet_model

    start = time.perf_counter()
    dataset = load_dataset(root)
    model = imagenet_model().eval()
    tf = tutorial_eval_transform()
    hashes, features, batch = [], [], []

    def flush() -> None:
        with torch.inference_mode():
            x = model.forward_head(model.forward_features(torch.stack(batch)), pre_logits=True)
        features.append(x.numpy())
        batch.clear()

    for path in dataset.paths:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
        hashes.append(imagehash.phash(rgb))
        batch.append(tf(rgb))
        if len(batch) == 32:
            flush()
    if batch:
        flush()
    emb = np.concatenate(features)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    sims = emb @ emb.T
    np.fill_diagonal(sims, 0)
    near = int((np.triu(sims) >= 0.95).sum())
    labels = np.array(dataset.targets())
    probs = cross_val_predict(
        LogisticRegression(max_iter=1000), emb, labels, cv=5, method="predict_proba"
    )
    issues = int(find_label_issues(labels, probs).sum())
    return {
        "images": len(dataset),
        "near_pairs": near,
        "label_issues": issues,
        "seconds": time.perf_counter() - start,
    }


def run_ours(name: str, source: Path) -> dict:
    out = OUT / f"audit-{name}"
    wall, rss, _ = run_child(
        [sys.executable, "-m", "imgrec", "audit", str(source), "--out", str(out), "--quiet"],
        ok_codes=(0, 3),
    )
    report = json.loads((out / "audit.json").read_text())
    ranking = [Path(o["path"]).name for o in report["outlier_ranking"]]
    return {
        "images": report["images"],
        "wall_s": round(wall, 1),
        "images_per_s": round(report["images"] / wall, 1),
        "peak_rss_mb": round(rss),
        "counts": report["counts"],
        "duplicate_groups": len(report["duplicate_groups"]),
        "leakage": report["leakage"],
        "placeholder_outlier_rank": ranking.index(PLACEHOLDER) + 1
        if PLACEHOLDER in ranking
        else None,
    }


def subset_csv(root: Path, n: int) -> Path:
    """A CSV listing the first n images (sorted, both classes) to audit a smaller set."""
    from imgrec.data.dataset import load_dataset

    samples = load_dataset(root).samples
    step = max(1, len(samples) // n)
    chosen = samples[::step][:n]
    path = OUT / f"subset-{root.name}-{n}.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows((str(s.path), s.label) for s in chosen)
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--datasets", nargs="+", default=["cats_and_dogs_filtered", "hymenoptera_data"]
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(baseline(Path(args.child))))
        return
    OUT.mkdir(exist_ok=True)
    for name in args.datasets:
        root = SHARED / name
        ours = run_ours(name, root)
        wall_b, rss_b, text = run_child([sys.executable, __file__, "--child", str(root)])
        base = json.loads(text)
        row = {
            "dataset": name,
            "imgrec": ours,
            "baseline": {**base, "wall_s": round(wall_b, 1), "peak_rss_mb": round(rss_b)},
            "ratio_wall": round(ours["wall_s"] / wall_b, 3),
        }
        if ours["images"] > 1500:
            small = run_ours(f"{name}-1000", subset_csv(root, 1000))
            row["imgrec_1000_images"] = {k: small[k] for k in ("wall_s", "peak_rss_mb")}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
