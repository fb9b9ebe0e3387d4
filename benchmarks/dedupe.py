"""Duplicate search: `find_duplicate_pairs` on 50 000 synthetic 1280-d embeddings vs all pairs.

The embeddings imitate EfficientNet-Lite0 pooled features: a shared mean direction, clusters
of ~50 alike images and a power-law variance spectrum (nearest different item: cosine p50
~0.74, p99 ~0.82; measured on real photos: 0.70, 0.83), plus 5 % planted near copies at
cosine 0.90-0.995 whose phash differs in 0-20 bits. The baseline, timed in the same run, is
an exact blockwise matrix-multiply all-pairs search on a 10 000-item subsample, extrapolated
quadratically to n ((n / 10 000)^2: all-pairs work grows with n^2). Prints one JSON line.

`--thresholds` instead re-measures HASH_DISTANCE and MIN_COSINE on the real photos in
../shared/datasets: the similarity of each photo to its modified copies (JPEG q60-75, resize
90 %/110 %, crop 5-10 % off one or two sides) against its nearest different photo. It
computes EfficientNet-Lite0 features for ~6000 images (minutes on 2 cores).

    python benchmarks/dedupe.py [--n 50000] [--baseline-n 10000] [--seed 0]
    python benchmarks/dedupe.py --thresholds [--copies-of 500]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from imgrec.audit.duplicates import HASH_DISTANCE, MIN_COSINE, find_duplicate_pairs

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DIM = 1280
COPY_KINDS = ("jpeg", "resize90", "resize110", "crop1", "crop2")


def synthetic_embeddings(
    n: int, seed: int, copy_fraction: float = 0.05
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings, phashes, planted pairs (a < b)) with real-feature-like statistics.

    Squared norm splits into mean 0.25 / cluster 0.40 / item noise 0.35, on axes whose
    variance falls as (k + 2)^-1.05 (real features: top 50 axes hold 56 % of the variance).
    """
    rng = np.random.default_rng(seed)
    std = np.sqrt((np.arange(DIM) + 2.0) ** -1.05).astype(np.float32)
    std /= np.linalg.norm(std)
    n_copies = int(n * copy_fraction)
    n_base = n - n_copies
    mean = rng.standard_normal(DIM).astype(np.float32)
    mean *= np.sqrt(0.25) / np.linalg.norm(mean)
    centres = rng.standard_normal((max(1, n_base // 50), DIM), dtype=np.float32) * std
    labels = rng.integers(len(centres), size=n_base)
    noise = rng.standard_normal((n_base, DIM), dtype=np.float32) * std
    base = mean + centres[labels] * np.sqrt(0.4) + noise * np.sqrt(0.35)
    src = rng.choice(n_base, n_copies, replace=False)
    copies = _near_copies(base[src], rng.uniform(0.91, 0.995, n_copies), std, rng)
    phashes = np.frombuffer(rng.bytes(8 * n), dtype=np.uint64).copy()
    copy_hashes = [_flip_bits(int(phashes[s]), int(rng.integers(0, 21)), rng) for s in src]
    phashes[n_base:] = np.array(copy_hashes, dtype=np.uint64)
    order = rng.permutation(n)  # copies must not sit at the end: index order matters
    where = np.argsort(order)
    pairs = np.sort(np.stack([where[src], where[n_base + np.arange(n_copies)]], axis=1), axis=1)
    return np.vstack([base, copies])[order], phashes[order], pairs


def _near_copies(x: np.ndarray, cosine: np.ndarray, std: np.ndarray, rng) -> np.ndarray:
    """x plus noise (same spectrum) scaled so cos(x, copy) is about `cosine`."""
    noise = rng.standard_normal(x.shape, dtype=np.float32) * std
    length = np.linalg.norm(x, axis=1) * np.sqrt(1.0 / cosine**2 - 1.0)
    return x + noise * (length / np.linalg.norm(noise, axis=1))[:, None].astype(np.float32)


def _flip_bits(value: int, k: int, rng) -> int:
    for bit in rng.choice(64, k, replace=False):
        value ^= 1 << int(bit)
    return value


def exact_pairs(x: np.ndarray, min_cosine: float, block: int = 2048) -> set[tuple[int, int]]:
    """Baseline: every pair with cosine >= min_cosine by blockwise matrix multiplication."""
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    found: set[tuple[int, int]] = set()
    for start in range(0, len(unit), block):
        sims = unit[start : start + block] @ unit.T
        rows, cols = np.nonzero(sims >= min_cosine)
        rows += start
        keep = cols > rows
        found.update(zip(rows[keep].tolist(), cols[keep].tolist(), strict=True))
    return found


def speed(n: int, baseline_n: int, seed: int) -> dict:
    x, phashes, planted = synthetic_embeddings(n, seed)
    sha = [f"{i:064x}" for i in range(n)]
    start = time.perf_counter()
    hash_only = find_duplicate_pairs(sha, phashes)
    hash_seconds = time.perf_counter() - start
    start = time.perf_counter()
    pairs = find_duplicate_pairs(sha, phashes, x)
    seconds = time.perf_counter() - start
    found = {(p.a, p.b) for p in pairs}
    recall = float(np.mean([(int(a), int(b)) in found for a, b in planted]))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    cosines = np.einsum("ij,ij->i", unit[planted[:, 0]], unit[planted[:, 1]])
    bits = np.unpackbits((phashes[planted[:, 0]] ^ phashes[planted[:, 1]]).view(np.uint8))
    hamming = bits.reshape(len(planted), 64).sum(axis=1)
    findable = [
        (int(a), int(b)) in found
        for (a, b), c, h in zip(planted, cosines, hamming, strict=True)
        if c >= MIN_COSINE or h <= HASH_DISTANCE
    ]

    sub = np.sort(np.random.default_rng(seed + 1).choice(n, baseline_n, replace=False))
    start = time.perf_counter()
    truth = exact_pairs(x[sub], MIN_COSINE)
    baseline_seconds = time.perf_counter() - start
    ours_sub = {
        (p.a, p.b)
        for p in find_duplicate_pairs(sha[:baseline_n], phashes[sub], x[sub], hash_distance=-1)
    }
    extrapolated = baseline_seconds * (n / baseline_n) ** 2
    return {
        "benchmark": "dedupe",
        "n": n,
        "dim": DIM,
        "seconds": round(seconds, 2),
        "hash_only_seconds": round(hash_seconds, 2),
        "pairs": len(pairs),
        "pairs_by_kind": {k: sum(p.kind == k for p in pairs) for k in ("hash", "embedding")},
        "hash_only_pairs": len(hash_only),
        "planted": len(planted),
        "recall_planted": round(recall, 4),
        "planted_within_thresholds": len(findable),
        "recall_planted_within_thresholds": round(float(np.mean(findable)), 4),
        "baseline": "exact blockwise matmul all-pairs (embeddings only)",
        "baseline_n": baseline_n,
        "baseline_seconds_on_subsample": round(baseline_seconds, 2),
        "baseline_seconds_extrapolated": round(extrapolated, 1),
        "extrapolation": f"quadratic: x (n / {baseline_n})^2",
        "ratio_to_baseline": round(seconds / extrapolated, 4),
        "subsample_recall_vs_exact": round(len(ours_sub & truth) / max(1, len(truth)), 4),
        "subsample_exact_pairs": len(truth),
        "min_cosine": MIN_COSINE,
        "hash_distance": HASH_DISTANCE,
    }


def _modified(im, kind: str, rng: random.Random):
    """A planted copy of `im` and the JPEG quality to save it with."""
    from PIL import Image

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
    import torch

    from imgrec.data.decode import open_image
    from imgrec.data.preprocess import Preprocessing
    from imgrec.data.transforms import eval_transform, resize_for_cache
    from imgrec.models.anatomy import forward_features
    from imgrec.models.fast_features import onnx_feature_extractor
    from imgrec.models.registry import create_model, get_spec

    p = Preprocessing(input_size=256, mean=(0.5,) * 3, std=(0.5,) * 3, resize_size=292)
    transform = eval_transform(p)
    model = create_model(get_spec("efficientnet_lite0"), 2).eval()
    run = onnx_feature_extractor(model, 256) or (lambda b: forward_features(model, b))
    out = []
    with torch.inference_mode():
        for s in range(0, len(paths), 64):
            batch = [
                transform(resize_for_cache(open_image(x, draft=292), p)) for x in paths[s : s + 64]
            ]
            out.append(run(torch.stack(batch)).float().numpy())
    return np.concatenate(out)


def _percentiles(values: np.ndarray, qs=(0, 1, 2, 5, 10, 50, 90, 95, 99, 100)) -> dict:
    return {f"p{q}": round(float(np.percentile(values, q)), 3) for q in qs}


def thresholds(copies_of: int, seed: int) -> list[dict]:
    """Similarity of planted copies vs nearest different photo, and the pairs found."""

    from imgrec.data.decode import open_image
    from imgrec.data.facts import scan_images

    originals = sorted(
        p
        for name in ("hymenoptera_data", "cats_and_dogs_filtered")
        for p in (SHARED / name).rglob("*")
        if p.is_file()
    )
    chosen = random.Random(seed).sample(range(len(originals)), copies_of)
    with tempfile.TemporaryDirectory() as tmp:
        copies, owner, kinds = [], [], []
        for i in chosen:
            im = open_image(originals[i])
            for kind in COPY_KINDS:
                copy, quality = _modified(im, kind, random.Random(f"{i}:{kind}"))
                path = Path(tmp) / f"{i}_{kind}.jpg"
                copy.save(path, quality=quality)
                copies.append(path)
                owner.append(i)
                kinds.append(kind)
        paths = originals + copies
        facts, skipped = scan_images(paths)
        ok = [i for i, f in enumerate(facts) if f is not None]
        feats = np.zeros((len(paths), DIM), np.float32)
        feats[ok] = _features([paths[i] for i in ok])
    n0 = len(originals)
    unit = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    bits = np.unpackbits(
        np.array([f.phash if f else 0 for f in facts], dtype=">u8").view(np.uint8).reshape(-1, 8),
        axis=1,
    )
    readable = np.array([facts[i] is not None for i in range(n0)])
    sims = unit[:n0] @ unit[:n0].T
    np.fill_diagonal(sims, -1)
    hams = np.stack([(bits[:n0] != bits[i]).sum(1) for i in range(n0)])
    np.fill_diagonal(hams, 99)
    copy_cos = np.array([unit[n0 + k] @ unit[o] for k, o in enumerate(owner)])
    copy_ham = np.array([(bits[n0 + k] != bits[o]).sum() for k, o in enumerate(owner)])
    rows = [
        {
            "measure": "nearest different photo",
            "n": int(readable.sum()),
            "cosine": _percentiles(sims.max(1)[readable]),
            "hamming": _percentiles(hams.min(1)[readable]),
            "closest_pairs": _closest_pairs(sims, hams, originals),
        }
    ]
    for kind in COPY_KINDS:
        m = np.array(kinds) == kind
        rows.append(
            {
                "measure": f"copy vs original: {kind}",
                "n": int(m.sum()),
                "cosine": _percentiles(copy_cos[m]),
                "hamming": _percentiles(copy_ham[m]),
            }
        )
    rows.append(_found(facts, feats, ok, n0, owner, kinds, paths, skipped))
    return rows


def _closest_pairs(sims: np.ndarray, hams: np.ndarray, paths: list[Path], k: int = 4) -> list:
    """The k most similar pairs of different originals: real duplicates or the margin."""
    upper = np.triu(sims, 1)
    flat = np.argsort(upper, axis=None)[::-1][:k]
    return [
        [
            str(paths[a].relative_to(SHARED)),
            str(paths[b].relative_to(SHARED)),
            round(float(sims[a, b]), 3),
            int(hams[a, b]),
        ]
        for a, b in zip(*np.unravel_index(flat, sims.shape), strict=True)
    ]


def _found(facts, feats, ok, n0, owner, kinds, paths, skipped) -> dict:
    """Recall of planted (photo, copy) pairs and the pairs linking different photos."""
    group = np.concatenate([np.arange(n0), np.array(owner)])[ok]
    pairs = find_duplicate_pairs(
        [facts[i].sha256 for i in ok], [facts[i].phash for i in ok], feats[ok]
    )
    found = {(ok[p.a], ok[p.b]) for p in pairs}
    planted = [(o, n0 + k) for k, o in enumerate(owner)]
    hit = [pair in found for pair in planted]
    false = [p for p in pairs if group[p.a] != group[p.b]]
    return {
        "measure": "pairs found at the chosen thresholds",
        "hash_distance": HASH_DISTANCE,
        "min_cosine": MIN_COSINE,
        "recall_planted": round(float(np.mean(hit)), 4),
        "recall_by_kind": {
            k: round(float(np.mean([h for h, kk in zip(hit, kinds, strict=True) if kk == k])), 4)
            for k in COPY_KINDS
        },
        "pairs": len(pairs),
        "pairs_between_different_photos": len(false),
        "false_pair_rate": round(len(false) / max(1, len(pairs)), 4),
        "different_photo_pairs": [
            [
                str(paths[ok[p.a]].relative_to(SHARED)),
                str(paths[ok[p.b]].relative_to(SHARED)),
                p.kind,
                round(p.similarity, 3),
            ]
            for p in false
            if ok[p.b] < n0
        ],
        "skipped": len(skipped),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--baseline-n", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--thresholds", action="store_true", help="measure on real photos")
    parser.add_argument("--copies-of", type=int, default=500)
    args = parser.parse_args()
    if args.thresholds:
        for row in thresholds(args.copies_of, args.seed):
            print(json.dumps(row), flush=True)
        return
    print(json.dumps(speed(args.n, min(args.baseline_n, args.n), args.seed)), flush=True)


if __name__ == "__main__":
    main()
