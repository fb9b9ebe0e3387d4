"""Checks that a scikit-learn estimator read from a model file is safe to call.

skops refuses types that could run code, but a file can still hold trusted types with crafted
arrays: scikit-learn's compiled tree and libsvm code index memory with the child, feature and
support-vector numbers they are given, without bounds checks, so a tree whose child index is
50,000,000 crashes the process (signal 11) and a cycle of children hangs it. Every estimator
type that imgrec's classic families save (models/families.py, train/classic.py) is checked
here, array by array, before it is used; any other type is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any

import numpy as np

from imgrec.errors import ImgrecError

MAX_TREES = 10_000
MAX_NODES = 10_000_000  # per tree, far above what the classic families grow
SVM_KERNELS = ("rbf", "linear", "poly", "sigmoid")


class EstimatorRejected(ImgrecError):
    """A model file's estimator that imgrec will not run; `reason` completes a sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the model file's estimator {reason}.")
        self.reason = reason


def check_estimator(estimator: Any, n_features: int, n_classes: int) -> None:
    """Refuse `estimator` unless it is a type imgrec saves, fitted on `n_features` feature
    columns, with class numbers in [0, n_classes) and arrays its predict code can trust."""
    try:
        _classifier(estimator, n_features, n_classes, "the estimator")
    except EstimatorRejected:
        raise
    except Exception as exc:  # noqa: BLE001 - a crafted object can fail in any attribute
        raise EstimatorRejected(f"cannot be checked ({type(exc).__name__})") from None


def _name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _classifier(est: Any, n_features: int, n_classes: int, where: str) -> None:
    if _name(est) == "sklearn.pipeline.Pipeline":  # its attributes are its steps'
        _pipeline(est, n_features, n_classes, where)
        return
    check = _CLASSIFIERS.get(_name(est))
    if check is None:
        raise EstimatorRejected(f"is a {type(est).__name__}, a type imgrec never saves")
    _expect_int(est, "n_features_in_", n_features, where)
    classes = _classes(est, n_classes, where)
    check(est, n_features, classes, where)


def _classes(est: Any, n_classes: int, where: str) -> np.ndarray:
    """classes_ are the model's class numbers: unique, sorted integers in [0, n_classes)."""
    classes = getattr(est, "classes_", None)
    if not isinstance(classes, np.ndarray) or classes.ndim != 1 or classes.dtype.kind not in "iuf":
        raise EstimatorRejected(f"has no list of class numbers in {where}")
    ok = len(classes) >= 1 and np.all(np.isfinite(classes)) and np.all(classes == np.round(classes))
    if not ok or classes.min() < 0 or classes.max() >= n_classes:
        raise EstimatorRejected(f"names classes outside the model's {n_classes} in {where}")
    if np.any(np.diff(classes) <= 0):
        raise EstimatorRejected(f"lists its classes out of order or twice in {where}")
    return classes


