"""Label errors and outliers found in a backbone's embedding space, with cleanlab.

A photo filed under the wrong class looks, to a classifier that never saw it, like the other
class: cross-validated ("out-of-sample") probabilities from a linear model on frozen ImageNet
embeddings expose it, and cleanlab's confident learning turns them into a ranked list of
suspects. A picture unlike the rest (a placeholder, a screenshot, a photo of something else)
sits far from its nearest neighbours in the same space: cleanlab's kNN out-of-distribution
score ranks those. Nothing here trains the user's model; it only needs one embedding per image.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from cleanlab.filter import find_label_issues
from cleanlab.outlier import OutOfDistribution
from cleanlab.rank import get_label_quality_scores
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold

# Inverse L2 strength of the probe. Unit-length embeddings give small logits, so the default
# C=1 underfits; C=10 found more flipped labels on the ants/bees sample than 1 or 100
# (tests/test_quality.py checks the recall).
PROBE_C = 10.0
NEIGHBOURS = 10  # cleanlab's default k for the kNN outlier score
# Datalab's default rule for feature-based outliers: mean kNN distance above
# Q3 + (1 / 0.37037 - 1) * IQR, i.e. Q3 + 1.7 IQR, a Tukey fence between "outside" and "far out".
OUTLIER_IQR_FACTOR = 1 / 0.37037 - 1
_EPS = 1e-6


@dataclass(frozen=True)
class LabelIssues:
    """Per-item label checks, index-aligned with the labels given."""

    quality: np.ndarray  # cleanlab self-confidence: p(given label), 0 (surely wrong) .. 1
    is_issue: np.ndarray  # bool: confident learning says the given label is wrong
    suggested: np.ndarray  # int: the most likely class out of sample
    ranked: np.ndarray  # int indices, lowest quality (most suspect) first


@dataclass(frozen=True)
class OutlierScores:
    """Per-item outlier scores, index-aligned with the embeddings given."""

    score: np.ndarray  # cleanlab's kNN OOD score in (0, 1]; lower = more outlying
    is_outlier: np.ndarray  # bool: mean kNN distance above Q3 + 1.7 IQR (see OUTLIER_IQR_FACTOR)
    ranked: np.ndarray  # int indices, most outlying first


def out_of_sample_probabilities(
    embeddings: np.ndarray, labels: Sequence[int], folds: int = 5, seed: int = 0
) -> np.ndarray:
    """(N, K) class probabilities for each item from a model that never saw it.

    Logistic regression on L2-normalised embeddings, cross-validated over stratified folds
    (fewer folds when the smallest class that can be split has fewer images). An image whose
    class has no other example cannot be checked out of sample: its class gets ~0 probability.
    K is max(labels) + 1; rows sum to 1.
    """
    x = _normalised(embeddings)
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(x) != len(y):
        raise ValueError(f"got {len(y)} labels for {len(x)} embeddings")
    k = int(y.max()) + 1 if len(y) else 0
    probs = np.zeros((len(y), k))
    if len(np.unique(y)) < 2:  # one class (or none): nothing to tell apart
        probs[np.arange(len(y)), y] = 1.0
        return probs
    for train, test in _folds(y, folds, seed):
        probs[test] = _fit_predict(x[train], y[train], x[test], k)
    return _valid_distribution(probs)


def label_issues(labels: Sequence[int], pred_probs: np.ndarray) -> LabelIssues:
    """Rank items by cleanlab's self-confidence label quality; flag confident-learning issues."""
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    probs = np.asarray(pred_probs, dtype=np.float64)
    if len(y) != len(probs):
        raise ValueError(f"got {len(y)} labels for {len(probs)} rows of probabilities")
    if len(y) == 0:
        empty = np.zeros(0)
        return LabelIssues(empty, empty.astype(bool), empty.astype(int), empty.astype(int))
    quality = get_label_quality_scores(y, probs, method="self_confidence")
    return LabelIssues(
        quality=quality,
        is_issue=_find_issues(y, probs),
        suggested=probs.argmax(axis=1),
        ranked=np.argsort(quality, kind="stable"),
    )


