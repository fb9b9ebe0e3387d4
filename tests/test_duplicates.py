"""Duplicate search on planted copies of real photos, exact index checks, and grouping."""

import random
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgrec.audit.duplicates import (
    EXACT_SEARCH_LIMIT,
    HASH_DISTANCE,
    MIN_COSINE,
    DuplicatePair,
    _embedding_pairs,
    _hash_pairs,
    _phash_codes,
    duplicate_clusters,
    find_duplicate_pairs,
    group_ids,
)
from imgrec.data.decode import open_image
from imgrec.data.facts import scan_images
from imgrec.data.preprocess import Preprocessing
from imgrec.data.transforms import eval_transform, resize_for_cache
from imgrec.models.anatomy import forward_features
from imgrec.models.fast_features import onnx_feature_extractor
from imgrec.models.registry import create_model, get_spec

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "imgrec" / "sample" / "hymenoptera"
COPY_KINDS = ("jpeg", "resize90", "resize110", "crop1", "crop2")
N_COPIED = 15


def _copy(im: Image.Image, kind: str, rng: random.Random) -> tuple[Image.Image, int]:
    """The modifications people make: recompress, rescale, trim an edge or two."""
    w, h = im.size
    if kind == "jpeg":
        return im, rng.randint(60, 75)
    if kind.startswith("resize"):
        f = 0.9 if kind == "resize90" else 1.1
        return im.resize((round(w * f), round(h * f)), Image.Resampling.LANCZOS), 90
    box = [0, 0, w, h]
    for side in rng.sample(range(4), 1 if kind == "crop1" else 2):
        cut = rng.uniform(0.05, 0.10)
        if side == 0:
            box[0] = round(w * cut)
        elif side == 1:
            box[1] = round(h * cut)
        elif side == 2:
            box[2] = w - round(w * cut)
        else:
            box[3] = h - round(h * cut)
    return im.crop(tuple(box)), 90


def _features(paths: list[Path]) -> np.ndarray:
    """Production embeddings: EfficientNet-Lite0 pooled features at 256 px."""
    p = Preprocessing(input_size=256, mean=(0.5,) * 3, std=(0.5,) * 3, resize_size=292)
    transform = eval_transform(p)
    model = create_model(get_spec("efficientnet_lite0"), 2).eval()
    run = onnx_feature_extractor(model, 256) or (lambda b: forward_features(model, b))
    batch = torch.stack([transform(resize_for_cache(open_image(x, draft=292), p)) for x in paths])
    with torch.inference_mode():
        return run(batch).float().numpy()


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """All sample photos, then 5 modified copies of 15 of them, then one byte-for-byte copy.

    Returns (paths, group of each path (the original's index), facts, embeddings).
    """
    tmp = tmp_path_factory.mktemp("copies")
    originals = sorted(SAMPLE.rglob("*.jpg"))
    paths, group = list(originals), list(range(len(originals)))
    for i in range(0, N_COPIED * 10, 10):
        im = open_image(originals[i])
        for kind in COPY_KINDS:
            copy, quality = _copy(im, kind, random.Random(f"{i}:{kind}"))
            paths.append(tmp / f"{i}_{kind}.jpg")
            copy.save(paths[-1], quality=quality)
            group.append(i)
    paths.append(tmp / "exact.jpg")
    paths[-1].write_bytes(originals[5].read_bytes())
    group.append(5)
    facts, skipped = scan_images(paths)
    assert not skipped
    return paths, group, facts, _features(paths)


def _planted_pairs(group: list[int]) -> set[tuple[int, int]]:
    return {(g, i) for i, g in enumerate(group) if g != i}


def test_planted_copies_found_and_no_false_pairs(planted):
    paths, group, facts, emb = planted
    pairs = find_duplicate_pairs([f.sha256 for f in facts], [f.phash for f in facts], emb)
    found = {(p.a, p.b) for p in pairs}
    truth = _planted_pairs(group)
    assert len(truth) == N_COPIED * len(COPY_KINDS) + 1
    assert len(found & truth) >= 0.95 * len(truth)
    false = [(paths[p.a].name, paths[p.b].name, p.kind) for p in pairs if group[p.a] != group[p.b]]
    assert false == []
    kinds = {(p.a, p.b): p.kind for p in pairs}
    assert kinds[5, len(paths) - 1] == "exact"
    for k, (g, i) in enumerate(sorted(t for t in truth if t[1] < len(paths) - 1)):
        kind = COPY_KINDS[k % len(COPY_KINDS)]
        if kind in ("jpeg", "resize90", "resize110"):  # phash survives these; crops it does not
            assert kinds.get((g, i)) == "hash", paths[i].name


