"""Temperature scaling: does it make the default model's confidence honest on unseen images?

For each dataset: train the default model head-only (`epochs=0`: EfficientNet-Lite0 frozen,
linear head; the embedding store caches the backbone features), holding out 15% of the train
folder for its own model selection, so the validation folder stays unseen. On the validation
folder: accuracy, log loss (NLL) and ECE of the model as trained (T = 1, the baseline) against
temperature-scaled under 2-fold cross-fitting (T fitted on one half, measured on the other,
both ways, pooled), averaged over several random halvings. Prints one JSON line per dataset.

    python benchmarks/calibration.py [--datasets cats_and_dogs_filtered hymenoptera_data]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from transfer import DATASETS, SHARED  # noqa: E402

HALVINGS = 10  # random 2-fold splits averaged; one split of a few hundred images is noisy


def run(name: str) -> dict:
    from imgrec import ImageClassifier, load_dataset
    from imgrec.evaluate.calibrate import collect_logits
    from imgrec.evaluate.calibration import expected_calibration_error
    from imgrec.evaluate.temperature import cross_fitted, fit_temperature, softmax

    dataset = load_dataset(SHARED / name)
    train, val = dataset.subset("train"), dataset.subset("val")
    start = time.perf_counter()
    clf = ImageClassifier("efficientnet_lite0", epochs=0, seed=0)
    clf.fit(train, progress=False)  # its own 15% of train for model selection
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    logits, targets, skipped = collect_logits(clf, val)
    logits_s = time.perf_counter() - start
    probs = softmax(logits)
    folds = [cross_fitted(logits, targets, folds=2, seed=seed) for seed in range(HALVINGS)]

    def mean(key: str) -> float:
        return float(np.mean([f[key] for f in folds]))

    return {
        "bench": "calibration",
        "dataset": name,
        "model": "efficientnet_lite0 head-only (epochs=0)",
        "val_images": int(len(targets)),
        "skipped": len(skipped),
        "accuracy": float(np.mean(probs.argmax(1) == targets)),
        "nll_uncalibrated": folds[0]["nll_before"],
        "nll_cross_fitted": mean("nll_after"),
        "ece_uncalibrated": folds[0]["ece_before"],
        "ece_cross_fitted": mean("ece_after"),
        "ece_cross_fitted_worst": float(max(f["ece_after"] for f in folds)),
        "temperature_all_val": fit_temperature(logits, targets),
        "temperature_halves_mean": mean("temperature_mean"),
        "ece_in_sample": expected_calibration_error(
            softmax(logits, fit_temperature(logits, targets)), targets
        ),
        "halvings": HALVINGS,
        "train_s": round(train_s, 1),
        "logits_s": round(logits_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    args = parser.parse_args()
    for name in args.datasets:
        print(json.dumps(run(name)), flush=True)


if __name__ == "__main__":
    main()
