"""Streaming embeddings with the store: the same features as training's phase 1, computed only
for files the store lacks, NaN rows for unreadable files, and phase 1 itself reusing the store.

Store hits are told apart from recomputation by planting vectors no backbone would produce.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sys

import numpy as np
import pytest
from runhelpers import copy_files, make_split_dataset, sample_files

from imgrec import ImageClassifier, load_dataset
from imgrec.data.cache import DecodedCache
from imgrec.data.embedding_store import EmbeddingStore, file_sha256
from imgrec.data.transforms import eval_transform
from imgrec.errors import ImgrecError
from imgrec.infer.embed import embed_files, embedding_key, preprocessing_of
from imgrec.models.fast_features import onnx_feature_extractor
from imgrec.models.registry import DEFAULT_MODEL, create_model, get_spec
from imgrec.train.head import extract_features

SPEC = get_spec(DEFAULT_MODEL)
KEY = embedding_key(SPEC)
TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}


@pytest.fixture(scope="module")
def model():
    return create_model(SPEC, num_classes=2)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    files = sample_files("train", "ants", 4) + sample_files("train", "bees", 4)
    return copy_files(files, tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def reference(photos, model) -> np.ndarray:
    """Features of `photos` computed exactly as training's phase 1 computes them."""
    p = preprocessing_of(SPEC)
    cache = DecodedCache(photos, p)
    cache.build()
    engine = onnx_feature_extractor(model, p.input_size)
    images = [cache[i] for i in range(len(photos))]
    return extract_features(model, images, eval_transform(p), 32, progress=False, engine=engine)


def test_features_equal_training_phase_one(photos, model, reference):
    x, skipped = embed_files(photos, None, SPEC, None, model=model, batch_size=3)
    assert skipped == []
    assert x.dtype == np.float32 and x.shape == tuple(reference.shape)
    np.testing.assert_allclose(x, reference.numpy(), **TOLERANCE)
    own, _ = embed_files(photos[:2], None, SPEC, None)  # builds its own backbone
    np.testing.assert_allclose(own, reference.numpy()[:2], **TOLERANCE)


