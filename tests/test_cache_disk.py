"""Training on images it does not hold in RAM: from disk shards (`--cache disk`, or `auto`
over the memory budget), from a shards folder, and from object storage (a real S3-API
server in a subprocess, credentials from the environment)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from runhelpers import (
    SAMPLE,
    assert_usage_error,
    assert_user_error,
    cli_env,
    make_class_dataset,
    read_csv,
    run_imgrec,
)
from servehelpers import small_model

FAST = ["--preset", "fast", "-q"]  # the head on frozen features: seconds


def _shard_folders() -> list[Path]:
    return sorted((Path(os.environ["IMGREC_CACHE_DIR"]) / "shards").glob("*"))


@pytest.mark.slow
def test_disk_cache_trains_from_shards_of_the_folder_and_reuses_them(tmp_path):
    data = make_class_dataset(tmp_path / "data", n=10)
    before = set(_shard_folders())
    first = run_imgrec("train", data, "--out", tmp_path / "a", "--cache", "disk", *FAST)
    assert first.returncode == 0, first.stderr
    made = set(_shard_folders()) - before
    assert len(made) == 1, "one shard set written into the cache"
    shard = next(next(iter(made)).glob("shard-*.tar"))
    written = shard.stat().st_mtime_ns
    # the run names the original files, not the shards
    rows = read_csv(tmp_path / "a" / "split.csv")
    assert {(data / r["path"]).resolve() for r in rows} <= {
        p.resolve() for p in data.rglob("*.jpg")
    }
    # a second run on the same files reads the same shards, written once
    again = run_imgrec("train", data, "--out", tmp_path / "b", "--cache", "disk", *FAST)
    assert again.returncode == 0, again.stderr
    assert set(_shard_folders()) - before == made and shard.stat().st_mtime_ns == written
    # same split and the same data fingerprint as a run decoding into RAM
    ram = run_imgrec("train", data, "--out", tmp_path / "c", "--cache", "ram", *FAST)
    assert ram.returncode == 0, ram.stderr
    assert read_csv(tmp_path / "c" / "split.csv") == rows
    info = [_data_info(tmp_path / name) for name in ("a", "c")]
    assert info[0]["fingerprint"] == info[1]["fingerprint"]


def _data_info(run: Path) -> dict:
    result = run_imgrec("info", run / "model.imgrec", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["data"]


def test_cache_options_refuse_what_they_cannot_mean(tmp_path):
    assert_usage_error(run_imgrec("train", SAMPLE, "--cache", "floppy"), "--cache", "auto")
    result = run_imgrec("train", SAMPLE, "--cache-memory", "lots", "--out", tmp_path / "r")
    assert_user_error(result, "'lots' is not a size")


@pytest.mark.slow
def test_a_shards_folder_with_a_truncated_shard_trains_on_the_rest(tmp_path):
    shards = tmp_path / "shards"
    written = run_imgrec("shards", SAMPLE, "--out", shards, "--images-per-shard", "40", "-q")
    assert written.returncode == 0, written.stderr
    victim = sorted(shards.glob("shard-*.tar"))[1]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    result = run_imgrec("train", shards, "--out", tmp_path / "r", *FAST)
    assert result.returncode == 0, result.stderr
    skipped = read_csv(tmp_path / "r" / "skipped.csv")
    assert len(skipped) == 40 and all("truncated" in row["reason"] for row in skipped)
    trained = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert trained["accuracy"] > 0.6


@pytest.mark.slow
def test_training_from_object_storage(s3_env, tmp_path):
    data = make_class_dataset(tmp_path / "data", n=8)
    url = s3_env.upload_tree(data, "photos", "pets")
    result = run_imgrec("train", url, "--out", tmp_path / "r", *FAST)
    assert result.returncode == 0, result.stderr
    rows = read_csv(tmp_path / "r" / "split.csv")
    assert len(rows) == 16 and {r["label"] for r in rows} == {"ants", "bees"}
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["source"] == url  # a resumed run reads the same bucket
    shards = run_imgrec("shards", url, "--out", tmp_path / "shards", "-q")
    assert shards.returncode == 0, shards.stderr
    assert "wrote 16 images" in shards.stdout


def test_object_storage_mistakes_are_one_sentence(s3_env, tmp_path, monkeypatch):
    result = run_imgrec("train", "s3://no-such-bucket/pets", "--out", tmp_path / "r", *FAST)
    assert_user_error(result, "no-such-bucket", "does not exist")
    s3_env.make_bucket("creds")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    result = run_imgrec("shards", "s3://creds/pets", "--out", tmp_path / "s", "-q")
    assert_user_error(result, "credentials")


# ---- out of core: more images than the memory budget, peak memory bounded ----------------


def _write_images(root: Path, n: int) -> None:
    """`n` small JPEGs in two classes a network tells apart (warm vs cold noise)."""
    rng = np.random.default_rng(0)
    for i in range(n):
        label = ("warm", "cold")[i % 2]
        base = np.array([200, 80, 40] if label == "warm" else [40, 90, 200], dtype=np.int16)
        pixels = np.clip(base + rng.integers(-60, 60, (48, 64, 3)), 0, 255).astype(np.uint8)
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=80)


def _peak_rss_mb(args: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    """Run `python -m imgrec ARGS`; its result and its own peak resident memory (MB)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgrec", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    _, status, usage = os.wait4(proc.pid, 0)
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return subprocess.CompletedProcess(args, proc.returncode, out, err), usage.ru_maxrss / 1024


