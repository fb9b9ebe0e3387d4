"""Selective prediction: how accurate the model is on the predictions it is sure enough about.

Keeping only predictions whose confidence (top-1 probability) is at least t trades coverage
(the share of images that get an answer) for accuracy (of the answers given). The curve over
every t, and the lowest t that reaches a target accuracy, tell a user which
`--min-confidence` to serve with.
"""

from __future__ import annotations

import numpy as np

TARGET_ACCURACIES = (0.95, 0.99)
MAX_POINTS = 60  # enough for a smooth plot, small enough for metrics.json


def coverage_curve(probs: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Arrays `threshold`, `coverage`, `accuracy`: one entry per distinct confidence t, from
    the highest down; entry i keeps every prediction with confidence >= threshold[i]."""
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(1)
    correct = probs.argmax(1) == np.asarray(targets)
    order = np.argsort(-confidence, kind="stable")
    confidence, correct = confidence[order], correct[order]
    if confidence.size == 0:
        empty = np.zeros(0)
        return {"threshold": empty, "coverage": empty, "accuracy": empty}
    # the last index of each run of equal confidences: ties are kept or dropped together
    ends = np.flatnonzero(np.r_[confidence[1:] != confidence[:-1], True])
    kept = ends + 1
    return {
        "threshold": confidence[ends],
        "coverage": kept / confidence.size,
        "accuracy": np.cumsum(correct)[ends] / kept,
    }


def threshold_for(curve: dict[str, np.ndarray], accuracy: float) -> dict | None:
    """The lowest threshold (so the largest coverage) whose kept predictions reach `accuracy`;
    None when no threshold does."""
    reached = np.flatnonzero(curve["accuracy"] >= accuracy - 1e-12)
    if reached.size == 0:
        return None
    i = int(reached[-1])
    return {
        "threshold": float(curve["threshold"][i]),
        "coverage": float(curve["coverage"][i]),
        "accuracy": float(curve["accuracy"][i]),
    }


def selective_summary(
    probs: np.ndarray, targets: np.ndarray, targets_accuracy=TARGET_ACCURACIES
) -> dict:
    """The curve (thinned to at most MAX_POINTS points, always keeping both ends) and, per
    target accuracy, the threshold that reaches it: the `coverage` section of metrics.json."""
    curve = coverage_curve(probs, targets)
    n = curve["threshold"].size
    keep = np.unique(np.r_[np.linspace(0, n - 1, min(n, MAX_POINTS)).round().astype(int)])
    keep = keep[keep < n]
    points = [
        {
            "threshold": float(curve["threshold"][i]),
            "coverage": float(curve["coverage"][i]),
            "accuracy": float(curve["accuracy"][i]),
        }
        for i in keep
    ]
    return {
        "curve": points,
        "targets": [
            {"accuracy": float(a), "reached": threshold_for(curve, a)} for a in targets_accuracy
        ],
    }
