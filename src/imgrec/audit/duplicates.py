"""Exact and near-duplicate pairs through indexes (never all pairs), and the groups they form.

Duplicates across train/test inflate accuracy, so the split must keep each group together.
Three signals, cheapest first: the same bytes (sha256), a close perceptual hash (faiss radius
search on the 64-bit phash) and a close embedding (cosine of L2-normalised features).

Measured (benchmarks/dedupe.py --thresholds: 3398 real photos + 5 copies of 500 by JPEG q60-75,
resize 90/110 %, crop 5-10 % off 1-2 sides; EfficientNet-Lite0 at 256 px): nearest different
photo Hamming p1 12 / min 10, cosine p50 .70 / p99 .825 / max .893; copies Hamming <= 4 (JPEG,
resize) but p50 10-14 (crops), cosine p5 .90-.98. HASH_DISTANCE 8 + MIN_COSINE .90 find 98.7 %
of copy pairs (crop 2 sides 94 %) and no false pair (dog.74 = dog.180 is a real duplicate).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import faiss
import numpy as np

HASH_DISTANCE = 8  # max Hamming distance between 64-bit phashes of a "hash" pair
MIN_COSINE = 0.9  # min cosine similarity of the embeddings of an "embedding" pair
EXACT_SEARCH_LIMIT = 4096  # up to this many embeddings, exact search beats building an index
_HASH_BITS = 64
_QUERY_BATCH = 4096  # queries per range search, to bound the size of each result set
_IVF_PROBES = 16  # of ~sqrt(n) cells; 99.7 % of planted pairs at n = 50 000 (8: 98.6 %)
_PCA_DIM = 128  # candidate search dimension: cheap, and exact-recall by contraction
_PCA_SAMPLE = 8192
_DOT_CHUNK = 16384

_SEED = 1234


@dataclass(frozen=True)
class DuplicatePair:
    """Items `a` < `b` (indices into the inputs) that look like the same picture."""

    a: int
    b: int
    kind: str  # "exact" (same sha256), "hash" (phash Hamming <= threshold), "embedding"
    similarity: float  # 1.0 for exact; 1 - hamming/64 for hash; cosine for embedding


KINDS = ("exact", "hash", "embedding")  # strongest first


class DuplicatePairs:
    """Pairs as four arrays (a < b, sorted; kind as an index into KINDS; similarity), not
    one Python object each: 100,000 generated look-alike photos give about 4 million pairs,
    and as objects they raised the peak memory of training on them from 1.6 to 2.2 GB
    (benchmarks/scale.py). Iterating or indexing gives DuplicatePair objects."""

    def __init__(self, a: np.ndarray, b: np.ndarray, kind: np.ndarray, similarity: np.ndarray):
        self.a = np.asarray(a, dtype=np.int64)
        self.b = np.asarray(b, dtype=np.int64)
        self.kind = np.asarray(kind, dtype=np.uint8)
        self.similarity = np.asarray(similarity, dtype=np.float64)

    @classmethod
    def of(cls, pairs: Iterable[DuplicatePair] | DuplicatePairs) -> DuplicatePairs:
        if isinstance(pairs, DuplicatePairs):
            return pairs
        listed = list(pairs)
        return cls(
            np.array([p.a for p in listed], dtype=np.int64),
            np.array([p.b for p in listed], dtype=np.int64),
            np.array([KINDS.index(p.kind) for p in listed], dtype=np.uint8),
            np.array([p.similarity for p in listed], dtype=np.float64),
        )

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, i: int) -> DuplicatePair:
        return DuplicatePair(
            int(self.a[i]), int(self.b[i]), KINDS[self.kind[i]], float(self.similarity[i])
        )

    def __iter__(self) -> Iterator[DuplicatePair]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, Iterable) else NotImplemented

    __hash__ = None  # type: ignore[assignment] - mutable arrays inside


def find_duplicate_pairs(
    sha256: Sequence[str],
    phashes: Sequence[int | None] | np.ndarray,
    embeddings: np.ndarray | None = None,
    *,
    hash_distance: int = HASH_DISTANCE,
    min_cosine: float = MIN_COSINE,
) -> DuplicatePairs:
    """Every pair found by any signal, once, under its strongest kind, sorted by (a, b).

    For items without a signal (files that could not be read), pass an empty sha256, a None
    phash and an embedding row of NaN: none of them ever matches.
    """
    n = len(sha256)
    codes, hashed = _phash_codes(phashes, n)
    found = [(*_exact_pairs(sha256), 0, np.float64(1.0))]
    i, j, distance = _hash_pairs(codes, hash_distance)
    found.append((hashed[i], hashed[j], 1, 1.0 - distance / _HASH_BITS))  # a < b still holds
    if embeddings is not None:
        a, b, cosine = _embedding_pairs(_checked_embeddings(embeddings, n), min_cosine)
        found.append((a, b, 2, cosine))
    a = np.concatenate([f[0] for f in found]).astype(np.int64)
    b = np.concatenate([f[1] for f in found]).astype(np.int64)
    kind = np.concatenate([np.full(len(f[0]), f[2], np.uint8) for f in found])
    similarity = np.concatenate([np.broadcast_to(f[3], len(f[0])) for f in found])
    # np.unique keeps each (a, b) at its first occurrence: the strongest kind, listed first
    _, first = np.unique(a * max(n, 1) + b, return_index=True)
    return DuplicatePairs(a[first], b[first], kind[first], similarity[first])


def duplicate_clusters(n: int, pairs: Iterable[DuplicatePair] | DuplicatePairs) -> list[list[int]]:
    """Connected groups of two or more items; members sorted, groups by first member."""
    groups: dict[int, list[int]] = {}
    for i, root in enumerate(_components(n, pairs).tolist()):
        groups.setdefault(root, []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def group_ids(n: int, pairs: Iterable[DuplicatePair] | DuplicatePairs) -> list[int]:
    """A group id per item, numbered 0, 1, ... by first member; singletons get their own.

    Group-aware splitting keeps every id in one split, so no copy leaks across splits.
    """
    ids: dict[int, int] = {}
    return [ids.setdefault(root, len(ids)) for root in _components(n, pairs).tolist()]


def _components(n: int, pairs: Iterable[DuplicatePair] | DuplicatePairs) -> np.ndarray:
    """Each item's connected component, named by its smallest member (scipy's
    connected_components on the sparse graph of the pairs)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs = DuplicatePairs.of(pairs)
    outside = (pairs.a < 0) | (pairs.b < 0) | (pairs.a >= n) | (pairs.b >= n)
    if outside.any():
        bad = np.flatnonzero(outside)[0]
        raise ValueError(f"pair ({pairs.a[bad]}, {pairs.b[bad]}) is out of range for {n} items")
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs.a, pairs.b)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    smallest = np.full(label.max() + 1 if n else 0, n, dtype=np.int64)
    np.minimum.at(smallest, label, np.arange(n))
    return smallest[label]


