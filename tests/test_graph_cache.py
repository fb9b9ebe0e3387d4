"""A model's ONNX graph is kept after the first prediction; the next start needs no torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from runhelpers import cli_env, sample_files
from servehelpers import small_model

from imgrec.bundle.model import update_metadata
from imgrec.bundle.predictor import open_predictor
from imgrec.infer import graph_cache


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return small_model(tmp_path_factory.getbasetemp())


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGREC_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


def _probabilities(predictor, photos):
    done, probs, skipped = predictor.predict_proba(photos)
    assert not skipped and len(done) == len(photos)
    return probs


def test_kept_graph_gives_the_same_answers_as_the_export(model, cache):
    photos = sample_files("val", "bees", 3)
    first = open_predictor(model, batch_size=4)
    assert first.engine.graph is not None  # exported from the network this time
    assert len(list(cache.glob("*.onnx"))) == 1
    second = open_predictor(model, batch_size=4)
    assert second.engine.graph is None  # read from the kept file
    np.testing.assert_allclose(
        _probabilities(second, photos), _probabilities(first, photos), atol=1e-6
    )
    assert second.classes == first.classes and second.source == first.source


def test_second_start_imports_no_torch(model, cache):
    open_predictor(model, batch_size=1)  # keeps the graph
    photo = sample_files("val", "ants", 1)[0]
    code = (
        "import sys; from imgrec.bundle.predictor import open_predictor; "
        f"p = open_predictor({str(model)!r}, batch_size=1); p.predict_proba([{str(photo)!r}]); "
        "print('torch' in sys.modules)"
    )
    env = {**cli_env(), "IMGREC_CACHE_DIR": str(cache.parent)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_a_changed_file_gets_its_own_graph(model, cache, tmp_path):
    photos = sample_files("val", "ants", 2)
    before = _probabilities(open_predictor(model, batch_size=2), photos)
    hotter = tmp_path / "hotter.imgrec"
    update_metadata(model, lambda m: m["calibration"].update(temperature=5.0), out=hotter)
    after = _probabilities(open_predictor(hotter, batch_size=2), photos)
    assert len(list(cache.glob("*.onnx"))) == 2
    assert after.max() < before.max()  # a higher temperature flattens the probabilities
    again = open_predictor(hotter, batch_size=2)
    assert again.engine.graph is None
    np.testing.assert_allclose(_probabilities(again, photos), after, atol=1e-6)


def test_a_damaged_graph_is_exported_again(model, cache):
    open_predictor(model, batch_size=1)
    kept = next(cache.glob("*.onnx"))
    kept.write_bytes(b"not an onnx graph")
    predictor = open_predictor(model, batch_size=1)
    assert predictor.engine.graph is not None  # exported again, and kept again
    assert kept.read_bytes()[:20] != b"not an onnx graph"[:20]


def test_torch_engine_and_an_unwritable_cache_take_the_full_path(model, cache):
    assert open_predictor(model, engine="torch", batch_size=1).engine.name == "torch"
    assert not cache.exists()  # nothing kept for the torch engine
    cache.parent.mkdir(parents=True)
    cache.write_text("a file where the folder should be")
    assert open_predictor(model, batch_size=1).engine.name == "onnx"


def test_only_the_newest_graphs_are_kept(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(graph_cache, "KEEP", 2)
    files = []
    for i in range(3):
        f = tmp_path / f"m{i}.imgrec"
        f.write_bytes(bytes([i]) * 10)
        files.append(f)
        graph_cache.keep_graph(f, b"graph %d" % i)
    assert graph_cache.cached_graph(files[0]) is None
    assert graph_cache.cached_graph(files[2]).read_bytes() == b"graph 2"


def test_training_keeps_the_graph_of_the_model_it_writes(tmp_path, cache):
    """`imgrec train` ends by keeping the graph: the first predict of a new model is fast."""
    from runhelpers import make_split_dataset, run_imgrec

    data = make_split_dataset(tmp_path / "data", n_train=4, n_val=2)
    trained = run_imgrec("train", data, "--epochs", "0", "-q", "--out", tmp_path / "run")
    assert trained.returncode == 0, trained.stderr
    assert graph_cache.graph_path(tmp_path / "run" / "model.imgrec").is_file()
