"""Crafted scikit-learn estimators inside model files: refused at load, in one sentence.

skops lets only trusted types through, but a hostile file can hold a trusted DecisionTree whose
child index is 50,000,000: scikit-learn's compiled predict then reads far outside its arrays
and the process dies with signal 11 (issue 15). Each file here is what such a user would hand
over: a real model of one of the classic families, one array changed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from runhelpers import assert_user_error, run_imgrec, sample_files

from imgrec.bundle.format import load_bundle, save_bundle
from imgrec.bundle.model import TrainedModel, load_model, save_model
from imgrec.config import TrainConfig
from imgrec.data.preprocess import Preprocessing
from imgrec.errors import ImgrecError
from imgrec.models.classic import load_estimator
from imgrec.models.registry import create_model, get_spec

HOG_WIDTH = 1764  # HogFeatures.width


def _features(n_classes: int, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.arange(n) % n_classes
    x = rng.normal(size=(n, HOG_WIDTH)) + y[:, None] * 0.05
    return x, y


def _fit(learner: str, n_classes: int):
    """The estimator the learner's family saves (train/classic.py's own candidates)."""
    from imgrec.train.classic import _with_probabilities, candidates

    x, y = _features(n_classes)
    _, estimator = next(candidates(learner, balanced=False, seed=0))
    if learner == "rf":
        estimator.set_params(n_estimators=5)
    estimator.fit(x[:40], y[:40])
    return _with_probabilities(estimator, (x[:40], y[:40]), (x[40:], y[40:]))


def _save(path, learner: str, n_classes: int = 2, estimator=None):
    name = f"{learner}-hog"
    spec = get_spec(name)
    network = create_model(spec, n_classes, weights="none")
    network.estimator = estimator if estimator is not None else _fit(learner, n_classes)
    config = TrainConfig(model=name, weights="none", epochs=0)
    prep = Preprocessing(spec.input_size, spec.mean, spec.std, spec.resize_size)
    classes = [f"class{i}" for i in range(n_classes)]
    save_model(path, TrainedModel(network, spec, config, prep, classes))
    return path


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    folder = tmp_path_factory.mktemp("classic")
    return {
        (learner, k): _save(folder / f"{learner}-{k}.imgrec", learner, k)
        for learner in ("tree", "rf", "svm", "logreg")
        for k in (2, 3)
    }


def _craft(original, target, change):
    """Copy of `original` whose estimator went through `change` (skops round trip)."""
    import skops.io as sio

    state, metadata = load_bundle(original)
    estimator = load_estimator(state["estimator"].numpy().tobytes())
    change(estimator)
    state["estimator"] = torch.frombuffer(bytearray(sio.dumps(estimator)), dtype=torch.uint8)
    save_bundle(target, state, metadata)
    return target


def _nodes(tree_owner, field: str, index: int, value) -> None:
    """Set one field of one node of a fitted tree, as a crafted file would hold it."""
    tree = tree_owner.tree_
    state = tree.__getstate__()
    nodes = state["nodes"].copy()
    nodes[field][index] = value
    state["nodes"] = nodes
    tree.__setstate__(state)


def _first_split(tree_owner) -> int:
    return int(np.flatnonzero(tree_owner.tree_.children_left != -1)[0])


def _svc(calibrated):
    inner = calibrated.calibrated_classifiers_[0].estimator
    return getattr(inner, "estimator", inner)


def _set(obj, **values):
    for k, v in values.items():
        setattr(obj, k, v)


def _child(e):
    _nodes(e, "left_child", _first_split(e), 50_000_000)


def _cycle(e):
    _nodes(e, "right_child", _first_split(e), 0)


def _feature(e):
    _nodes(e, "feature", _first_split(e), 10**12)


def _negative_feature(e):
    _nodes(e, "feature", _first_split(e), -5)


def _threshold(e):
    _nodes(e, "threshold", _first_split(e), float("nan"))


def _forest_child(e):
    _child(e.estimators_[3])


def _n_support(e):
    s = _svc(e)
    s._n_support = s._n_support + 5


def _support_vectors(e):
    s = _svc(e)
    s.support_vectors_ = s.support_vectors_[:, :10].copy()


def _dual_coef(e):
    s = _svc(e)
    s._dual_coef_ = np.zeros((1, 3))


def _intercept(e):
    _svc(e)._intercept_[:] = np.inf


def _impl(e):
    _svc(e)._impl = "nu_svr"


def _kernel(e):
    _svc(e).kernel = "precomputed"


def _beta(e):
    e.calibrated_classifiers_[0].calibrators[0].beta_ = float("nan")


def _coef(e):
    e.steps[-1][1].coef_ = np.zeros((1, 10))


def _scale(e):
    e.steps[0][1].scale_ = np.zeros(HOG_WIDTH)


def _pca_step(e):
    from sklearn.decomposition import PCA

    e.steps[0] = ("pca", PCA())


# (learner, classes, change, words of the one sentence)
CRAFTED = {
    "tree child index 50,000,000": ("tree", 2, _child, "child index is out of range"),
    "tree child pointing back (a cycle)": ("tree", 3, _cycle, "child index is out of range"),
    "tree feature index 10^12": ("tree", 2, _feature, "feature index is out of range"),
    "tree negative feature index": ("tree", 2, _negative_feature, "feature index is out of"),
    "tree NaN threshold": ("tree", 2, _threshold, "NaN or infinite values in threshold"),
    "tree n_features_in_": ("tree", 2, lambda e: _set(e, n_features_in_=5), "n_features_in_"),
    "tree classes beyond the model's": (
        "tree",
        2,
        lambda e: _set(e, classes_=np.array([0, 7])),
        "classes outside the model's 2",
    ),
    "forest tree 3's child": ("rf", 2, _forest_child, "tree 3 of the estimator"),
    "forest a million jobs": ("rf", 2, lambda e: _set(e, n_jobs=10**6), "parallel jobs"),
    "forest trees missing": ("rf", 3, lambda e: _set(e, estimators_=[]), "no fitted trees"),
    "svm support-vector counts": ("svm", 2, _n_support, "do not add up"),
    "svm support vectors too narrow": ("svm", 3, _support_vectors, "support_vectors_"),
    "svm dual_coef shape": ("svm", 2, _dual_coef, "_dual_coef_"),
    "svm infinite intercept": ("svm", 2, _intercept, "NaN or infinite values in _intercept_"),
    "svm libsvm variant": ("svm", 2, _impl, "libsvm variant"),
    "svm precomputed kernel": ("svm", 2, _kernel, "kernel 'precomputed'"),
    "svm NaN calibration": ("svm", 2, _beta, "beta_ that is not a finite number"),
    "logreg coef shape": ("logreg", 3, _coef, "coef_ of shape (1, 10)"),
    "logreg zero scale": ("logreg", 2, _scale, "zero scale"),
    "logreg unknown step": ("logreg", 2, _pca_step, "a PCA step"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_estimator_is_refused_at_load(originals, tmp_path, case):
    learner, k, change, words = CRAFTED[case]
    path = _craft(originals[(learner, k)], tmp_path / "crafted.imgrec", change)
    with pytest.raises(ImgrecError, match="cannot be loaded: its estimator") as info:
        load_model(path)
    message = str(info.value)
    assert words in message and str(path) in message
    assert "\n" not in message and message.endswith(".")


@pytest.mark.parametrize("learner", ["tree", "rf", "svm", "logreg"])
@pytest.mark.parametrize("k", [2, 3])
def test_every_saved_estimator_passes(originals, learner, k):
    model = load_model(originals[(learner, k)])
    probs = model.network.log_proba(_features(k)[0][:5]).exp()
    assert probs.shape == (5, k) and torch.allclose(probs.sum(1), torch.ones(5))


@pytest.mark.parametrize("val_rows", [slice(40, 43), slice(40, 40)], ids=["one-each", "none"])
def test_an_svm_with_too_few_validation_images_learns_its_temperature_out_of_fold(
    tmp_path, val_rows
):
    """Three validation images of three classes cannot calibrate: the temperature comes from
    the training split's out-of-fold scores, one SVM is kept, and the bundle loads."""
    import warnings

    from sklearn.frozen import FrozenEstimator

    from imgrec.train.classic import _with_probabilities, candidates

    x, y = _features(3)
    _, svm = next(candidates("svm", balanced=False, seed=0))
    svm.fit(x[:40], y[:40])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecated road (SVC(probability=True))
        calibrated = _with_probabilities(svm, (x[:40], y[:40]), (x[val_rows], y[val_rows]))
    (fold,) = calibrated.calibrated_classifiers_
    assert not isinstance(fold.estimator, FrozenEstimator)  # refitted on all 40
    assert calibrated.method == "temperature"
    probs = calibrated.predict_proba(x[40:])
    assert np.allclose(probs.sum(1), 1) and 0.2 < probs.max(1).mean() < 0.9
    load_model(_save(tmp_path / "svm.imgrec", "svm", 3, estimator=calibrated))