def _exact_pairs(sha256: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) of all pairs of items with the same digest: a dict, linear in n plus the pairs."""
    groups: dict[str, list[int]] = {}
    for i, digest in enumerate(sha256):
        if digest:
            groups.setdefault(digest, []).append(i)
    a, b = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for members in groups.values():
        if len(members) > 1:
            upper = np.triu_indices(len(members), 1)
            a.append(np.asarray(members)[upper[0]])
            b.append(np.asarray(members)[upper[1]])
    return np.concatenate(a), np.concatenate(b)


def _phash_codes(
    phashes: Sequence[int | None] | np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """(k, 8) uint8 codes for faiss of the items that have a phash, and those items' indices.

    Accepts unsigned 64-bit values as Python ints (None: no phash) or an integer array.
    """
    if not isinstance(phashes, np.ndarray):
        phashes = list(phashes)
    if len(phashes) != n or (isinstance(phashes, np.ndarray) and phashes.ndim != 1):
        raise ValueError(f"need one phash per item ({n}); got {len(phashes)}")
    if isinstance(phashes, np.ndarray):
        values, hashed = phashes, np.arange(n)
        if values.dtype.kind not in "iu" or (values.dtype.kind == "i" and n and values.min() < 0):
            raise ValueError("phashes must be unsigned 64-bit integers")
    else:
        hashed = np.array([i for i, h in enumerate(phashes) if h is not None], dtype=np.int64)
        ints = [int(phashes[i]) for i in hashed]
        if any(h < 0 or h >= 2**_HASH_BITS for h in ints):
            raise ValueError("phashes must be unsigned 64-bit integers")
        values = np.array(ints, dtype=np.uint64)
    codes = np.ascontiguousarray(values.astype(np.uint64, copy=False))
    return codes.view(np.uint8).reshape(len(codes), _HASH_BITS // 8), hashed


def _hash_pairs(
    codes: np.ndarray, max_distance: int, tables: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, Hamming distance) arrays of every pair within `max_distance`, exactly.

    `tables` forces an index (0: brute force, k: k hash tables); None picks the cheapest.
    """
    n = len(codes)
    if n < 2 or max_distance < 0:
        return _no_pairs()
    index = _hash_index(n, max_distance, tables)
    index.add(codes)
    # faiss binary range search keeps distances strictly below the radius.
    return _self_range_all(index, codes, max_distance + 1)


