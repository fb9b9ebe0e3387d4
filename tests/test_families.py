"""Every model family trains, saves, loads and predicts through the same API and CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from imagegen import make_split_folders
from runhelpers import assert_user_error, make_split_dataset, run_imgrec, sample_files

from imgrec.api import ImageClassifier, load_dataset
from imgrec.bundle.format import load_bundle, save_bundle
from imgrec.config import TrainConfig
from imgrec.errors import ImgrecError
from imgrec.models.families import LEADERBOARD, families, get_family, train_config
from imgrec.models.registry import get_spec
from imgrec.models.signature import SIGNATURE_DIMS

CLASSIC_AND_MLP = [f.name for f in families() if f.kind in ("classic", "mlp")]
# the leaderboard's six; the other learner-feature pairs run the very same code
ROUND_TRIP = [n for n in LEADERBOARD if n in CLASSIC_AND_MLP]


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    root = tmp_path_factory.mktemp("colours")
    make_split_folders(root, {"train": {"a": 8, "b": 8, "c": 8}, "val": {"a": 4, "b": 4, "c": 4}})
    data = load_dataset(root)
    return data.subset("train"), data.subset("val")


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_family_round_trip(name, colours, tmp_path):
    train, val = colours
    clf = ImageClassifier(name).fit(train, val, progress=False, work_dir=tmp_path / "work")
    path = clf.save(tmp_path / "model.imgrec")
    again = ImageClassifier.load(path)
    files = [s.path for s in val.samples]
    _, before, _ = clf.predict_proba(files)
    _, after, _ = again.predict_proba(files)
    assert before.shape == (12, 3)
    np.testing.assert_allclose(before.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(before, after, atol=1e-6)
    assert again.metadata["model"] == name
    if get_family(name).features == "embed":  # colours are easy for ImageNet features
        assert again.evaluate(val).metrics["accuracy"] >= 0.9


def test_classic_search_is_in_the_history(colours, tmp_path):
    train, val = colours
    clf = ImageClassifier("svm-embed").fit(train, val, progress=False)
    rows = [r for r in clf.history if r["phase"] == "search"]
    assert [r["params"] for r in rows] == ["C=1", "C=3"]
    assert clf.metadata["best_epoch"]["phase"] == "search"


def test_family_settings_are_defaults_that_options_override():
    assert train_config("svm-hog").epochs == 0
    assert train_config("mlp-embed").dropout == 0.5
    assert train_config("mlp-embed", dropout=0.3, lr=None).dropout == 0.3
    assert train_config("efficientnet_lite0") == TrainConfig()
    assert get_spec("svm-embed").input_size == get_spec("efficientnet_lite0").input_size
    assert get_spec("rf-hog").input_size == 128
    assert set(LEADERBOARD) - {"cnn-scratch", "efficientnet_lite0"} <= set(CLASSIC_AND_MLP)


def test_an_estimator_with_untrusted_types_is_refused(colours, tmp_path):
    """A model file is data: an estimator smuggling a callable must not load, let alone run."""
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    train, val = colours
    path = ImageClassifier("tree-hog").fit(train, val, progress=False).save(tmp_path / "m.imgrec")
    state, metadata = load_bundle(path)
    evil = bytearray(sio.dumps(FunctionTransformer(func=print)))
    state["estimator"] = torch.frombuffer(evil, dtype=torch.uint8).clone()
    save_bundle(path, state, metadata)
    with pytest.raises(ImgrecError, match="untrusted"):
        ImageClassifier.load(path)


def test_cli_trains_predicts_and_explains_export_for_a_classic_model(tmp_path):
    data = make_split_dataset(tmp_path / "data", n_train=8, n_val=4)
    run = tmp_path / "run"
    result = run_imgrec("train", data, "--model", "rf-hog", "--out", run, "-q")
    assert result.returncode == 0, result.stderr
    assert (run / "model.imgrec").exists() and (run / "report.html").exists()
    image = sample_files("val", "ants", 1)[0]
    shown = run_imgrec("predict", run / "model.imgrec", image, "-f", "json", "-k", "2")
    assert shown.returncode == 0, shown.stderr
    top = json.loads(shown.stdout)["predictions"][0]["top"]
    assert {t["class"] for t in top} == {"ants", "bees"}
    info = run_imgrec("info", run / "model.imgrec")
    assert info.returncode == 0 and "rf-hog" in info.stdout
    export = run_imgrec("export", run / "model.imgrec", "--out", tmp_path / "m.onnx")
    assert_user_error(export, "scikit-learn model")


def test_the_server_predicts_with_a_classic_model(colours, tmp_path):
    """serve's Predictor (decode one upload, run a batch as the server does, with the drift
    signature of the prediction log) works for scikit-learn models."""
    from imgrec.serve.predictor import Predictor

    train, val = colours
    path = ImageClassifier("tree-hog").fit(train, val, progress=False).save(tmp_path / "m.imgrec")
    predictor = Predictor(path)
    upload = val.samples[0].path.read_bytes()
    batch = torch.stack([predictor.prepare(upload)] * 3)
    probs, signatures = predictor.run(batch)
    assert probs.shape == (3, 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs, predictor.forward(batch), atol=1e-6)
    assert signatures.shape == (3, SIGNATURE_DIMS)
