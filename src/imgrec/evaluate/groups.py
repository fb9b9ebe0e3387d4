"""Per-group evaluation: does the model work as well for every camera, site or population?

One overall accuracy can hide a group the model fails. For each attribute column of a CSV
dataset and each of its values, this computes accuracy, balanced accuracy, recall per class
and calibration error, each with a seeded bootstrap 95% interval (percentile method, all
resamples at once with numpy), then the largest gap between groups and whether it could be
chance. Small groups are reported, never hidden, with a warning in words.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from imgrec.errors import ImgrecError
from imgrec.evaluate.calibration import DEFAULT_BINS, expected_calibration_error

MISSING = "(missing)"
MIN_GROUP_SIZE = 30  # below this an accuracy interval is wider than +-15 points
MIN_CLASS_IMAGES = 10  # below this a recall is a rough guess
RESAMPLES = 1000
CONFIDENCE = 0.95
_CELLS_PER_CHUNK = 2_000_000  # resamples x images held at once (bounds memory on big groups)


def select_columns(available: Sequence[str], wanted: Sequence[str], is_csv: bool) -> list[str]:
    """Match the requested columns (case-insensitively) to the data's attribute columns."""
    wanted = [w.strip() for w in wanted if w.strip()]
    if not wanted:
        raise ImgrecError("no column to group by was given; name one or more, e.g. camera,site.")
    if not available:
        if is_csv:
            raise ImgrecError(
                "the CSV has no columns besides path,label,split, so there is nothing to group "
                "by; add a column such as camera with one value per image."
            )
        raise ImgrecError(
            "grouping needs a CSV dataset: a folder of class folders holds no per-image "
            "attributes; list the images in a CSV with columns path,label plus one column per "
            "attribute (e.g. path,label,camera) and evaluate that CSV."
        )
    by_lower = {name.lower(): name for name in available}
    chosen = []
    for name in wanted:
        if name.lower() not in by_lower:
            raise ImgrecError(
                f"the data has no column '{name}'; the available columns are: "
                f"{', '.join(available)}."
            )
        if by_lower[name.lower()] not in chosen:
            chosen.append(by_lower[name.lower()])
    return chosen


def group_metrics(
    probs: np.ndarray,
    targets: np.ndarray,
    classes: Sequence[str],
    columns: dict[str, Sequence[str]],
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    bins: int = DEFAULT_BINS,
) -> dict:
    """Metrics per value of each column in `columns` (column -> one value per sample).

    Empty values become the group "(missing)", which is reported but left out of the gaps.
    Returns plain JSON types: {"columns": {column: {...}}, "warnings": [...], settings}.
    """
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets).astype(np.int64, copy=False)
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    out: dict = {
        "resamples": resamples,
        "confidence": CONFIDENCE,
        "seed": seed,
        "min_group_size": MIN_GROUP_SIZE,
        "min_class_images": MIN_CLASS_IMAGES,
        "columns": {},
        "warnings": [],
    }
    for c, (column, values) in enumerate(columns.items()):
        if len(values) != len(targets):
            raise ValueError(f"column {column} has {len(values)} values for {len(targets)} samples")
        result = _column(probs, targets, list(classes), column, values, resamples, seed + c, bins)
        out["columns"][column] = result
        out["warnings"] += result["warnings"]
    return out


def _column(probs, targets, classes, column, values, resamples, seed, bins) -> dict:
    names = np.array([v.strip() if v and v.strip() else MISSING for v in values], dtype=object)
    order = sorted(set(names) - {MISSING}) + ([MISSING] if MISSING in set(names) else [])
    rng = np.random.default_rng(seed)
    groups, draws, warnings = {}, {}, []
    for name in order:
        members = np.flatnonzero(names == name)
        groups[name], draws[name] = _group(
            probs[members], targets[members], classes, rng, resamples, bins
        )
        warnings += _group_warnings(column, name, groups[name], classes)
    n_missing = int((names == MISSING).sum())
    compared = [g for g in order if g != MISSING]
    if n_missing:
        warnings.append(
            f"{column}: {n_missing} image{'s have' if n_missing != 1 else ' has'} no value; "
            f"reported as the group '{MISSING}' and left out of the gaps."
        )
    if len(compared) < 2:
        only = f" ('{compared[0]}')" if compared else ""
        warnings.append(
            f"{column}: only one group{only} has a value, so there is no gap to measure."
        )
    gaps = {
        "accuracy": _gap(
            {g: groups[g]["accuracy"] for g in compared},
            {g: groups[g]["accuracy_ci"] for g in compared},
            {g: draws[g]["accuracy"] for g in compared},
        ),
        "recall": {
            cls: _gap(
                {g: groups[g]["recall"][cls] for g in compared},
                {g: groups[g]["recall_ci"][cls] for g in compared},
                {g: draws[g]["recall"][:, i] for g in compared},
            )
            for i, cls in enumerate(classes)
        },
    }
    return {"groups": groups, "missing": n_missing, "gaps": gaps, "warnings": warnings}


