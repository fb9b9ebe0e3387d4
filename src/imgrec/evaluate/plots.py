"""Evaluation plots as matplotlib Figures.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot: that needs no GUI
backend (works headless, in a server thread, in CI), leaves a notebook user's chosen
backend untouched, and keeps no global figure registry that could leak memory.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

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


# What a reader needs to tell the training phases apart (history rows carry the key as "phase"):
# the name shown over its span, what happens in it, and what one point is.
_PHASES = {
    "head": ("head", "only the new last layer learns, on the frozen pretrained features", "Epoch"),
    "finetune": ("fine-tune", "the whole network learns", "Epoch"),
    "search": ("search", "each point is one candidate setting", "Candidate setting"),
}
_PHASE_COLOURS = ("#dbeafe", "#fef3c7", "#dcfce7", "#f3e8ff")
_MAX_TICKS = 12  # numbered points along the x axis, all phases together
_NICE_STEPS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


@dataclass(frozen=True)
class PhaseSpan:
    """Consecutive history rows of one training phase, as the training-curves plot draws them.

    `first` is the x position (1-based row number) of its first row. Points are numbered from
    1 within each phase: "head 1-6, then fine-tune 1-3" is how the training went, while
    "epoch 1-9" hides that the network changed at the seventh.
    """

    phase: str | None
    first: int
    length: int

    @property
    def last(self) -> int:
        return self.first + self.length - 1

    @property
    def name(self) -> str:
        """The label over the span; empty for rows that name no phase."""
        return _PHASES[self.phase][0] if self.phase in _PHASES else (self.phase or "")


def phase_spans(history: Sequence[dict]) -> list[PhaseSpan]:
    """The history's phases in the order they ran: each change of "phase" starts a span."""
    spans: list[PhaseSpan] = []
    for x, row in enumerate(history, start=1):
        phase = row.get("phase")
        if spans and spans[-1].phase == phase:
            spans[-1] = PhaseSpan(phase, spans[-1].first, spans[-1].length + 1)
        else:
            spans.append(PhaseSpan(phase, x, 1))
    return spans


def phase_ticks(spans: Sequence[PhaseSpan]) -> tuple[list[int], list[str]]:
    """x positions and labels of the numbered points: each phase counts from 1; long runs are
    thinned to round steps (1, 5, 10, ...) so that the labels stay readable."""
    total = sum(s.length for s in spans)
    step = next((n for n in _NICE_STEPS if n * _MAX_TICKS >= total), -(-total // _MAX_TICKS))
    ticks, labels = [], []
    for span in spans:
        for i in range(1, span.length + 1):
            if i == 1 or (i % step == 0 and i - 1 >= step / 2):
                ticks.append(span.first + i - 1)
                labels.append(str(i))
    return ticks, labels


def _x_label(spans: Sequence[PhaseSpan]) -> str:
    phases = {s.phase for s in spans}
    if len(phases) > 1:
        return "Epoch, counted from 1 in each phase"
    return _PHASES[spans[0].phase][2] if spans[0].phase in _PHASES else "Epoch"


def _caption(spans: Sequence[PhaseSpan]) -> str:
    """One line under the plots: what each phase does, in the order they ran."""
    known = list(dict.fromkeys(s.phase for s in spans if s.phase in _PHASES))
    parts = [f"{_PHASES[p][0]} — {_PHASES[p][1]}" for p in known]
    if len(parts) > 1:
        return "Shaded phases, in order: " + "; then ".join(parts) + "."
    return f"Phase: {parts[0]}." if parts else ""


def _span_label(span: PhaseSpan) -> str:
    """The phase's name with its numbered points ("head 1-6"): still says how long each
    phase ran where the tick labels below are thinned."""
    return span.name if span.length == 1 else f"{span.name} 1–{span.length}"


def _mark_phases(ax, spans: Sequence[PhaseSpan]) -> None:
    """Shade each phase, name it on a top axis over its span, number its points below."""
    named = [s for s in spans if s.name]
    for i, span in enumerate(named):
        colour = _PHASE_COLOURS[i % len(_PHASE_COLOURS)]
        ax.axvspan(span.first - 0.5, span.last + 0.5, color=colour, alpha=0.6, zorder=0)
    if named:
        top = ax.secondary_xaxis("top")
        top.set_xticks([(s.first + s.last) / 2 for s in named], [_span_label(s) for s in named])
        top.tick_params(length=0)
    ax.set_xlim(0.5, spans[-1].last + 0.5)
    ax.set_xticks(*phase_ticks(spans))
    ax.set_xlabel(_x_label(spans))


def _series(history: Sequence[dict], key: str) -> tuple[list, list]:
    points = [
        (x, float(row[key]))
        for x, row in enumerate(history, start=1)
        if isinstance(row.get(key), numbers.Real) and np.isfinite(row[key])
    ]
    return [p[0] for p in points], [p[1] for p in points]


def plot_training_curves(history: Sequence[dict]) -> Figure:
    """Loss and accuracy for train and validation, one shaded span per training phase.

    Transfer learning trains in two phases (the head on frozen features, then fine-tuning
    the whole network) and the curves jump where the backbone is unfrozen; naming and
    numbering each phase on its own lets a reader see which epochs belong to which, and a
    caption says what each phase does. A run with one phase gets one span.
    """
    if not history:
        raise ValueError("history has no rows to plot")
    spans = phase_spans(history)
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for ax, metric, title in ((loss_ax, "loss", "Loss"), (acc_ax, "acc", "Accuracy")):
        for split, style in (("train", "-o"), ("val", "-s")):
            x, y = _series(history, f"{split}_{metric}")
            if x:
                ax.plot(x, y, style, markersize=3, label=split)
        _mark_phases(ax, spans)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    caption = _caption(spans)
    if caption:
        fig.supxlabel(caption, fontsize=9, color="dimgrey")
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