def test_pair_fields_are_consistent(planted):
    _, _, facts, emb = planted
    pairs = find_duplicate_pairs([f.sha256 for f in facts], [f.phash for f in facts], emb)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    assert pairs == sorted(pairs, key=lambda p: (p.a, p.b))
    assert len({(p.a, p.b) for p in pairs}) == len(pairs)
    for p in pairs:
        assert p.a < p.b
        if p.kind == "exact":
            assert facts[p.a].sha256 == facts[p.b].sha256 and p.similarity == 1.0
        elif p.kind == "hash":
            distance = bin(facts[p.a].phash ^ facts[p.b].phash).count("1")
            assert distance <= HASH_DISTANCE
            assert p.similarity == pytest.approx(1 - distance / 64)
        else:
            assert p.kind == "embedding"
            assert p.similarity >= MIN_COSINE
            assert p.similarity == pytest.approx(float(unit[p.a] @ unit[p.b]), abs=1e-4)


def test_hashes_alone_catch_recompressed_and_resized_copies(planted):
    _, group, facts, _ = planted
    pairs = find_duplicate_pairs([f.sha256 for f in facts], np.array([f.phash for f in facts]))
    assert {p.kind for p in pairs} <= {"exact", "hash"}
    assert all(group[p.a] == group[p.b] for p in pairs)
    assert len(pairs) >= N_COPIED * 3 + 1  # jpeg + two resizes per photo, and the exact copy


def test_distinct_real_photos_have_no_pairs(planted):
    paths, group, facts, emb = planted
    originals = [i for i, g in enumerate(group) if g == i]
    assert len(originals) >= 150
    pairs = find_duplicate_pairs(
        [facts[i].sha256 for i in originals], [facts[i].phash for i in originals], emb[originals]
    )
    assert pairs == []


def _brute_force_hash_pairs(codes: np.ndarray, r: int) -> set[tuple[int, int, int]]:
    bits = np.unpackbits(codes, axis=1)
    out = set()
    for a in range(len(codes)):
        d = (bits[a + 1 :] != bits[a]).sum(axis=1)
        out |= {(a, a + 1 + int(j), int(d[j])) for j in np.flatnonzero(d <= r)}
    return out


@pytest.mark.parametrize("tables", [None, 0, 2, 3, 4, 5, 8])
def test_hash_index_is_exact_radius_search(tables):
    rng = np.random.default_rng(1)
    base = np.frombuffer(rng.bytes(8 * 1200), dtype=np.uint64)
    near = []
    for k in range(300):  # codes 0..15 bits away from a random base code
        value = int(base[rng.integers(len(base))])
        for bit in rng.choice(64, k % 16, replace=False):
            value ^= 1 << int(bit)
        near.append(value)
    codes, _ = _phash_codes(np.concatenate([base, np.array(near, dtype=np.uint64)]), 1500)
    for r in (0, 3, 8, 11):
        if tables == 2 and r > 7:  # 2 x 32-bit keys would need 242 825 probes per query
            continue
        got = set(zip(*(column.tolist() for column in _hash_pairs(codes, r, tables)), strict=True))
        assert got == _brute_force_hash_pairs(codes, r), (tables, r)


