"""Classification metrics as one JSON-serialisable dict.

Every number is computed over the full label set (``labels=range(C)``), so a validation
split that happens to miss a class still yields a complete, comparable report instead of
a crash or silently shorter arrays.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

from imgrec.errors import ImgrecError
from imgrec.evaluate.calibration import expected_calibration_error, reliability_bins
from imgrec.evaluate.selective import selective_summary

# Probabilities are clipped before the log so a confident mistake costs a large but finite
# loss; 1e-15 matches scikit-learn's historical default.
_LOG_EPS = 1e-15


def _validate(probs: np.ndarray, targets: np.ndarray, classes: list[str]) -> None:
    """Reject inputs that would give silently wrong numbers."""
    if probs.ndim != 2:
        raise ValueError(f"probs must be 2-D (N, C), got shape {probs.shape}")
    if targets.ndim != 1 or targets.shape[0] != probs.shape[0]:
        raise ValueError(
            f"targets must be 1-D with {probs.shape[0]} entries, got shape {targets.shape}"
        )
    if probs.shape[1] != len(classes):
        raise ValueError(f"probs has {probs.shape[1]} columns but there are {len(classes)} classes")
    if len(classes) < 2:
        raise ValueError("classification metrics need at least 2 classes")
    if len(set(classes)) != len(classes):
        raise ValueError(f"class names must be unique, got {classes}")
    if probs.shape[0] == 0:
        raise ImgrecError("There are no samples to evaluate; add images to the evaluation split.")
    if not np.all(np.isfinite(probs)):
        raise ValueError("probs contains NaN or infinite values")
    if targets.min() < 0 or targets.max() >= len(classes):
        raise ValueError(f"targets must be class indices in [0, {len(classes) - 1}]")


def _balanced_accuracy(cm: np.ndarray) -> float:
    """Mean recall over the classes that occur in the targets (scikit-learn's definition).

    Computed from the confusion matrix so absent classes are skipped without the warning
    ``balanced_accuracy_score`` emits for them.
    """
    support = cm.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present]))


def _log_loss(probs: np.ndarray, targets: np.ndarray, n_classes: int) -> float:
    """Cross-entropy on clipped, renormalised float64 probabilities.

    Renormalising absorbs float32 rounding so scikit-learn does not warn that rows
    fail to sum to one.
    """
    p = np.clip(probs.astype(np.float64), _LOG_EPS, 1.0)
    p /= p.sum(axis=1, keepdims=True)
    return float(log_loss(targets, p, labels=list(range(n_classes))))


def _top_k(probs: np.ndarray, targets: np.ndarray, accuracy: float, top_k: int) -> dict:
    """Top-1 and top-k accuracy; binary problems only report top-1 (top-2 is always 1)."""
    n_classes = probs.shape[1]
    out = {"1": accuracy}
    k = min(top_k, n_classes)
    if n_classes > 2 and k == n_classes:
        out[str(k)] = 1.0  # every class is in the top C; scikit-learn warns rather than says so
    elif n_classes > 2 and k > 1:
        out[str(k)] = float(
            top_k_accuracy_score(targets, probs, k=k, labels=list(range(n_classes)))
        )
    return out


def _averages(targets: np.ndarray, preds: np.ndarray, labels: list[int], average: str) -> dict:
    p, r, f, _ = precision_recall_fscore_support(
        targets, preds, labels=labels, average=average, zero_division=0
    )
    return {
        "precision": float(p),
        "recall": float(r),
        "f1": float(f),
        "support": int(targets.shape[0]),
    }


def calibration_metrics(probs: np.ndarray, targets: np.ndarray, temperature: float) -> dict:
    """ECE, its reliability bins, and the temperature the probabilities were made at."""
    return {
        "ece": expected_calibration_error(probs, targets),
        "bins": reliability_bins(probs, targets),
        "temperature": float(temperature),
    }


def compute_metrics(
    probs: np.ndarray,
    targets: np.ndarray,
    classes: list[str],
    top_k: int = 5,
    temperature: float = 1.0,
) -> dict:
    """Headline, per-class, confusion, calibration and coverage metrics for predicted class
    probabilities.

    ``probs`` is (N, C) with rows summing to 1; ``targets`` is (N,) class indices. The
    prediction is the arg-max class. ``temperature`` is the one the model's probabilities
    were made at (recorded, not applied). Returns plain Python types only (safe for json.dump).
    """
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets).astype(np.int64, copy=False)
    classes = [str(c) for c in classes]
    _validate(probs, targets, classes)

    labels = list(range(len(classes)))
    preds = probs.argmax(axis=1)
    cm = confusion_matrix(targets, preds, labels=labels)
    accuracy = float(accuracy_score(targets, preds))
    precision, recall, f1, support = precision_recall_fscore_support(
        targets, preds, labels=labels, average=None, zero_division=0
    )
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    }
    return {
        "n": int(targets.shape[0]),
        "accuracy": accuracy,
        "balanced_accuracy": _balanced_accuracy(cm),
        "macro_f1": float(
            f1_score(targets, preds, labels=labels, average="macro", zero_division=0)
        ),
        "weighted_f1": float(
            f1_score(targets, preds, labels=labels, average="weighted", zero_division=0)
        ),
        "log_loss": _log_loss(probs, targets, len(classes)),
        "top_k_accuracy": _top_k(probs, targets, accuracy, top_k),
        "per_class": per_class,
        "macro_avg": _averages(targets, preds, labels, "macro"),
        "weighted_avg": _averages(targets, preds, labels, "weighted"),
        "confusion_matrix": cm.astype(int).tolist(),
        "classes": classes,
        "calibration": calibration_metrics(probs, targets, temperature),
        "coverage": selective_summary(probs, targets),
    }