def _group(probs, targets, classes, rng, resamples, bins) -> tuple[dict, dict]:
    """Point estimates and bootstrap intervals for one group; also the raw draws (for gaps)."""
    n, n_classes = len(targets), len(classes)
    correct = probs.argmax(1) == targets
    confidence = probs.max(1)
    support = np.bincount(targets, minlength=n_classes)
    hits = np.bincount(targets, weights=correct, minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = hits / support
    draws = _bootstrap(correct, targets, confidence, n_classes, rng, resamples, bins)
    group = {
        "n": int(n),
        "accuracy": float(correct.mean()),
        "accuracy_ci": _interval(draws["accuracy"]),
        "balanced_accuracy": float(np.mean(recall[support > 0])),
        "balanced_accuracy_ci": _interval(draws["balanced_accuracy"]),
        "ece": expected_calibration_error(probs, targets, bins),
        "ece_ci": _interval(draws["ece"]),
        "support": {cls: int(support[i]) for i, cls in enumerate(classes)},
        "recall": {cls: float(recall[i]) if support[i] else None for i, cls in enumerate(classes)},
        "recall_ci": {
            cls: _interval(draws["recall"][:, i]) if support[i] else None
            for i, cls in enumerate(classes)
        },
    }
    return group, draws


def _bootstrap(correct, targets, confidence, n_classes, rng, resamples, bins) -> dict:
    """Accuracy, balanced accuracy, per-class recall and ECE on `resamples` resamples.

    Each chunk of resamples is one (B, n) index matrix; per-class and per-bin sums come from
    one bincount over row-offset keys, so there is no Python loop over resamples.
    """
    n = len(correct)
    edges = np.linspace(0.0, 1.0, bins + 1)
    bin_of = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    accuracy = np.empty(resamples)
    ece = np.empty(resamples)
    recall = np.empty((resamples, n_classes))
    chunk = max(1, _CELLS_PER_CHUNK // n)
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        idx = rng.integers(0, n, size=(b, n))
        hit = correct[idx].astype(np.float64)
        rows = np.arange(b)[:, None]
        keys = (rows * n_classes + targets[idx]).ravel()
        support = np.bincount(keys, minlength=b * n_classes).reshape(b, n_classes)
        hits = np.bincount(keys, weights=hit.ravel(), minlength=b * n_classes)
        with np.errstate(invalid="ignore", divide="ignore"):
            recall[start : start + b] = hits.reshape(b, n_classes) / support
        accuracy[start : start + b] = hit.mean(1)
        bin_keys = (rows * bins + bin_of[idx]).ravel()
        sum_conf = np.bincount(bin_keys, weights=confidence[idx].ravel(), minlength=b * bins)
        sum_hit = np.bincount(bin_keys, weights=hit.ravel(), minlength=b * bins)
        ece[start : start + b] = np.abs(sum_hit - sum_conf).reshape(b, bins).sum(1) / n
    present = ~np.isnan(recall)
    balanced = np.where(present, recall, 0.0).sum(1) / present.sum(1)
    return {"accuracy": accuracy, "balanced_accuracy": balanced, "ece": ece, "recall": recall}


def _interval(draws: np.ndarray) -> list[float] | None:
    """Percentile interval over the draws that are defined (a resample can miss a class)."""
    draws = draws[~np.isnan(draws)]
    if draws.size == 0:
        return None
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return [float(low), float(high)]


def _gap(values: dict, intervals: dict, draws: dict) -> dict | None:
    """Best minus worst group, whether their intervals overlap, and an interval for the gap
    itself (difference of the two groups' independent bootstrap draws)."""
    known = {g: v for g, v in values.items() if v is not None}
    if len(known) < 2:
        return None
    best = max(known, key=lambda g: (known[g], g))
    worst = min(known, key=lambda g: (known[g], g))
    (b_low, b_high), (w_low, w_high) = intervals[best], intervals[worst]
    return {
        "gap": float(known[best] - known[worst]),
        "best": best,
        "worst": worst,
        "best_value": float(known[best]),
        "worst_value": float(known[worst]),
        "intervals_overlap": bool(b_low <= w_high and w_low <= b_high),
        "gap_ci": _interval(draws[best] - draws[worst]),
    }


def _group_warnings(column: str, name: str, group: dict, classes: list[str]) -> list[str]:
    where = f"{column} = {name}"
    warnings = []
    if group["n"] < MIN_GROUP_SIZE:
        warnings.append(
            f"{where}: only {group['n']} image{'s' if group['n'] != 1 else ''}, too few to "
            f"judge (at least {MIN_GROUP_SIZE} are needed); its numbers are shown but uncertain."
        )
    for cls in classes:
        k = group["support"][cls]
        if k == 0:
            warnings.append(f"{where}: no images of class '{cls}', so its recall is unknown here.")
        elif k < MIN_CLASS_IMAGES:
            warnings.append(
                f"{where}: only {k} image{'s' if k != 1 else ''} of class '{cls}' (fewer than "
                f"{MIN_CLASS_IMAGES}), so its recall here is a rough guess."
            )
    return warnings


def summary_lines(groups: dict) -> list[str]:
    """Plain sentences for the terminal: per column, the accuracy range and its meaning."""
    lines = []
    for column, result in groups["columns"].items():
        parts = []
        for name, g in result["groups"].items():
            low, high = g["accuracy_ci"]
            parts.append(f"{name} {g['accuracy']:.1%} [{low:.1%}-{high:.1%}] (n={g['n']})")
        lines.append(f"{column}: " + "; ".join(parts))
        gap = result["gaps"]["accuracy"]
        if gap is not None:
            lines.append(f"  {gap_sentence('accuracy', gap)}")
        for cls, g in result["gaps"]["recall"].items():
            if g is not None and not g["intervals_overlap"]:
                lines.append(f"  {gap_sentence(f'recall of {cls}', g)}")
    return lines


def gap_sentence(what: str, gap: dict) -> str:
    """One sentence on a gap between groups, saying whether chance could explain it."""
    verdict = (
        "the 95% intervals overlap, so this gap may be chance"
        if gap["intervals_overlap"]
        else "the 95% intervals do not overlap: a real difference, not likely chance"
    )
    worst = f"{gap['worst']} {gap['worst_value']:.1%}"
    best = f"{gap['best']} {gap['best_value']:.1%}"
    return (
        f"largest gap in {what}: {100 * gap['gap']:.1f} percentage points ({worst} vs {best}); "
        f"{verdict}."
    )