def test_an_svm_with_one_training_image_of_a_class_uses_both_splits():
    from sklearn.frozen import FrozenEstimator

    from imgrec.train.classic import _with_probabilities, candidates

    x, y = _features(2, n=8)
    train = (x[[0, 1, 3, 5]], y[[0, 1, 3, 5]])  # class 0 once
    val = (x[[2, 4]], y[[2, 4]])  # class 0 once
    _, svm = next(candidates("svm", balanced=False, seed=0))
    calibrated = _with_probabilities(svm.fit(*train), train, val)
    (fold,) = calibrated.calibrated_classifiers_
    assert isinstance(fold.estimator, FrozenEstimator)
    assert np.allclose(calibrated.predict_proba(x).sum(1), 1)
    with pytest.raises(ImgrecError, match="two images of every class"):
        _with_probabilities(svm, (x[[0, 1, 3]], y[[0, 1, 3]]), (x[[5]], y[[5]]))


@pytest.mark.filterwarnings("ignore:The `probability` parameter was deprecated:FutureWarning")
def test_an_svm_with_its_own_probabilities_from_older_models_still_loads(tmp_path):
    """Models saved by earlier versions, whose fallback was SVC(probability=True)."""
    from sklearn.svm import SVC

    x, y = _features(3)
    svc = SVC(probability=True, random_state=0).fit(x, y)
    load_model(_save(tmp_path / "svm.imgrec", "svm", 3, estimator=svc))