def _no_pairs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)


def _hash_index(n: int, max_distance: int, tables: int | None) -> faiss.IndexBinary:
    """Multi-index hashing, or brute force where that is cheaper (below ~10^5 codes).

    Split the 64 bits into k disjoint keys. Two codes within distance r differ in at most
    r // k bits of at least one key (pigeonhole), so probing each table with every key
    flipped in up to r // k bits finds all of them while touching only buckets near the
    query: sub-quadratic. A SIMD popcount is so cheap, though, that scanning all n codes
    wins until n is about 10^5.
    """
    if tables is None:
        tables = _cheapest_tables(n, max_distance)
    if tables == 0 or max_distance >= _HASH_BITS:
        return faiss.IndexBinaryFlat(_HASH_BITS)
    index = faiss.IndexBinaryMultiHash(_HASH_BITS, tables, _HASH_BITS // tables)
    index.nflip = max_distance // tables
    return index


def _cheapest_tables(n: int, max_distance: int) -> int:
    """Number of hash tables with the lowest estimated cost; 0 when brute force is cheapest.

    Cost model, in bucket probes: a probe and a candidate cost about the same, a brute-force
    popcount about 1/160 of that (measured with faiss on 50 000-200 000 random codes).
    """
    best, best_cost = 0, n / 160
    for tables in range(2, 9):
        bits, flips = _HASH_BITS // tables, max_distance // tables
        if flips > bits:
            continue
        probes = tables * sum(math.comb(bits, i) for i in range(flips + 1))
        cost = probes * (1 + n / 2**bits)
        if cost < best_cost:
            best, best_cost = tables, cost
    return best


def _checked_embeddings(embeddings: np.ndarray, n: int) -> np.ndarray:
    x = np.asarray(embeddings)
    if x.ndim != 2 or x.shape[0] != n:
        raise ValueError(f"embeddings must have shape ({n}, dim); got {x.shape}")
    return x


def _embedding_pairs(
    embeddings: np.ndarray, min_cosine: float, exact_limit: int = EXACT_SEARCH_LIMIT
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, cosine) arrays of the pairs of usable rows with cosine >= `min_cosine`.

    Up to `exact_limit` rows: exact inner-product range search. Above it, candidates come
    from an L2 range search in a PCA projection through an inverted file, then every
    candidate's cosine is recomputed in full dimension. An orthonormal projection never
    lengthens a difference, so for unit vectors |P(x - y)|^2 <= |x - y|^2 = 2 - 2 cos:
    the radius 2 - 2 min_cosine in the projection loses no pair, and only the IVF probing
    (a few cells of ~sqrt(n)) is approximate.
    """
    x = np.asarray(embeddings, dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        norms = np.linalg.norm(x, axis=1) if x.size else np.zeros(len(x), np.float32)
    usable = np.flatnonzero(np.isfinite(norms) & (norms > 0))
    if len(usable) < 2 or min_cosine > 1.0:
        return _no_pairs()
    unit = np.ascontiguousarray(x[usable] / norms[usable, None])
    a, b, cosine = (
        _exact_cosine_pairs(unit, min_cosine)
        if len(unit) <= exact_limit
        else _indexed_cosine_pairs(unit, min_cosine)
    )
    return usable[a], usable[b], np.minimum(cosine.astype(np.float64), 1.0)


def _exact_cosine_pairs(
    unit: np.ndarray, min_cosine: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    index = faiss.IndexFlatIP(unit.shape[1])
    index.add(unit)
    # faiss keeps inner products strictly above the radius: step just below the threshold.
    radius = float(np.nextafter(np.float32(min_cosine), np.float32(-np.inf)))
    a, b, cosine = _self_range_all(index, unit, radius)
    keep = cosine >= min_cosine
    return a[keep], b[keep], cosine[keep]


def _indexed_cosine_pairs(
    unit: np.ndarray, min_cosine: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    reduced = _pca(unit, _PCA_DIM)
    n, dim = reduced.shape
    nlist = max(1, int(math.sqrt(n)))
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, nlist, faiss.METRIC_L2)
    index.cp.seed = _SEED
    index.cp.max_points_per_centroid = 64  # k-means on a sample: coarse cells suffice
    index.train(reduced)
    index.add(reduced)
    index.nprobe = min(_IVF_PROBES, nlist)
    radius = 2.0 * (1.0 - min_cosine) * (1 + 1e-4) + 1e-6  # strict "<" in faiss; float slack
    rows, cols = _candidate_pairs(index, reduced, radius)
    cosines = _row_dots(unit, rows, cols)
    keep = cosines >= min_cosine
    return rows[keep], cols[keep], cosines[keep]


def _candidate_pairs(
    index: faiss.Index, queries: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Unique (a < b) pairs that an approximate self range search finds from either side.

    Probing is not symmetric: b may sit in a cell that a's query skips while b's query finds
    a. Keeping both directions misses a pair only when both queries miss it.
    """
    n = len(queries)
    keys = []
    for start in range(0, n, _QUERY_BATCH):
        lims, _, ids = index.range_search(queries[start : start + _QUERY_BATCH], radius)
        rows = np.repeat(np.arange(start, start + len(lims) - 1), np.diff(lims).astype(np.int64))
        keep = ids != rows
        a, b = np.minimum(rows[keep], ids[keep]), np.maximum(rows[keep], ids[keep])
        keys.append(a * n + b)
    unique = np.unique(np.concatenate(keys)) if keys else np.zeros(0, np.int64)
    return unique // n, unique % n


def _pca(unit: np.ndarray, dim: int) -> np.ndarray:
    """Rows projected on (approximately) the top `dim` principal axes of a sample.

    Randomized SVD (two power iterations) takes a fraction of a second where an exact
    eigendecomposition of the 1280 x 1280 covariance takes several; any orthonormal axes keep
    the search exact, better ones only make the candidate list shorter.
    """
    n, d = unit.shape
    if d <= dim:
        return unit
    rng = np.random.default_rng(_SEED)
    sample = unit[rng.choice(n, _PCA_SAMPLE, replace=False)] if n > _PCA_SAMPLE else unit
    centred = sample - sample.mean(axis=0)
    basis = centred @ rng.standard_normal((d, dim + 16), dtype=np.float32)
    for _ in range(2):
        basis = centred @ (centred.T @ np.linalg.qr(basis)[0])
    q = np.linalg.qr(basis)[0]
    axes = np.linalg.svd(q.T @ centred, full_matrices=False)[2][:dim]
    return np.ascontiguousarray(unit @ axes.T, dtype=np.float32)


def _row_dots(unit: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """unit[rows[k]] . unit[cols[k]] for every k, in chunks to bound the gathered copies."""
    out = np.empty(len(rows), dtype=np.float32)
    for s in range(0, len(rows), _DOT_CHUNK):
        r, c = rows[s : s + _DOT_CHUNK], cols[s : s + _DOT_CHUNK]
        out[s : s + len(r)] = np.einsum("ij,ij->i", unit[r], unit[c])
    return out


def _self_range_all(
    index: faiss.Index, queries: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, distance) arrays, a < b, of a self range search run in query batches."""
    starts = range(0, len(queries), _QUERY_BATCH)
    found = [_self_range(index, queries, start, radius) for start in starts]
    if not found:
        return _no_pairs()
    return tuple(np.concatenate([f[k] for f in found]) for k in range(3))  # type: ignore[return-value]


def _self_range(
    index: faiss.Index, queries: np.ndarray, start: int, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One batch of a self range search: rows, cols (each pair once, rows < cols), distances."""
    lims, dist, ids = index.range_search(queries[start : start + _QUERY_BATCH], radius)
    rows = np.repeat(np.arange(start, start + len(lims) - 1), np.diff(lims).astype(np.int64))
    keep = ids > rows
    return rows[keep], ids[keep], dist[keep]
