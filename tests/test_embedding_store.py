"""The on-disk embedding cache: round trips, sharing between connections and processes, and
staying out of the way (never raising) when its file is damaged or cannot be written."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import imgrec.data.embedding_store as embedding_store
from imgrec.data.embedding_store import EmbeddingStore, default_cache_dir, file_sha256

KEY = "model-a"


def vectors(n: int, dim: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"{i:064x}": rng.standard_normal(dim).astype(np.float32) for i in range(n)}


def test_round_trip_keeps_float32_values_exactly(tmp_path):
    items = vectors(5)
    with EmbeddingStore(tmp_path / "e.sqlite") as store:
        store.put_many(KEY, items)
        got = store.get_many(KEY, [*items, "0" * 63 + "f"])
    assert set(got) == set(items)  # the unknown hash is simply absent
    for h, v in items.items():
        assert got[h].dtype == np.float32
        assert np.array_equal(got[h], v)


def test_float64_input_is_stored_as_float32(tmp_path):
    v = np.array([0.1, 1 / 3, -2.5], dtype=np.float64)
    with EmbeddingStore(tmp_path / "e.sqlite") as store:
        store.put_many(KEY, {"h": v})
        got = store.get_many(KEY, ["h"])["h"]
    assert got.dtype == np.float32
    assert np.array_equal(got, v.astype(np.float32))


def test_model_keys_are_separate_and_put_replaces(tmp_path):
    with EmbeddingStore(tmp_path / "e.sqlite") as store:
        store.put_many("a", {"h": np.ones(4)})
        store.put_many("b", {"h": np.zeros(4)})
        store.put_many("a", {"h": np.full(4, 2.0)})
        assert np.array_equal(store.get_many("a", ["h"])["h"], np.full(4, 2.0))
        assert np.array_equal(store.get_many("b", ["h"])["h"], np.zeros(4))
        assert store.get_many("c", ["h"]) == {}


def test_lookups_larger_than_sqlites_variable_limit(tmp_path):
    items = vectors(2500, dim=2)  # > 999 and > QUERY_CHUNK: needs chunked IN (...) queries
    with EmbeddingStore(tmp_path / "e.sqlite") as store:
        store.put_many(KEY, items)
        got = store.get_many(KEY, list(items) + list(items)[:10])  # repeats are harmless
    assert len(got) == 2500


def test_non_finite_vectors_are_not_stored(tmp_path):
    with EmbeddingStore(tmp_path / "e.sqlite") as store:
        store.put_many(KEY, {"nan": np.array([np.nan, 1.0]), "ok": np.array([1.0, 2.0])})
        assert set(store.get_many(KEY, ["nan", "ok"])) == {"ok"}


def test_a_matrix_is_not_an_embedding(tmp_path):
    with EmbeddingStore(tmp_path / "e.sqlite") as store, pytest.raises(ValueError, match="1-D"):
        store.put_many(KEY, {"h": np.ones((2, 2))})


def test_two_connections_see_each_others_writes(tmp_path):
    path = tmp_path / "e.sqlite"
    items = vectors(3)
    with EmbeddingStore(path) as writer, EmbeddingStore(path) as reader:
        writer.put_many(KEY, items)
        assert set(reader.get_many(KEY, list(items))) == set(items)
        reader.put_many(KEY, {"other": np.ones(8)})
        assert "other" in writer.get_many(KEY, ["other"])
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_writer_waits_for_another_connections_lock(tmp_path):
    """Another process mid-transaction makes a put wait (busy timeout), not fail or crash."""
    path = tmp_path / "e.sqlite"
    EmbeddingStore(path).close()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # hold the write lock
    threading.Timer(0.5, lambda: other.execute("COMMIT")).start()
    with EmbeddingStore(path) as store:
        started = time.perf_counter()
        store.put_many(KEY, {"h": np.ones(3)})
        waited = time.perf_counter() - started
        assert store.available
        assert "h" in store.get_many(KEY, ["h"])
    assert waited >= 0.4
    other.close()


# Loads the module file alone: imgrec.data's __init__ would import torch (seconds per process).
WRITER = textwrap.dedent(
    """
    import importlib.util, sys
    import numpy as np
    spec = importlib.util.spec_from_file_location("embedding_store", sys.argv[3])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path, tag = sys.argv[1], sys.argv[2]
    assert "torch" not in sys.modules
    with module.EmbeddingStore(path) as store:
        for batch in range(40):
            store.put_many("k", {f"{tag}-{batch}-{i}": np.full(16, batch, np.float32)
                                 for i in range(25)})
        assert store.available
    """
)


def test_two_processes_write_at_once(tmp_path):
    path = tmp_path / "e.sqlite"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), tag, embedding_store.__file__],
            stderr=subprocess.PIPE,
        )
        for tag in ("a", "b")
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    wanted = [f"{t}-{b}-{i}" for t in "ab" for b in range(40) for i in range(25)]
    with EmbeddingStore(path) as store:
        assert len(store.get_many("k", wanted)) == 2000


def test_damaged_file_falls_back_to_no_cache(tmp_path, caplog):
    path = tmp_path / "e.sqlite"
    path.write_bytes(b"this is not a database, just some bytes " * 100)
    with caplog.at_level(logging.WARNING), EmbeddingStore(path) as store:
        assert not store.available
        store.put_many(KEY, {"h": np.ones(3)})  # no error, nothing kept
        assert store.get_many(KEY, ["h"]) == {}
    assert "continuing without it" in caplog.text
    assert path.read_bytes().startswith(b"this is not a database")  # left for the user


def test_a_file_damaged_while_open_disables_the_store(tmp_path, caplog):
    path = tmp_path / "e.sqlite"
    with EmbeddingStore(path) as store:
        store.put_many(KEY, {"h": np.ones(3)})
        con = sqlite3.connect(path)
        con.execute("DROP TABLE embeddings")  # another tool wrecked it
        con.close()
        with caplog.at_level(logging.WARNING):
            assert store.get_many(KEY, ["h"]) == {}
            store.put_many(KEY, {"h": np.ones(3)})
        assert not store.available
    assert "embedding cache" in caplog.text


def test_unwritable_location_falls_back(tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")  # a file where the cache folder should be: mkdir fails, even as root
    with caplog.at_level(logging.WARNING), EmbeddingStore(blocker / "e.sqlite") as store:
        assert not store.available
        store.put_many(KEY, {"h": np.ones(3)})
        assert store.get_many(KEY, ["h"]) == {}
    assert "continuing without it" in caplog.text


def test_a_blob_that_does_not_match_its_dimension_is_ignored(tmp_path, caplog):
    path = tmp_path / "e.sqlite"
    with EmbeddingStore(path) as store:
        store.put_many(KEY, {"good": np.ones(4), "bad": np.ones(4)})
    con = sqlite3.connect(path)
    con.execute("UPDATE embeddings SET dim = 5 WHERE sha256 = 'bad'")
    con.commit()
    con.close()
    with caplog.at_level(logging.WARNING), EmbeddingStore(path) as store:
        got = store.get_many(KEY, ["good", "bad"])
        assert set(got) == {"good"}
        assert store.available  # one bad row does not disable the cache
    assert "damaged cached embedding" in caplog.text


def test_a_newer_schema_is_left_alone(tmp_path):
    path = tmp_path / "e.sqlite"
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version = 99")
    con.close()
    with EmbeddingStore(path) as store:
        assert not store.available


def test_default_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("IMGREC_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    assert EmbeddingStore().path == tmp_path / "mine" / "embeddings.sqlite"
    monkeypatch.delenv("IMGREC_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "imgrec"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # ignored, as the XDG spec says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "imgrec"


def test_tests_do_not_use_the_real_cache(private_cache_dir):
    assert default_cache_dir() == private_cache_dir


def test_file_sha256_matches_hashlib_across_chunks(tmp_path):
    data = np.random.default_rng(0).bytes(2_500_000)  # spans three 1 MB reads
    (tmp_path / "big.bin").write_bytes(data)
    (tmp_path / "empty.bin").write_bytes(b"")
    assert file_sha256(tmp_path / "big.bin") == hashlib.sha256(data).hexdigest()
    assert file_sha256(tmp_path / "empty.bin") == hashlib.sha256(b"").hexdigest()
    with pytest.raises(OSError):
        file_sha256(tmp_path / "missing.bin")
