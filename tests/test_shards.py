"""Disk shards: the writer (data/shards.py), the reader (data/shard_reader.py) and
`imgrec shards`, on small generated images."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from imagegen import write_kind
from PIL import Image
from runhelpers import assert_usage_error, assert_user_error, run_imgrec

from imgrec.audit.run import audit_dataset
from imgrec.data.cache import DecodedCache, ImageTensorDataset, cached_batches
from imgrec.data.dataset import load_dataset
from imgrec.data.decode import UnreadableImage
from imgrec.data.facts import decode_with_facts, scan_image
from imgrec.data.preprocess import Preprocessing
from imgrec.data.shard_reader import ShardSet, is_shard_folder, looks_unfinished
from imgrec.data.shard_tar import KEEP_ORIGINAL_UP_TO
from imgrec.data.shards import (
    SHARD_INDEX,
    ShardInput,
    inputs_from_dataset,
    read_local,
    write_shards,
)
from imgrec.errors import ImgrecError

P = Preprocessing(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 48)  # resize 48, crop 32
SIZE = 64  # the stored short side


def smooth(path: Path, size: tuple[int, int], seed: int) -> Path:
    """A smooth gradient with a few blocks (JPEG re-encoding barely changes it)."""
    rng = np.random.default_rng(seed)
    w, h = size
    x, y = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
    base = rng.uniform(40, 200, 3)
    pixels = np.stack([base[c] + 50 * np.sin(3 * x + c) + 40 * y for c in range(3)], -1)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    image.paste(tuple(int(v) for v in rng.integers(0, 255, 3)), (w // 4, h // 4, w // 2, h // 2))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=95) if path.suffix == ".jpg" else image.save(path)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """train/{cats,dogs} and val/{cats,dogs}: 10 smooth images of several sizes, one EXIF-
    rotated photo, and one JPEG that is cut short (listed, but not decodable)."""
    root = tmp_path_factory.mktemp("photos")
    sizes = [(192, 128), (128, 160), (100, 100), (48, 40), (300, 120)]
    n = 0
    for split in ("train", "val"):
        for label in ("cats", "dogs"):
            for k in range(3 if split == "train" else 2):
                ext = ".jpg" if n % 2 else ".png"
                smooth(root / split / label / f"{label}{k}{ext}", sizes[n % len(sizes)], n)
                n += 1
    write_kind(root / "train" / "cats", "exif_rotated")
    write_kind(root / "train" / "dogs", "truncated_jpeg")
    return root


@pytest.fixture(scope="module")
def written(photos, tmp_path_factory):
    """The photos written as shards of 3 images, in-process (one worker)."""
    dataset = load_dataset(photos)
    out = tmp_path_factory.mktemp("shards") / "set"
    manifest = write_shards(
        inputs_from_dataset(dataset), out, SIZE, workers=1, images_per_shard=3, source="photos"
    )
    return dataset, out, manifest


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "records.jsonl").read_text().splitlines()]


# ---- the format -----------------------------------------------------------------------------
def test_round_trip_keeps_paths_labels_splits_and_facts(written):
    dataset, out, manifest = written
    index = json.loads((out / SHARD_INDEX).read_text())
    rows = records(out)
    readable = [s for s in dataset.samples if s.path.name != "truncated.jpg"]
    assert manifest.images == index["images"] == len(rows) == len(readable) == 11
    assert index["format"] == "imgrec-shards" and index["version"] == 1
    assert index["classes"] == ["cats", "dogs"] and index["image_size"] == SIZE
    assert [s["file"] for s in index["shards"]] == [f"shard-{k:06d}.tar" for k in range(4)]
    assert sum(s["images"] for s in index["shards"]) == 11
    assert all((out / s["file"]).stat().st_size == s["bytes"] for s in index["shards"])
    assert [(r["path"], r["label"], r["split"]) for r in rows] == [
        (dataset.relative(s.path), s.label, s.split) for s in readable
    ]
    for sample, row in zip(readable, rows, strict=True):
        original, facts = decode_with_facts(sample.path, SIZE)
        shown = (facts.width, facts.height)  # full size, upright
        kept = facts.file_format == "JPEG" and min(shown) <= KEEP_ORIGINAL_UP_TO * SIZE
        # a kept JPEG's facts are gathered as `imgrec audit` scans a folder; the others'
        # on the decode that shrinks them, as the training cache gathers them
        expected = scan_image(sample.path) if kept else facts
        assert row["facts"] == {**expected.__dict__, "path": row["path"]}
        assert min(row["width"], row["height"]) == (min(shown) if kept else min(SIZE, *shown))
        aspect = original.width / original.height
        assert abs(row["width"] / row["height"] - aspect) < 0.05
    rotated = next(r for r in rows if r["path"].endswith("rotated.jpg"))
    assert rotated["width"] < rotated["height"]  # EXIF orientation applied


def test_offsets_and_checksums_point_at_the_jpeg_members(written):
    _, out, _ = written
    rows = records(out)
    with tarfile.open(out / "shard-000001.tar") as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == [
            f"000001-{j:06d}.{ext}" for j in range(3) for ext in ("jpg", "json")
        ]
        assert all(m.mtime == 0 and m.uid == 0 and m.mode == 0o644 for m in members)
        jpegs = [m for m in members if m.name.endswith(".jpg")]
        mine = [r for r in rows if r["shard"] == 1]
        assert [m.offset_data for m in jpegs] == [r["offset"] for r in mine]
        for member, row in zip(jpegs, mine, strict=True):
            data = tar.extractfile(member).read()
            assert zlib.crc32(data) == row["crc32"] and len(data) == row["size"]
            assert Image.open(io.BytesIO(data)).format == "JPEG"


def test_unreadable_images_are_skipped_with_their_reason(written):
    _, out, manifest = written
    assert [(s.path.as_posix(), s.reason) for s in manifest.skipped] == [
        ("train/dogs/truncated.jpg", "truncated image")
    ]
    assert ShardSet.open(out).dataset().skipped[0].reason == "truncated image"


def test_webdataset_reads_a_shard(written):
    webdataset = pytest.importorskip("webdataset")
    _, out, _ = written
    rows = [r for r in records(out) if r["shard"] == 0]
    seen = list(webdataset.WebDataset(str(out / "shard-000000.tar"), shardshuffle=False).decode())
    assert [s["__key__"] for s in seen] == [r["key"] for r in rows]
    assert [(s["json"]["path"], s["json"]["label"]) for s in seen] == [
        (r["path"], r["label"]) for r in rows
    ]


# ---- reading ----------------------------------------------------------------------------------
def test_shard_cache_gives_what_the_ram_cache_gives(written):
    dataset, out, _ = written
    shard_set = ShardSet.open(out)
    shown = shard_set.dataset()
    assert shown.root == out and shown.classes == dataset.classes
    originals = [photo for photo in dataset.paths if photo.name != "truncated.jpg"]
    assert shown.paths == [out / dataset.relative(photo) for photo in originals]
    assert [(s.label, s.split) for s in shown] == [
        (s.label, s.split) for s in dataset if s.path in originals
    ]
    cache = shard_set.cache(P)
    assert cache.build() == [] and cache.valid_indices == list(range(11)) and cache.nbytes == 0
    ram = DecodedCache(originals, P, workers=2)
    ram.build()
    for i in range(11):
        a, b = cache[i], ram[i]
        assert a.dtype == b.dtype == torch.uint8 and a.shape == b.shape
        assert (a.float() - b.float()).abs().mean() < 3, originals[i]
    # facts as `imgrec audit` gathers them for a JPEG the shards keep as it came, as the RAM
    # cache gathers them for an image they shrink
    kept = [
        r["size"] == original.stat().st_size
        for r, original in zip(records(out), originals, strict=True)
    ]
    assert list(cache.facts) == [
        dataclasses.replace(
            scan_image(original) if keep else decode_with_facts(original, SIZE)[1], path=path
        )
        for original, path, keep in zip(originals, cache.paths, kept, strict=True)
    ]
    assert any(kept) and not all(kept)
    audit = audit_dataset(shown, embeddings=False, decoded=cache)  # the audit reads these facts
    assert len(audit.facts) == 11 and audit.facts[0] == cache.facts[0]


def test_subset_batches_and_a_dataloader_with_two_workers(written):
    _, out, _ = written
    cache = ShardSet.open(out).cache(P)
    part = cache.subset(cache.paths[5:])
    assert part.paths == cache.paths[5:] and part.valid_indices == list(range(6))
    assert torch.equal(part[0], cache[5]) and part.facts[0] == cache.facts[5] != cache.facts[4]
    rows, batch = next(cached_batches(cache, [0, 1, 2], lambda t: t[:, :32, :32], 8))
    assert list(rows) == [0, 1, 2] and batch.shape == (3, 3, 32, 32)

    targets = [i % 2 for i in range(len(cache))]
    data = ImageTensorDataset(cache, targets, lambda t: t[:, :32, :32].float())
    loader = torch.utils.data.DataLoader(data, batch_size=4, num_workers=2)
    images, labels = zip(*loader, strict=True)
    assert torch.cat(labels).tolist() == targets
    expected = torch.stack([cache[i][:, :32, :32].float() for i in range(len(cache))])
    assert torch.equal(torch.cat(images), expected)


def test_the_model_may_not_need_more_pixels_than_stored(written):
    _, out, _ = written
    bigger = Preprocessing(224, (0.5,) * 3, (0.5,) * 3, 256)
    with pytest.raises(
        ImgrecError, match="64 px short side; the model needs 256.*--image-size 256"
    ):
        ShardSet.open(out).cache(bigger)


def copy_set(written, tmp_path) -> Path:
    folder = tmp_path / "copy"
    shutil.copytree(written[1], folder)
    return folder


def test_a_truncated_or_missing_shard_costs_only_its_records(written, tmp_path):
    folder = copy_set(written, tmp_path)
    size = (folder / "shard-000001.tar").stat().st_size
    os.truncate(folder / "shard-000001.tar", 1000)
    (folder / "shard-000003.tar").unlink()
    shard_set = ShardSet.open(folder)
    dataset = shard_set.dataset()
    assert len(dataset) == 11 - 3 - 2
    reasons = {s.path.relative_to(folder).as_posix(): s.reason for s in dataset.skipped}
    truncated = f"shard shard-000001.tar is truncated (1,000 of {size:,} bytes); write the shards"
    assert sum(r.startswith(truncated) for r in reasons.values()) == 3
    assert sum("shard-000003.tar is missing" in r for r in reasons.values()) == 2
    cache = shard_set.cache(P, paths=[folder / r["path"] for r in records(folder)])
    skipped = cache.build()
    assert len(skipped) == 5 and len(cache.valid_indices) == 6
    with pytest.raises(KeyError):
        cache[3]
    for name in ("shard-000000.tar", "shard-000002.tar"):
        (folder / name).unlink()
    with pytest.raises(ImgrecError, match="No shard in .* can be read"):
        ShardSet.open(folder)


def test_a_corrupt_record_is_caught_by_its_checksum(written, tmp_path):
    folder = copy_set(written, tmp_path)
    row = records(folder)[4]
    with open(folder / f"shard-{row['shard']:06d}.tar", "r+b") as f:
        f.seek(row["offset"] + row["size"] // 2)
        f.write(b"\x00\x01\x02\x03")
    cache = ShardSet.open(folder).cache(P)
    (skip,) = cache.build()
    assert skip.path == folder / row["path"] and "checksum differs" in skip.reason
    assert 4 not in cache.valid_indices
    unchecked = ShardSet.open(folder).cache(P, verify=False)
    assert unchecked.build() == []
    with pytest.raises(UnreadableImage, match=row["path"].split("/")[-1]):
        unchecked[4]


def test_an_unfinished_folder_says_to_finish_writing(written, tmp_path):
    folder = copy_set(written, tmp_path)
    assert is_shard_folder(folder) and not looks_unfinished(folder)
    (folder / SHARD_INDEX).unlink()
    assert looks_unfinished(folder) and not is_shard_folder(folder)
    with pytest.raises(ImgrecError, match="interrupted; re-run `imgrec shards`"):
        ShardSet.open(folder)
    with pytest.raises(ImgrecError, match="not a shards folder"):
        ShardSet.open(tmp_path)


# ---- writing again: resume, refusals ----------------------------------------------------------
def test_an_interrupted_write_resumes_with_the_missing_shard_only(written, tmp_path):
    dataset, _, _ = written
    folder = copy_set(written, tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in folder.glob("shard-*.tar")}
    lines = (folder / "records.jsonl").read_text()
    (folder / "shard-000002.tar").unlink()
    (folder / SHARD_INDEX).unlink()
    (folder / "shard-000009.tar.part").write_bytes(b"half")  # what a killed worker leaves
    inputs = inputs_from_dataset(dataset)
    manifest = write_shards(inputs, folder, SIZE, workers=1, images_per_shard=3, source="photos")
    assert (manifest.written, manifest.reused) == (1, 3)
    after = {p.name: p.stat().st_mtime_ns for p in folder.glob("shard-*.tar")}
    assert {n for n in after if after[n] != before.get(n)} == {"shard-000002.tar"}
    assert (folder / "records.jsonl").read_text() == lines
    assert not list(folder.glob("*.part")) and is_shard_folder(folder)

    fewer = write_shards(inputs[:5], folder, SIZE, workers=1, images_per_shard=3, source="photos")
    assert (fewer.written, fewer.reused, fewer.shards) == (1, 1, 2)
    assert sorted(p.name for p in folder.glob("shard-*")) == [
        "shard-000000.json",
        "shard-000000.tar",
        "shard-000001.json",
        "shard-000001.tar",
    ]


def test_writing_in_worker_processes_gives_the_same_shards(written, tmp_path):
    dataset, out, _ = written
    folder = tmp_path / "parallel"
    inputs = inputs_from_dataset(dataset)
    manifest = write_shards(inputs, folder, SIZE, workers=2, images_per_shard=3, source="photos")
    assert manifest.written == 4
    for k in range(4):
        name = f"shard-{k:06d}.tar"
        assert (folder / name).read_bytes() == (out / name).read_bytes()
    assert records(folder) == records(out)


def test_refusals(written, tmp_path):
    dataset, out, _ = written
    inputs = inputs_from_dataset(dataset)
    with pytest.raises(ImgrecError, match="already holds shards of photos at 64 px.*--overwrite"):
        write_shards(inputs, out, 96, workers=1, source="photos")
    with pytest.raises(ImgrecError, match="already holds shards of photos"):
        write_shards(inputs, out, SIZE, workers=1, source="elsewhere")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ImgrecError, match="not shards .*notes.txt"):
        write_shards(inputs, other, SIZE, workers=1)
    with pytest.raises(ImgrecError, match="is a file"):
        write_shards(inputs, other / "notes.txt", SIZE, workers=1)
    with pytest.raises(ImgrecError, match="no images"):
        write_shards([], tmp_path / "none")
    with pytest.raises(ImgrecError, match="cannot reach worker processes"):
        write_shards(
            inputs, tmp_path / "l", SIZE, read=lambda s: b"", workers=2, images_per_shard=3
        )
    bad = [ShardInput(str(tmp_path / "missing.jpg"), "a/missing.jpg", "a")]
    with pytest.raises(ImgrecError, match="None of the 1 images.*file not found"):
        write_shards(bad, tmp_path / "bad", SIZE, workers=1)


def test_overwrite_replaces_another_set(written, tmp_path):
    dataset, _, _ = written
    folder = copy_set(written, tmp_path)
    inputs = inputs_from_dataset(dataset)[:4]
    manifest = write_shards(inputs, folder, 48, workers=1, source="photos", overwrite=True)
    assert (manifest.written, manifest.reused, manifest.images) == (1, 0, 4)
    assert sorted(p.name for p in folder.iterdir()) == [
        SHARD_INDEX,
        "records.jsonl",
        "shard-000000.json",
        "shard-000000.tar",
    ]


def test_read_local_refuses_what_is_not_a_file(tmp_path):
    with pytest.raises(UnreadableImage, match="a directory"):
        read_local(str(tmp_path))


# ---- a remote set, through fsspec's memory file system ------------------------------------------
def test_a_remote_set_is_fetched_into_the_cache_and_read_locally(written, private_cache_dir):
    import fsspec

    _, out, _ = written
    fs = fsspec.filesystem("memory")
    for path in out.iterdir():
        fs.pipe(f"/bucket/set/{path.name}", path.read_bytes())
    url = "memory://bucket/set"
    assert is_shard_folder(url) and not looks_unfinished(url)
    remote = ShardSet.open(url)
    assert remote.root.is_relative_to(private_cache_dir / "shards")
    assert not (remote.root / "shard-000000.tar").exists()  # fetched on first use
    dataset = remote.dataset()
    assert [s.path.relative_to(remote.root) for s in dataset] == [
        s.path.relative_to(out) for s in ShardSet.open(out).dataset()
    ]
    cache = remote.cache(P)
    assert cache.build() == []
    local = ShardSet.open(out).cache(P)
    assert all(torch.equal(cache[i], local[i]) for i in range(len(cache)))
    assert (remote.root / "shard-000003.tar").exists()

    fs.rm("/bucket/set/shard-000001.tar")
    fs.pipe("/bucket/set/imgrec-shards.json", (out / SHARD_INDEX).read_bytes() + b" ")
    again = ShardSet.open(url)  # a changed index empties the local copy
    assert not (again.root / "shard-000003.tar").exists()
    assert sum("shard-000001.tar is missing" in s.reason for s in again.dataset().skipped) == 3
    fs.rm("/bucket/set", recursive=True)
    with pytest.raises(ImgrecError, match="not a shards folder"):
        ShardSet.open(url)


def test_a_set_in_s3_reads_like_the_local_one(written, s3_env, tmp_path):
    _, out, _ = written
    url = s3_env.upload_tree(out, "shard-set", "set")
    remote = ShardSet.open(url)
    assert remote.dataset().classes == ["cats", "dogs"] and len(remote.dataset()) == 11
    cache, local = remote.cache(P), ShardSet.open(out).cache(P)
    assert cache.build() == []
    assert all(torch.equal(cache[i], local[i]) for i in range(len(cache)))
    with pytest.raises(ImgrecError, match="s3://nobucket/set is not a shards folder"):
        ShardSet.open("s3://nobucket/set")


# ---- the command -------------------------------------------------------------------------------
def test_cli_writes_shards_and_says_so(photos, tmp_path):
    out = tmp_path / "out"
    result = run_imgrec(
        "shards", photos, "--out", out, "--image-size", "64", "--images-per-shard", "4", "-q"
    )
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith("wrote 11 images in 3 shards (") and "1 skipped" in line, line
    assert "images/s" in line and len(line.splitlines()) == 1
    shard_set = ShardSet.open(out)
    assert shard_set.manifest["source"] == str(photos) and len(shard_set.dataset()) == 11


def test_cli_refuses_bad_input_in_one_sentence(photos, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("x")
    cases = [
        ([tmp_path / "nowhere", "--out", tmp_path / "o1"], "does not exist"),
        ([tmp_path / "empty", "--out", tmp_path / "o2"], "No images found"),
        ([photos, "--out", tmp_path / "file.txt"], "is a file"),
        ([photos, "--out", tmp_path / "busy"], "not shards"),
    ]
    for args, fragment in cases:
        assert_user_error(run_imgrec("shards", *args), fragment)
    usage = run_imgrec("shards", photos, "--out", tmp_path / "o3", "--image-size", "16")
    assert_usage_error(usage, "use 32 or more")
    assert not any((tmp_path / name).exists() for name in ("o1", "o2", "o3"))
