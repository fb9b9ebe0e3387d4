"""Evaluation plots as matplotlib Figures.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot: that needs no GUI
backend (works headless, in a server thread, in CI), leaves a notebook user's chosen
backend untouched, and keeps no global figure registry that could leak memory.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, precision_recall_curve

_MAX_ANNOTATED_CLASSES = 25  # beyond this, cell numbers become unreadable
_MAX_LABEL_CHARS = 20


def _short(name: str) -> str:
    return name if len(name) <= _MAX_LABEL_CHARS else name[: _MAX_LABEL_CHARS - 1] + "…"


def _heatmap(ax, values: np.ndarray, classes: Sequence[str], title: str, fmt: str) -> None:
    n = len(classes)
    vmax = max(float(values.max()), 1e-12)
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=vmax)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    labels = [_short(c) for c in classes]
    ax.set_xticks(range(n), labels, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.set_title(title)
    if n <= _MAX_ANNOTATED_CLASSES:
        size = 9 if n <= 10 else 6
        for i in range(n):
            for j in range(n):
                v = values[i, j]
                colour = "white" if v > vmax / 2 else "black"
                ax.text(j, i, format(v, fmt), ha="center", va="center", color=colour, fontsize=size)


def plot_confusion_matrix(confusion: Sequence[Sequence[int]], classes: Sequence[str]) -> Figure:
    """Counts and row-normalised (per true class) confusion matrices side by side.

    Counts show where the data is; normalised rows show per-class recall regardless of
    class imbalance. Rows of absent classes stay zero instead of becoming NaN.
    """
    counts = np.asarray(confusion, dtype=np.int64)
    support = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(
        counts, support, out=np.zeros(counts.shape, dtype=np.float64), where=support > 0
    )
    side = float(np.clip(1.5 + 0.45 * len(classes), 4.0, 12.0))
    fig = Figure(figsize=(2 * side + 1.5, side), layout="constrained")
    left, right = fig.subplots(1, 2)
    _heatmap(left, counts, classes, "Counts", "d")
    _heatmap(right, normalised, classes, "Normalised by true class", ".2f")
    return fig


def plot_pr_curves(probs: np.ndarray, targets: np.ndarray, classes: Sequence[str]) -> Figure:
    """One-vs-rest precision-recall curves with average precision (AP) in the legend.

    Binary problems show only the positive class (``classes[1]``). Classes with no true
    samples have no defined curve and are listed as such instead of drawn.
    """
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets)
    indices = [1] if len(classes) == 2 else list(range(len(classes)))
    fig = Figure(figsize=(7, 5.5), layout="constrained")
    ax = fig.subplots()
    drawn = 0
    for i in indices:
        positive = targets == i
        if not positive.any():
            ax.plot([], [], linestyle="none", label=f"{_short(classes[i])} (no samples)")
            continue
        precision, recall, _ = precision_recall_curve(positive, probs[:, i])
        ap = average_precision_score(positive, probs[:, i])
        ax.step(recall, precision, where="post", label=f"{_short(classes[i])} (AP {ap:.3f})")
        drawn += 1
    if drawn == 0:
        ax.text(0.5, 0.5, "No positive samples to draw", ha="center", va="center")
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    title = f"Precision-recall ({classes[1]} vs rest)" if len(classes) == 2 else "Precision-recall"
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(
        loc="lower left", fontsize=8 if len(indices) <= 10 else 6, ncols=1 + len(indices) // 15
    )
    return fig


def _epochs(history: Sequence[dict]) -> list[float]:
    """The x axis: recorded epochs if strictly increasing, else the row number.

    Row numbers cover histories whose epoch counter restarts in each training phase.
    """
    epochs = [row.get("epoch") for row in history]
    if all(isinstance(e, numbers.Real) for e in epochs) and all(
        a < b for a, b in zip(epochs, epochs[1:], strict=False)
    ):
        return [float(e) for e in epochs]
    return [float(i) for i in range(1, len(history) + 1)]


def _series(history: Sequence[dict], xs: list[float], key: str) -> tuple[list, list]:
    points = [
        (x, float(row[key]))
        for x, row in zip(xs, history, strict=True)
        if isinstance(row.get(key), numbers.Real) and np.isfinite(row[key])
    ]
    return [p[0] for p in points], [p[1] for p in points]


def plot_training_curves(history: Sequence[dict]) -> Figure:
    """Loss and accuracy per epoch for train and validation, with phase changes marked.

    The phase marker (e.g. frozen head → full fine-tune) explains the jump in the curves
    that unfreezing the backbone usually causes.
    """
    if not history:
        raise ValueError("history has no rows to plot")
    xs = _epochs(history)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for ax, metric, title in ((loss_ax, "loss", "Loss"), (acc_ax, "acc", "Accuracy")):
        for split, style in (("train", "-o"), ("val", "-s")):
            x, y = _series(history, xs, f"{split}_{metric}")
            if x:
                ax.plot(x, y, style, markersize=3, label=split)
        for i in range(1, len(history)):
            phase = history[i].get("phase")
            if phase != history[i - 1].get("phase"):
                boundary = (xs[i - 1] + xs[i]) / 2
                ax.axvline(boundary, color="grey", linestyle="--", linewidth=1)
                ax.text(
                    boundary,
                    1.0,
                    f" {phase}",
                    transform=ax.get_xaxis_transform(),
                    va="top",
                    ha="left",
                    fontsize=8,
                    color="dimgrey",
                )
        ax.set_xlabel("Epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    return fig


def plot_group_accuracy(groups: dict) -> Figure:
    """Accuracy per group with its bootstrap 95% interval, one panel per attribute column.

    Horizontal bars keep long group names readable; n is part of each label because a wide
    interval only makes sense next to how few images produced it.
    """
    columns = groups["columns"]
    heights = [max(1.6, 0.45 * len(c["groups"]) + 1.0) for c in columns.values()]
    fig = Figure(figsize=(8, sum(heights)), layout="constrained")
    axes = fig.subplots(len(columns), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, (column, result) in zip(axes, columns.items(), strict=True):
        names = list(result["groups"])
        acc = np.array([result["groups"][g]["accuracy"] for g in names])
        ci = np.array([result["groups"][g]["accuracy_ci"] for g in names])
        small = [result["groups"][g]["n"] < groups["min_group_size"] for g in names]
        ys = np.arange(len(names))[::-1]
        for y, a, (low, high), few in zip(ys, acc, ci, small, strict=True):
            colour = "tab:orange" if few else "tab:blue"
            ax.errorbar(a, y, xerr=[[a - low], [high - a]], fmt="o", color=colour, capsize=4)
        labels = [f"{_short(g)} (n={result['groups'][g]['n']})" for g in names]
        ax.set_yticks(ys, labels)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(-0.7, len(names) - 0.3)
        ax.set_xlabel("Accuracy (95% bootstrap interval; orange: too few images to judge)")
        ax.set_title(f"Accuracy by {column}")
        ax.grid(axis="x", alpha=0.3)
    return fig


def plot_reliability(bins: Sequence[dict], ece: float) -> Figure:
    """Reliability diagram: accuracy per confidence bin against the diagonal of perfect
    calibration, with how many predictions each bin holds underneath.

    A filled bar below its red outline means over-confidence (the model claims more than it
    delivers); the count panel shows which bins hold enough images to be believed.
    """
    fig = Figure(figsize=(6.5, 6.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect")
    if bins:
        lows = np.array([b["low"] for b in bins])
        widths = np.array([b["high"] - b["low"] for b in bins])
        accuracy = np.array([b["accuracy"] for b in bins])
        confidence = np.array([b["confidence"] for b in bins])
        counts = np.array([b["count"] for b in bins])
        top.bar(lows, accuracy, widths, align="edge", edgecolor="white", label="accuracy")
        top.bar(
            lows,
            confidence,
            widths,
            align="edge",
            fill=False,
            edgecolor="tab:red",
            linewidth=1.5,
            label="mean confidence",
        )
        bottom.bar(lows, counts, widths, align="edge", color="grey", edgecolor="white")
    else:
        top.text(0.5, 0.5, "No predictions", ha="center", va="center")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1.02)
    top.set_ylabel("Accuracy")
    top.set_title(f"Reliability (ECE {ece:.3f})")
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize=8)
    bottom.set_xlabel("Confidence (top-1 probability)")
    bottom.set_ylabel("Images")
    bottom.grid(alpha=0.3)
    return fig


def plot_coverage(points: Sequence[dict], targets: Sequence[dict]) -> Figure:
    """Accuracy of the predictions kept against the share kept, as the confidence threshold
    rises; each target accuracy that some threshold reaches is marked with that threshold."""
    fig = Figure(figsize=(7, 5), layout="constrained")
    ax = fig.subplots()
    if points:
        coverage = [p["coverage"] for p in points]
        accuracy = [p["accuracy"] for p in points]
        ax.plot(coverage, accuracy, "-", marker="." if len(points) < 30 else None)
        low = min(accuracy)
    else:
        ax.text(0.5, 0.5, "No predictions", ha="center", va="center")
        low = 0.0
    for target in targets:
        ax.axhline(target["accuracy"], color="grey", linestyle=":", linewidth=1)
        reached = target.get("reached")
        if reached:
            ax.plot([reached["coverage"]], [reached["accuracy"]], "o", color="tab:red")
            ax.annotate(
                f"t = {math.floor(reached['threshold'] * 1000) / 1000:.3f}",
                (reached["coverage"], reached["accuracy"]),
                textcoords="offset points",
                xytext=(-8, -14),
                ha="right",
                fontsize=8,
            )
    ax.set_xlim(0, 1.02)
    ax.set_ylim(max(0.0, min(low, min((t["accuracy"] for t in targets), default=1)) - 0.05), 1.01)
    ax.set_xlabel("Coverage (share of images answered)")
    ax.set_ylabel("Accuracy of the answered images")
    ax.set_title("Coverage vs accuracy (answer only when confidence >= t)")
    ax.grid(alpha=0.3)
    return fig
