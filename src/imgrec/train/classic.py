"""Fitting the classic learners: features once, a small search on the validation split.

Each candidate setting is one history row (phase "search"), so the run's history shows what
was tried, and the winner is saved like a best epoch. Features come from the feature store, so
a leaderboard computes HOG or embeddings once for all the learners that share them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import torch

from imgrec.models.classic import ClassicNetwork, EmbedFeatures
from imgrec.models.families import get_family
from imgrec.train.features import backbone_features, job_features, module_features
from imgrec.train.head import score

Candidate = tuple[str, object]
SVM_MIRROR_MAX = 1000


def fit_classic(job) -> dict:
    """Fit `job.model` (a ClassicNetwork) in place; returns and saves the winning row."""
    network: ClassicNetwork = job.model
    family = get_family(job.config.model)
    if isinstance(network.features, EmbedFeatures):
        source = backbone_features(
            network.features.backbone,
            job.config.model,
            "imagenet",
            job.preprocessing,
            job.progress,
        )
    else:
        hog = network.features
        source = module_features(hog, hog.key, hog.width, job.preprocessing, job.progress)
    train_x, train_y, val_x, val_y = (t.numpy() for t in job_features(job, source))
    # An SVM's cost grows with the square of its rows: above SVM_MIRROR_MAX training images it
    # learns from the originals only (on 2000 photos the mirrors cost ~4x for +1 point).
    small = len(train_x) <= SVM_MIRROR_MAX
    if not isinstance(network.features, EmbedFeatures) and (family.learner != "svm" or small):
        train_x, train_y = _with_mirror_images(job, network.features, train_x, train_y)
    balanced = job.config.balance != "none"
    best: dict = {"val_score": -np.inf}
    best_estimator = None
    for step, (params, estimator) in enumerate(
        candidates(family.learner, balanced, job.config.seed), start=1
    ):
        estimator.fit(train_x, train_y)
        estimator = _with_probabilities(estimator, (train_x, train_y), (val_x, val_y))
        row = {
            "phase": "search",
            "epoch": step,
            **_scores(estimator, network, train_x, train_y, "train"),
            **_scores(estimator, network, val_x, val_y, "val"),
            "params": params,
            "seconds": time.perf_counter() - job.started,
        }
        row["val_score"] = score(row["val_acc"], row["val_loss"])
        job.state.append_history(row)
        if row["val_score"] > best["val_score"]:
            best, best_estimator = row, estimator
    network.estimator = best_estimator
    job.state.save_best(network.state_dict(), best)
    return best


def _with_mirror_images(job, hog, train_x: np.ndarray, train_y: np.ndarray):
    """Add the HOG of every training image's mirror image: the classic learners' data
    augmentation. Gradients are not flip-invariant, so this doubles what the learner sees;
    it gained 3-5 points for the random forest on hymenoptera_data."""
    mirror = _Mirrored(hog)
    source = module_features(mirror, mirror.key, hog.width, job.preprocessing, job.progress)
    with source:
        flipped = source(job.train_cache, "features (train, mirrored)").numpy()
    return np.concatenate([train_x, flipped]), np.concatenate([train_y, train_y])


class _Mirrored(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.key = f"{inner.key}|mirrored"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.flip(-1))


def candidates(learner: str, balanced: bool, seed: int) -> Iterator[Candidate]:
    """The settings tried for a learner, each with a fresh estimator; few and well-spread,
    so the whole classic block stays within a minute on two cores."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    weight = "balanced" if balanced else None
    if learner == "svm":
        for c in (1.0, 3.0):  # gamma="scale" adapts the kernel width to the features
            yield f"C={c:g}", SVC(C=c, gamma="scale", class_weight=weight, random_state=seed)
    elif learner == "rf":
        yield (
            "trees=200,max_features=sqrt",
            RandomForestClassifier(
                200, max_features="sqrt", class_weight=weight, n_jobs=-1, random_state=seed
            ),
        )
    elif learner == "tree":
        for depth in (5, 10):  # unlimited depth only memorises (59.7% vs 63.1% at depth 5)
            yield (
                f"max_depth={depth},min_samples_leaf=2",
                DecisionTreeClassifier(
                    max_depth=depth, min_samples_leaf=2, class_weight=weight, random_state=seed
                ),
            )
    elif learner == "logreg":
        for c in (0.01, 0.1, 1.0):
            yield (
                f"C={c:g}",
                make_pipeline(
                    StandardScaler(),
                    LogisticRegression(C=c, max_iter=2000, class_weight=weight),
                ),
            )
    else:
        raise ValueError(f"unknown learner {learner!r}")


def _with_probabilities(estimator, train: tuple, val: tuple):
    """An SVM has scores, not probabilities: scale them by one temperature fitted on the
    validation split. That keeps the SVM's ranking (its accuracy) and costs a fifth of SVC's
    internal 5-fold probability fit; too few validation images per class fall back to it."""
    if hasattr(estimator, "predict_proba") and not _is_svm(estimator):
        return estimator
    from sklearn.base import clone
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    val_x, val_y = val
    counts = np.bincount(val_y, minlength=len(estimator.classes_))[estimator.classes_]
    if len(np.unique(val_y)) != len(estimator.classes_) or counts.min() < 2:
        return clone(estimator).set_params(probability=True).fit(*train)
    calibrated = CalibratedClassifierCV(
        FrozenEstimator(estimator), method="temperature", cv=int(min(5, counts.min()))
    )
    return calibrated.fit(val_x, val_y)


def _is_svm(estimator) -> bool:
    from sklearn.svm import SVC

    return isinstance(estimator, SVC)


def _scores(estimator, network: ClassicNetwork, x: np.ndarray, y: np.ndarray, split: str) -> dict:
    """Accuracy and plain cross-entropy, as the deep families report them."""
    network.estimator = estimator
    logp = network.log_proba(x)
    target = torch.as_tensor(y, dtype=torch.long)
    loss = torch.nn.functional.nll_loss(logp, target).item()
    acc = (logp.argmax(1) == target).float().mean().item()
    return {f"{split}_acc": acc, f"{split}_loss": loss}