def test_a_type_imgrec_never_saves_is_refused(tmp_path):
    from sklearn.neighbors import KNeighborsClassifier

    x, y = _features(2)
    path = _save(tmp_path / "knn.imgrec", "tree", 2, KNeighborsClassifier().fit(x, y))
    with pytest.raises(ImgrecError, match="is a KNeighborsClassifier, a type imgrec never saves"):
        load_model(path)


def test_a_zip_bomb_is_refused_before_it_is_inflated(originals, tmp_path):
    import io
    import zipfile

    state, metadata = load_bundle(originals[("tree", 2)])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(3):
            archive.writestr(f"{i}.npy", b"\0" * 4096)
    # Each entry's directory record then says 1 GB unpacked (3 GB in all), as a bomb's does;
    # the check reads only the directory, so the bytes need not be a real 3 GB of zeros
    # (compressing them took this test 10 s). Python's zipfile never inflates an entry past
    # its declared size, so the declared sizes are what bound a load.
    packed = bytearray(buffer.getvalue())
    at = packed.find(b"PK\x01\x02")
    while at != -1:  # central directory records: the uncompressed size is at offset 24
        packed[at + 24 : at + 28] = (1 << 30).to_bytes(4, "little")
        at = packed.find(b"PK\x01\x02", at + 4)
    state["estimator"] = torch.frombuffer(packed, dtype=torch.uint8)
    save_bundle(tmp_path / "bomb.imgrec", state, metadata)
    with pytest.raises(ImgrecError, match="would unpack to 3,221,225,472 bytes"):
        load_model(tmp_path / "bomb.imgrec")


@pytest.mark.parametrize(
    "case",
    [
        "tree child index 50,000,000",
        "tree feature index 10^12",
        "svm support-vector counts",
        "logreg coef shape",
    ],
)
def test_predict_on_a_crafted_model_is_one_sentence_not_a_crash(originals, tmp_path, case):
    """The attack as it was run: `imgrec predict` died with signal 11 (return code -11)."""
    learner, k, change, words = CRAFTED[case]
    path = _craft(originals[(learner, k)], tmp_path / "crafted.imgrec", change)
    image = sample_files("val", "ants", 1)[0]
    result = run_imgrec("predict", path, image)
    assert result.returncode != -11, "imgrec predict crashed with a segmentation fault"
    assert_user_error(result, str(path), words)
