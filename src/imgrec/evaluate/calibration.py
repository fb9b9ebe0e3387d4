"""How far confidence can be trusted: expected calibration error and its reliability bins.

A model that says 90% should be right nine times in ten. ECE is the gap between confidence
(top-1 probability) and accuracy, averaged over equal-width confidence bins weighted by how
many predictions fall in each (Guo et al., 2017, "On Calibration of Modern Neural Networks").
"""

from __future__ import annotations

import numpy as np

DEFAULT_BINS = 15  # Guo et al.'s choice, and what most papers report


def reliability_bins(
    probs: np.ndarray, targets: np.ndarray, bins: int = DEFAULT_BINS
) -> list[dict]:
    """One dict per non-empty confidence bin: its range, count, mean confidence and accuracy."""
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets)
    confidence = probs.max(1)
    correct = probs.argmax(1) == targets
    edges = np.linspace(0.0, 1.0, bins + 1)
    # bin i holds (edges[i], edges[i+1]]; a confidence of exactly 0 joins the first bin
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    rows = []
    for i in range(bins):
        members = index == i
        if members.any():
            rows.append(
                {
                    "low": float(edges[i]),
                    "high": float(edges[i + 1]),
                    "count": int(members.sum()),
                    "confidence": float(confidence[members].mean()),
                    "accuracy": float(correct[members].mean()),
                }
            )
    return rows


def expected_calibration_error(
    probs: np.ndarray, targets: np.ndarray, bins: int = DEFAULT_BINS
) -> float:
    """ECE in [0, 1]: the count-weighted mean |accuracy - confidence| over the bins."""
    n = len(targets)
    if n == 0:
        return float("nan")
    return float(
        sum(
            r["count"] * abs(r["accuracy"] - r["confidence"])
            for r in reliability_bins(probs, targets, bins)
        )
        / n
    )
