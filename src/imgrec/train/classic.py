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

from imgrec.errors import ImgrecError
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
    """An SVM has scores, not probabilities: scale them by one temperature fitted on
    held-out scores. That keeps the SVM's ranking (its accuracy). The validation split's
    scores when it has two images of every class (a fifth of the cost of SVC's own 5-fold
    probability fit, which scikit-learn 1.11 removes); else the training split's
    out-of-fold scores (SVMs fitted on the other folds, then one on all of it), as SVC's own
    fit did; else, with a class down to one training image, both splits' scores."""
    if hasattr(estimator, "predict_proba") and not _is_svm(estimator):
        return estimator
    from sklearn.base import clone
    from sklearn.frozen import FrozenEstimator

    classes = estimator.classes_
    if (fewest := _fewest(val[1], classes)) >= 2:
        return _temperature(FrozenEstimator(estimator), *val, fewest)
    if (fewest := _fewest(train[1], classes)) >= 2:
        return _temperature(clone(estimator), *train, fewest)
    both_x, both_y = np.concatenate([train[0], val[0]]), np.concatenate([train[1], val[1]])
    fewest = _fewest(both_y, classes)
    if fewest < 2:
        raise ImgrecError(
            "an SVM needs two images of every class in the training and validation splits "
            "together to learn its probabilities; add images to the smallest class."
        )
    return _temperature(FrozenEstimator(estimator), both_x, both_y, fewest)


def _fewest(labels: np.ndarray, classes: np.ndarray) -> int:
    """How many images the rarest of `classes` has among `labels` (0 when one is absent)."""
    return int(np.bincount(labels, minlength=int(classes.max()) + 1)[classes].min())


def _temperature(estimator, x: np.ndarray, y: np.ndarray, fewest: int):
    """`estimator` with one temperature over its scores, fitted on `x`; a frozen estimator
    is scored as it is, another is refitted on each of up to five folds for out-of-fold
    scores and then once on all of `x` (ensemble=False: one SVM is saved, not five)."""
    from sklearn.calibration import CalibratedClassifierCV

    calibrated = CalibratedClassifierCV(
        estimator, method="temperature", cv=min(5, fewest), ensemble=False
    )
    return calibrated.fit(x, y)


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