def test_pytorch_fallback_gives_the_same_features(photos, model, reference, monkeypatch):
    """Without ONNX Runtime (or on a GPU machine) the backbone runs in PyTorch, in eval mode,
    and leaves a model that was training still training."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now fails
    model.train()
    x, _ = embed_files(photos, None, SPEC, None, model=model, batch_size=5)
    assert model.training
    model.eval()
    np.testing.assert_allclose(x, reference.numpy(), rtol=1e-3, atol=1e-4)


def test_store_hits_are_not_recomputed(photos, model, reference, tmp_path):
    hashes = [file_sha256(p) for p in photos]
    width = reference.shape[1]
    planted = {hashes[0]: np.full(width, 7.0), hashes[5]: np.full(width, -3.0)}
    with EmbeddingStore(tmp_path / "e.sqlite") as store:
        store.put_many(KEY, planted)
        x, _ = embed_files(photos, hashes, SPEC, store, model=model, batch_size=3)
        assert np.array_equal(x[0], planted[hashes[0]])  # taken from the store
        assert np.array_equal(x[5], planted[hashes[5]])
        rest = [i for i in range(len(photos)) if i not in (0, 5)]
        np.testing.assert_allclose(x[rest], reference.numpy()[rest], **TOLERANCE)
        stored = store.get_many(KEY, hashes)  # the computed rows were written back
        assert set(stored) == set(hashes)
        assert all(np.array_equal(stored[hashes[i]], x[i]) for i in range(len(photos)))
        again, skipped = embed_files(photos, None, SPEC, store)  # all cached
    assert np.array_equal(again, x) and skipped == []


def test_a_stored_vector_of_the_wrong_width_is_recomputed(photos, model, reference, tmp_path):
    h = file_sha256(photos[1])
    with EmbeddingStore(tmp_path / "e.sqlite") as store:
        store.put_many(KEY, {h: np.ones(3)})
        x, _ = embed_files(photos[1:2], None, SPEC, store, model=model)
        np.testing.assert_allclose(x[0], reference.numpy()[1], **TOLERANCE)
        assert store.get_many(KEY, [h])[h].shape == (reference.shape[1],)


def test_unreadable_files_give_nan_rows_and_are_listed(photos, model, reference, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    twin = shutil.copy(photos[2], tmp_path / "twin.jpg")  # same bytes, another name
    missing = tmp_path / "missing.jpg"
    paths = [photos[2], broken, missing, twin]
    with EmbeddingStore(tmp_path / "e.sqlite") as store:
        x, skipped = embed_files(paths, None, SPEC, store, model=model)
        assert store.get_many(KEY, [file_sha256(broken)]) == {}  # failures are not cached
    assert np.isnan(x[1]).all() and np.isnan(x[2]).all()
    assert np.isfinite(x[[0, 3]]).all()
    assert np.array_equal(x[0], x[3])
    np.testing.assert_allclose(x[0], reference.numpy()[2], **TOLERANCE)
    assert [(s.path, s.reason) for s in skipped] == [
        (broken, "not an image"),
        (missing, "file not found"),
    ]


def test_no_files_gives_an_empty_matrix(model, reference):
    for given in (model, None):
        x, skipped = embed_files([], None, SPEC, None, model=given)
        assert x.shape == (0, reference.shape[1]) and skipped == []


def test_every_preprocessing_setting_changes_the_key():
    variants = [
        SPEC,
        dataclasses.replace(SPEC, name="other"),
        dataclasses.replace(SPEC, timm_name="other"),
        dataclasses.replace(SPEC, input_size=224),
        dataclasses.replace(SPEC, resize_size=256),
        dataclasses.replace(SPEC, mean=(0.485, 0.456, 0.406)),
        dataclasses.replace(SPEC, std=(0.229, 0.224, 0.225)),
    ]
    assert len({embedding_key(s) for s in variants}) == len(variants)
    assert embedding_key(SPEC) == embedding_key(get_spec(DEFAULT_MODEL))  # stable
    with pytest.raises(ImgrecError):
        embedding_key(SPEC, "none")  # random weights have no reusable embedding


# ---- training's phase 1 ------------------------------------------------------------------------
def _fit(root):
    ds = load_dataset(root)
    clf = ImageClassifier(epochs=0).fit(ds.subset("train"), ds.subset("val"), progress=False)
    return [row[k] for row in clf.history for k in ("train_loss", "val_loss")]


@pytest.mark.slow  # three real (head-only) trainings
def test_phase_one_fills_and_reuses_the_store(tmp_path, monkeypatch, model, caplog):
    root = make_split_dataset(tmp_path / "data", n_train=4, n_val=2)
    monkeypatch.setenv("IMGREC_CACHE_DIR", str(tmp_path / "cache"))
    first = _fit(root)

    files = sorted(root.rglob("*.jpg"))
    hashes = [file_sha256(f) for f in files]
    with EmbeddingStore() as store:
        stored = store.get_many(KEY, hashes)
        assert set(stored) == set(hashes)  # phase 1 wrote every image
        fresh, _ = embed_files(files, hashes, SPEC, None, model=model)
        np.testing.assert_allclose(np.stack([stored[h] for h in hashes]), fresh, **TOLERANCE)
        store.put_many(KEY, {h: np.zeros_like(v) for h, v in stored.items()})
    blind = _fit(root)  # all-zero features from the store: the head learns nothing
    assert blind != first
    assert blind == pytest.approx([np.log(2)] * len(blind), rel=1e-3)

    broken = tmp_path / "broken-cache"
    broken.mkdir()
    (broken / "embeddings.sqlite").write_bytes(b"garbage" * 1000)
    monkeypatch.setenv("IMGREC_CACHE_DIR", str(broken))
    with caplog.at_level(logging.WARNING):
        assert _fit(root) == pytest.approx(first, rel=1e-6)  # computed afresh, same result
    assert "continuing without it" in caplog.text