def _expect_int(obj: Any, attr: str, expected: int, where: str) -> None:
    value = getattr(obj, attr, None)
    if not isinstance(value, Integral) or isinstance(value, bool) or int(value) != expected:
        raise EstimatorRejected(f"has {attr} {_short(value)} where {expected} is needed in {where}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _array(obj: Any, attr: str, shape: tuple[int | None, ...], kinds: str, where: str):
    """obj.attr as an ndarray of `shape` (None: any length) whose dtype kind is in `kinds`;
    float arrays must be finite."""
    value = getattr(obj, attr, None)
    ok = isinstance(value, np.ndarray) and value.dtype.kind in kinds and value.ndim == len(shape)
    if ok:
        ok = all(want is None or got == want for got, want in zip(value.shape, shape, strict=True))
    if not ok:
        got = value.shape if isinstance(value, np.ndarray) else type(value).__name__
        raise EstimatorRejected(f"has {attr} of shape {got} where {shape} is needed in {where}")
    if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
        raise EstimatorRejected(f"has NaN or infinite values in {attr} in {where}")
    return value


def _finite(obj: Any, attr: str, where: str, positive: bool = False) -> float:
    value = getattr(obj, attr, None)
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if not isinstance(value, Real) or isinstance(value, bool) or not math.isfinite(value):
        raise EstimatorRejected(f"has a {attr} that is not a finite number in {where}")
    if positive and value <= 0:
        raise EstimatorRejected(f"has a {attr} that is not positive in {where}")
    return float(value)


def _choice(obj: Any, attr: str, allowed: tuple, where: str) -> None:
    value = getattr(obj, attr, None)
    if not any(value is a or (type(value) is type(a) and value == a) for a in allowed):
        raise EstimatorRejected(f"has {attr} {_short(value)}, not one of {allowed}, in {where}")


# ---- decision trees and forests ---------------------------------------------------------
def _tree_classifier(est: Any, n_features: int, classes: np.ndarray, where: str) -> None:
    _expect_int(est, "n_outputs_", 1, where)
    _expect_int(est, "n_classes_", len(classes), where)
    tree = getattr(est, "tree_", None)
    if _name(tree) != "sklearn.tree._tree.Tree":
        raise EstimatorRejected(f"has no fitted tree in {where}")
    _tree(tree, n_features, len(classes), where)


def _tree(tree: Any, n_features: int, n_classes: int, where: str) -> None:
    """Every child index points forward inside the tree (so no cycle and no stray read),
    every split reads an existing feature at a finite threshold, and the leaf values have
    one row per node and a column per class."""
    nodes = tree.node_count
    if not 1 <= nodes <= MAX_NODES or tree.n_features != n_features or tree.n_outputs != 1:
        raise EstimatorRejected(f"has a tree of impossible size in {where}")
    if list(np.asarray(tree.n_classes)) != [n_classes] or tree.max_n_classes != n_classes:
        raise EstimatorRejected(f"has a tree for another number of classes in {where}")
    _array(tree, "value", (nodes, 1, n_classes), "f", where)
    left = _array(tree, "children_left", (nodes,), "i", where)
    right = _array(tree, "children_right", (nodes,), "i", where)
    feature = _array(tree, "feature", (nodes,), "i", where)
    threshold = _array(tree, "threshold", (nodes,), "f", where)
    leaf = left == -1
    index = np.arange(nodes)
    if np.any(leaf != (right == -1)) or np.any(feature[leaf] != -2):
        raise EstimatorRejected(f"has a tree with half-formed leaves in {where}")
    inner = ~leaf
    children = np.concatenate([left[inner], right[inner]])
    parents = np.concatenate([index[inner], index[inner]])
    if np.any(children <= parents) or np.any(children >= nodes):
        raise EstimatorRejected(f"has a tree whose child index is out of range in {where}")
    if np.any(feature[inner] < 0) or np.any(feature[inner] >= n_features):
        raise EstimatorRejected(f"has a tree whose feature index is out of range in {where}")
    del threshold  # finite already (checked by _array)


def _forest(est: Any, n_features: int, classes: np.ndarray, where: str) -> None:
    _expect_int(est, "n_outputs_", 1, where)
    _expect_int(est, "n_classes_", len(classes), where)
    trees = getattr(est, "estimators_", None)
    if not isinstance(trees, list) or not 1 <= len(trees) <= MAX_TREES:
        raise EstimatorRejected(f"has no fitted trees in {where}")
    _expect_int(est, "n_estimators", len(trees), where)
    _n_jobs(est, where)
    for i, tree in enumerate(trees):
        if _name(tree) != "sklearn.tree._classes.DecisionTreeClassifier":
            raise EstimatorRejected(f"has a {type(tree).__name__} among its trees in {where}")
        # a forest's trees number the forest's classes 0..k-1
        _classifier(tree, n_features, len(classes), f"tree {i} of {where}")
        _expect_int(tree, "n_classes_", len(classes), f"tree {i} of {where}")


def _n_jobs(est: Any, where: str) -> None:
    n_jobs = getattr(est, "n_jobs", None)
    if n_jobs is not None and not (isinstance(n_jobs, Integral) and -1 <= n_jobs <= 64):
        raise EstimatorRejected(f"asks for {_short(n_jobs)} parallel jobs in {where}")


# ---- support-vector machines and their calibration -----------------------------------------
def _svc(est: Any, n_features: int, classes: np.ndarray, where: str) -> None:
    """The arrays libsvm's predict reads, each the shape the others imply."""
    _svc_settings(est, where)
    k = len(classes)
    if k < 2:
        raise EstimatorRejected(f"is an SVM of fewer than two classes in {where}")
    vectors = _array(est, "support_vectors_", (None, n_features), "f", where)
    n_sv = len(vectors)
    counts = _array(est, "_n_support", (k,), "i", where)
    if n_sv < 1 or np.any(counts < 0) or int(counts.sum()) != n_sv:
        raise EstimatorRejected(f"has support-vector counts that do not add up in {where}")
    _array(est, "support_", (n_sv,), "i", where)
    pairs = k * (k - 1) // 2
    for attr in ("_dual_coef_", "dual_coef_"):
        _array(est, attr, (max(k - 1, 1), n_sv), "f", where)
    for attr in ("_intercept_", "intercept_"):
        _array(est, attr, (pairs,), "f", where)
    probability = getattr(est, "_effective_probability", est.probability)  # sklearn >= 1.9
    if probability not in (True, False):
        raise EstimatorRejected(f"has an unreadable probability setting in {where}")
    for attr in ("_probA", "_probB"):
        _array(est, attr, (pairs if probability else 0,), "f", where)
    _array(est, "class_weight_", (k,), "f", where)
    shape_fit = getattr(est, "shape_fit_", None)
    if not isinstance(shape_fit, tuple) or len(shape_fit) != 2 or shape_fit[1] != n_features:
        raise EstimatorRejected(f"has a shape_fit_ that does not match its features in {where}")


def _svc_settings(est: Any, where: str) -> None:
    _choice(est, "kernel", SVM_KERNELS, where)
    _choice(est, "_sparse", (False,), where)
    _choice(est, "probability", (True, False, "deprecated"), where)
    _choice(est, "break_ties", (True, False), where)
    _choice(est, "decision_function_shape", ("ovr", "ovo"), where)
    _expect_int(est, "fit_status_", 0, where)
    if "_impl" in vars(est):  # the libsvm variant is the class's own, never the file's
        raise EstimatorRejected(f"overrides its libsvm variant in {where}")
    degree = getattr(est, "degree", None)
    if not isinstance(degree, Integral) or not 0 <= degree <= 10:
        raise EstimatorRejected(f"has a polynomial degree of {_short(degree)} in {where}")
    _finite(est, "_gamma", where)
    _finite(est, "coef0", where)
    cache = _finite(est, "cache_size", where, positive=True)
    if cache > 100_000:
        raise EstimatorRejected(f"asks libsvm for a {cache:g} MB cache in {where}")


def _calibrated(est: Any, n_features: int, classes: np.ndarray, where: str) -> None:
    """CalibratedClassifierCV over an SVM: each fold's SVM and its one-number calibrators."""
    _choice(est, "method", ("sigmoid", "temperature"), where)
    folds = getattr(est, "calibrated_classifiers_", None)
    if not isinstance(folds, list) or not 1 <= len(folds) <= 20:
        raise EstimatorRejected(f"has no calibrated folds in {where}")
    for i, fold in enumerate(folds):
        _calibrated_fold(fold, n_features, classes, f"fold {i} of {where}")


def _calibrated_fold(fold: Any, n_features: int, classes: np.ndarray, where: str) -> None:
    if _name(fold) != "sklearn.calibration._CalibratedClassifier":
        raise EstimatorRejected(f"has a {type(fold).__name__} as a calibrated fold in {where}")
    _choice(fold, "method", ("sigmoid", "temperature"), where)
    fold_classes = getattr(fold, "classes", None)
    if not isinstance(fold_classes, np.ndarray) or not np.array_equal(fold_classes, classes):
        raise EstimatorRejected(f"calibrates other classes than it predicts in {where}")
    inner = fold.estimator
    if _name(inner) == "sklearn.frozen._frozen.FrozenEstimator":
        inner = inner.estimator
    if _name(inner) != "sklearn.svm._classes.SVC":
        raise EstimatorRejected(f"calibrates a {type(inner).__name__} in {where}")
    _classifier(inner, n_features, len(classes), where)
    if not np.all(np.isin(inner.classes_, classes)):
        raise EstimatorRejected(f"has an SVM with classes it does not calibrate in {where}")
    _calibrators(fold, len(inner.classes_), where)


def _calibrators(fold: Any, k: int, where: str) -> None:
    calibrators = getattr(fold, "calibrators", None)
    wanted = (1,) if fold.method == "temperature" or k == 2 else (k,)
    if not isinstance(calibrators, list) or len(calibrators) not in wanted:
        raise EstimatorRejected(f"has the wrong number of calibrators in {where}")
    for calibrator in calibrators:
        kind = _name(calibrator)
        if kind == "sklearn.calibration._TemperatureScaling":
            _finite(calibrator, "beta_", where, positive=True)
        elif kind == "sklearn.calibration._SigmoidCalibration":
            _finite(calibrator, "a_", where)
            _finite(calibrator, "b_", where)
        else:
            raise EstimatorRejected(f"has a {type(calibrator).__name__} calibrator in {where}")


# ---- logistic regression behind a scaler -------------------------------------------------
def _logistic(est: Any, n_features: int, classes: np.ndarray, where: str) -> None:
    rows = 1 if len(classes) <= 2 else len(classes)
    _array(est, "coef_", (rows, n_features), "f", where)
    _array(est, "intercept_", (rows,), "f", where)


def _pipeline(est: Any, n_features: int, n_classes: int, where: str) -> None:
    """Scalers, then one classifier: what the logreg families save."""
    steps = getattr(est, "steps", None)
    if not isinstance(steps, list) or not 1 <= len(steps) <= 5:
        raise EstimatorRejected(f"has no steps in {where}")
    _choice(est, "memory", (None,), where)
    _choice(est, "transform_input", (None,), where)
    for i, step in enumerate(steps):
        if not (isinstance(step, tuple) and len(step) == 2 and isinstance(step[0], str)):
            raise EstimatorRejected(f"has a malformed step {i} in {where}")
        inner, there = step[1], f"step {i} of {where}"
        if i == len(steps) - 1:
            _classifier(inner, n_features, n_classes, there)
        else:
            _scaler(inner, n_features, there)


def _scaler(est: Any, n_features: int, where: str) -> None:
    if _name(est) != "sklearn.preprocessing._data.StandardScaler":
        raise EstimatorRejected(f"has a {type(est).__name__} step in {where}")
    _expect_int(est, "n_features_in_", n_features, where)
    _choice(est, "with_mean", (True, False), where)
    _choice(est, "with_std", (True, False), where)
    if est.with_mean:
        _array(est, "mean_", (n_features,), "f", where)
    if est.with_std:
        scale = _array(est, "scale_", (n_features,), "f", where)
        if np.any(scale == 0):
            raise EstimatorRejected(f"divides by a zero scale in {where}")


_CLASSIFIERS: dict[str, Callable[[Any, int, np.ndarray, str], None]] = {
    "sklearn.tree._classes.DecisionTreeClassifier": _tree_classifier,
    "sklearn.ensemble._forest.RandomForestClassifier": _forest,
    "sklearn.svm._classes.SVC": _svc,
    "sklearn.calibration.CalibratedClassifierCV": _calibrated,
    "sklearn.linear_model._logistic.LogisticRegression": _logistic,
}