def _clustered_embeddings(n: int, seed: int = 0) -> tuple[np.ndarray, set[tuple[int, int]]]:
    """Feature-like vectors: a shared mean, clusters of ~50, variance falling as 1/k over the
    axes, plus 5 % planted copies at cosine 0.91-0.995 (as benchmarks/dedupe.py makes them)."""
    rng = np.random.default_rng(seed)
    std = (np.arange(1280) + 2.0) ** -0.525
    std = (std / np.linalg.norm(std)).astype(np.float32)
    n_copies = n // 20
    n_base = n - n_copies
    mean = rng.standard_normal(1280).astype(np.float32)
    mean *= 0.5 / np.linalg.norm(mean)
    centres = rng.standard_normal((n_base // 50, 1280), dtype=np.float32) * std * 0.63
    base = mean + centres[rng.integers(len(centres), size=n_base)]
    base += rng.standard_normal((n_base, 1280), dtype=np.float32) * std * 0.59
    src = rng.choice(n_base, n_copies, replace=False)
    cos = rng.uniform(0.91, 0.995, n_copies)
    noise = rng.standard_normal((n_copies, 1280), dtype=np.float32) * std
    length = np.linalg.norm(base[src], axis=1) * np.sqrt(1 / cos**2 - 1)
    copies = base[src] + noise * (length / np.linalg.norm(noise, axis=1))[:, None]
    return np.vstack([base, copies]), {(int(s), n_base + k) for k, s in enumerate(src)}


def test_5000_embeddings_quickly_with_index_as_good_as_exact():
    x, truth = _clustered_embeddings(5000)
    sha = [str(i) for i in range(len(x))]
    hashes = np.arange(len(x), dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    start = time.perf_counter()
    pairs = find_duplicate_pairs(sha, hashes, x, hash_distance=-1)
    assert time.perf_counter() - start < 20
    found = {(p.a, p.b) for p in pairs}
    assert len(x) > EXACT_SEARCH_LIMIT  # so this went through the PCA + IVF index
    a, b, _ = _embedding_pairs(x, MIN_COSINE, exact_limit=len(x))
    exact = set(zip(a.tolist(), b.tolist(), strict=True))
    assert truth <= exact
    # Probing 16 of ~70 cells loses nothing here (1 cell: 99.6 %); candidates are verified,
    # so nothing below the threshold slips in either.
    assert found == exact


def test_unusable_embedding_rows_are_ignored():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 64)).astype(np.float32)
    x[1] = x[0] * 3  # same direction: cosine 1
    x[2] = np.nan
    x[3] = 0.0
    x[4] = x[0]
    x[4, 5] = np.inf
    sha = [str(i) for i in range(6)]
    hashes = [0, 2**64 - 1, 0x00FF00FF00FF00FF, 0xFF00FF00FF00FF00, 0x0F0F0F0F0F0F0F0F, 0xF0F0F0F0]
    pairs = find_duplicate_pairs(sha, hashes, x, hash_distance=-1)
    assert [(p.a, p.b, p.kind) for p in pairs] == [(0, 1, "embedding")]
    assert pairs[0].similarity == pytest.approx(1.0)


def test_strongest_kind_wins_and_empty_sha_never_matches():
    x = np.ones((5, 8), dtype=np.float32)  # every embedding identical
    sha = ["s", "s", "t", "", ""]
    hashes = [5, 5, 5 ^ 0b11, 2**64 - 1, 2**64 - 1]
    pairs = find_duplicate_pairs(sha, hashes, x)
    kinds = {(p.a, p.b): p.kind for p in pairs}
    assert kinds[0, 1] == "exact"
    assert kinds[0, 2] == kinds[1, 2] == "hash"
    assert kinds[3, 4] == "hash"  # same phash, but no digest to compare
    assert kinds[0, 3] == "embedding"
    assert len(pairs) == 10
    similarity = {(p.a, p.b): p.similarity for p in pairs}
    assert similarity[0, 2] == pytest.approx(1 - 2 / 64)


def test_phash_inputs_python_ints_or_uint64_agree_and_are_validated():
    values = [0, 1, 2**63 | 0b1110, 2**64 - 1, 2**64 - 2]
    sha = [str(i) for i in range(5)]
    a = find_duplicate_pairs(sha, values, hash_distance=1)
    b = find_duplicate_pairs(sha, np.array(values, dtype=np.uint64), hash_distance=1)
    assert a == b and {(p.a, p.b) for p in a} == {(0, 1), (3, 4)}
    with pytest.raises(ValueError):
        find_duplicate_pairs(sha, values[:4])
    with pytest.raises(ValueError):
        find_duplicate_pairs(sha[:2], [-1, 3])
    with pytest.raises(ValueError):
        find_duplicate_pairs(sha, values, np.zeros((4, 8)))
    assert find_duplicate_pairs([], []) == []


def test_items_without_signals_never_match():
    """Unreadable files: empty digest, no phash, NaN embedding."""
    x = np.ones((4, 8), dtype=np.float32)
    x[1] = np.nan
    x[3] = np.nan
    pairs = find_duplicate_pairs(["a", "", "a", ""], [7, None, 7, None], x)
    assert [(p.a, p.b, p.kind) for p in pairs] == [(0, 2, "exact")]
    pairs = find_duplicate_pairs(["a", "", "b", ""], [None, None, 7, 7])
    assert [(p.a, p.b, p.kind) for p in pairs] == [(2, 3, "hash")]


def test_clusters_and_group_ids():
    pairs = [
        DuplicatePair(3, 5, "hash", 0.9),
        DuplicatePair(2, 6, "exact", 1.0),
        DuplicatePair(0, 3, "embedding", 0.95),
        DuplicatePair(5, 7, "hash", 0.9),
    ]
    assert duplicate_clusters(9, pairs) == [[0, 3, 5, 7], [2, 6]]
    assert group_ids(9, pairs) == [0, 1, 2, 0, 3, 0, 2, 0, 4]
    assert duplicate_clusters(9, reversed(pairs)) == [[0, 3, 5, 7], [2, 6]]
    assert group_ids(9, reversed(pairs)) == group_ids(9, pairs)
    assert duplicate_clusters(4, []) == []
    assert group_ids(4, iter([])) == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        group_ids(5, [DuplicatePair(1, 5, "hash", 0.9)])


def test_groups_of_planted_copies(planted):
    paths, group, facts, emb = planted
    pairs = find_duplicate_pairs([f.sha256 for f in facts], [f.phash for f in facts], emb)
    ids = group_ids(len(paths), pairs)
    clusters = duplicate_clusters(len(paths), pairs)
    assert len(clusters) == N_COPIED + 1  # and the byte-for-byte copy
    for cluster in clusters:
        assert len({group[i] for i in cluster}) == 1
        assert len({ids[i] for i in cluster}) == 1
    assert len(set(ids)) == len(paths) - sum(len(c) - 1 for c in clusters)