@pytest.mark.slow
def test_more_images_than_the_memory_budget_train_in_bounded_memory(tmp_path):
    """6,000 images whose decoded pixels (96 px short side) need ~220 MB against a 20 MB
    budget: the run streams from shards, and its peak memory stays below what the decoded
    images alone would take on top of a small run's peak. A small CNN from scratch, not the
    pretrained backbone: the same streaming path in half the time (peaks measured: small
    run 1,321 MB, streamed 1,311 MB, the same 6,000 held in memory 1,548 MB)."""
    small, large = tmp_path / "small", tmp_path / "large"
    _write_images(small, 400)
    _write_images(large, 6000)
    flags = ["--image-size", "84", "--epochs", "1", "--batch-size", "64", "-q"]
    flags += ["--model", "cnn-scratch"]
    budget = ["--cache-memory", "20MB"]
    base, base_peak = _peak_rss_mb(["train", str(small), "--out", str(tmp_path / "a"), *flags])
    assert base.returncode == 0, base.stderr
    run, peak = _peak_rss_mb(["train", str(large), "--out", str(tmp_path / "b"), *budget, *flags])
    assert run.returncode == 0, run.stderr
    # the default cache mode (auto) decides to stream, and says so
    assert "over the memory budget of 20 MB" in run.stderr
    assert "streaming them from disk shards" in run.stderr
    from imgrec.data.cache_policy import decoded_bytes

    decoded_mb = decoded_bytes(6000, 96) / 1e6
    assert peak < base_peak + decoded_mb / 2, (peak, base_peak, decoded_mb)
    # it learned (1.0 measured; chance is 0.5 give or take 0.017 on 900 test images)
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["accuracy"] > 0.6


@pytest.mark.slow
def test_audit_split_and_evaluate_read_a_shards_folder(tmp_path, tmp_path_factory):
    """They read the records (facts, pixels) the shards hold, and find what they find on the
    folder the shards were written from."""
    shards = tmp_path / "shards"
    assert run_imgrec("shards", SAMPLE, "--out", shards, "-q").returncode == 0
    audits = {}
    for name, source, more in (("folder", SAMPLE, ["--no-embeddings"]), ("shards", shards, [])):
        result = run_imgrec("audit", source, "--out", tmp_path / f"audit-{name}", "-q", *more)
        assert result.returncode == 0, result.stderr
        audits[name] = json.loads((tmp_path / f"audit-{name}" / "audit.json").read_text())
    for key in ("images", "class_counts", "split_counts", "leakage", "duplicate_groups"):
        assert audits["shards"][key] == audits["folder"][key], key
    assert audits["shards"]["embeddings_checked"]  # images read back from the shards
    split = run_imgrec("split", shards, "--out", tmp_path / "split.csv", "-q", "--no-embeddings")
    assert split.returncode == 0, split.stderr
    assert len(read_csv(tmp_path / "split.csv")) == 170

    model = small_model(tmp_path_factory.getbasetemp())  # any model: both reads must agree
    scores = {}
    for name, source in (("folder", SAMPLE), ("shards", shards)):
        out = tmp_path / f"eval-{name}"
        result = run_imgrec("evaluate", model, source, "--out", out, "--include-training")
        assert result.returncode == 0, result.stderr
        scores[name] = json.loads((out / "metrics.json").read_text())
    assert scores["shards"]["n"] == scores["folder"]["n"] == 170
    assert abs(scores["shards"]["accuracy"] - scores["folder"]["accuracy"]) <= 0.03