def outlier_scores(embeddings: np.ndarray) -> OutlierScores:
    """cleanlab's kNN out-of-distribution score of each item against all the others.

    Distances are cosine (cleanlab's choice for more than 3 dimensions), over the
    `NEIGHBOURS` nearest items (fewer for tiny sets). An item is flagged when its mean kNN
    distance lies above Q3 + 1.7 IQR of all items' mean distances, Datalab's default rule:
    with no outliers at all that flags almost nothing, and a few far-off items stand out.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array, got shape {x.shape}")
    n = len(x)
    if n < 3 or not np.isfinite(x).all():
        if n and not np.isfinite(x).all():
            raise ValueError("embeddings contain NaN or inf; drop the rows of unreadable files")
        return OutlierScores(np.ones(n), np.zeros(n, bool), np.arange(n))
    ood = OutOfDistribution(params={"k": min(NEIGHBOURS, n - 1)})
    score = ood.fit_score(features=x, verbose=False)
    return OutlierScores(
        score=score,
        is_outlier=_far_out(score),
        ranked=np.argsort(score, kind="stable"),
    )


# ---- internals --------------------------------------------------------------------------------
def _normalised(embeddings: np.ndarray) -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or inf; drop the rows of unreadable files")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, _EPS)


def _folds(y: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds, as many as the smallest splittable class allows (at least 2)."""
    counts = np.bincount(y)
    splittable = counts[counts >= 2]
    if len(splittable) == 0:  # every class a singleton: plain folds, nothing to stratify
        return list(KFold(min(folds, len(y)), shuffle=True, random_state=seed).split(y))
    n_splits = int(max(2, min(folds, splittable.min())))
    splitter = StratifiedKFold(n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "least populated class has only 1 member": expected
        warnings.simplefilter("ignore", UserWarning)
        return list(splitter.split(np.zeros(len(y)), y))


def _fit_predict(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, k: int) -> np.ndarray:
    """Probabilities over all K classes from a probe fitted on one fold's training part."""
    out = np.zeros((len(x_test), k))
    classes = np.unique(y)
    if len(classes) == 1:  # the fold saw one class only
        out[:, classes[0]] = 1.0
        return out
    probe = LogisticRegression(C=PROBE_C, max_iter=2000)
    probe.fit(x, y)
    out[:, probe.classes_] = probe.predict_proba(x_test)
    return out


def _valid_distribution(probs: np.ndarray) -> np.ndarray:
    """Lift exact zeros (classes a fold never saw) so every row is a proper distribution."""
    probs = np.clip(probs, _EPS, None)
    return probs / probs.sum(axis=1, keepdims=True)


def _find_issues(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """cleanlab's confident-learning filter; it needs two examples of every class to estimate
    per-class thresholds, so degenerate inputs fall back to "the argmax disagrees"."""
    counts = np.bincount(y, minlength=probs.shape[1])
    if len(y) < 2 or probs.shape[1] < 2 or (counts < 2).any():
        return probs.argmax(axis=1) != y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # n_jobs=1: a process pool costs more than the per-class work on any realistic K, and
        # forking a process that holds torch and ONNX Runtime threads is asking for trouble.
        return np.asarray(find_label_issues(y, probs, n_jobs=1), dtype=bool)


def _far_out(score: np.ndarray) -> np.ndarray:
    """Datalab's IQR fence on mean kNN distance; score = exp(-distance / scale) so -log(score)
    is the distance up to a positive factor, which the fence does not depend on."""
    distance = -np.log(np.clip(score, np.finfo(float).tiny, None))
    q1, q3 = np.percentile(distance, [25, 75])
    return distance > q3 + OUTLIER_IQR_FACTOR * (q3 - q1)
