"""Backbone embeddings of image files, streamed chunk by chunk and cached in an EmbeddingStore.

The audit (label errors, outliers, near-duplicates) and training's phase 1 both need the frozen
backbone's pooled features of every image. They compute them the same way — decode with
`open_image`, short-side resize for the cache, centre crop + normalise, then the pretrained
backbone — so a vector stored by one is valid for the other, and a second audit or a training
run after an audit embeds only the files that are new or changed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np
import timm
import torch
from rich.progress import Progress

from imgrec.data.cache import decode_batch_for_inference
from imgrec.data.dataset import Skipped
from imgrec.data.embedding_store import EmbeddingStore, file_sha256
from imgrec.data.preprocess import Preprocessing
from imgrec.errors import ImgrecError
from imgrec.models import efficientnet_lite
from imgrec.models.anatomy import forward_features, num_features
from imgrec.models.fast_features import onnx_feature_extractor
from imgrec.models.registry import ModelSpec, create_model

log = logging.getLogger(__name__)

# Bump when decoding or resizing changes what pixels a file yields (open_image, resize_for_cache):
# every stored vector then becomes unreachable instead of silently wrong.
PIPELINE_VERSION = 1

Engine = Callable[[torch.Tensor], torch.Tensor]
Decoded = tuple[torch.Tensor, list[int], list[Skipped]]


def preprocessing_of(spec: ModelSpec) -> Preprocessing:
    """The preprocessing a spec's weights expect, as training builds it."""
    return Preprocessing(spec.input_size, tuple(spec.mean), tuple(spec.std), spec.resize_size)


def embedding_key(spec: ModelSpec, weights: str = "imagenet") -> str:
    """A store key naming everything that shapes a vector: model, weights (and the package that
    supplies them), input and resize size, mean and std. Any change gives a new key.

    Only pretrained weights have stable embeddings; a randomly initialised backbone has none.
    """
    if weights != "imagenet":
        raise ImgrecError(
            f"embeddings of '{weights}' weights are not reproducible; cannot key them."
        )
    mean = ",".join(repr(float(v)) for v in spec.mean)
    std = ",".join(repr(float(v)) for v in spec.std)
    return (
        f"imgrec-embed-v{PIPELINE_VERSION}|model={spec.name}|timm={spec.timm_name}"
        f"|weights={weights}@{_weights_source(spec)}|input={spec.input_size}"
        f"|resize={spec.resize_size}|mean={mean}|std={std}"
    )


def _weights_source(spec: ModelSpec) -> str:
    """Who supplies the weights, with its version: a new release may ship other weights."""
    return "+".join(_package_version(spec, name) for name in spec.timm_name.split("+"))


def _package_version(spec: ModelSpec, timm_name: str) -> str:
    """One backbone's weights package and version (an ensemble names each member's)."""
    offline = efficientnet_lite.PACKAGES.get(timm_name) if spec.offline_weights else None
    package = offline or "timm"
    try:
        version = metadata.version(package)
    except metadata.PackageNotFoundError:
        version = timm.__version__ if package == "timm" else "unknown"
    return f"{package}=={version}"


@lru_cache(maxsize=16)
def feature_width(spec: ModelSpec) -> int:
    """Width F of the spec's features, from the architecture alone: built on the meta device,
    it costs no memory and no weights (~0.1 s), so fully cached lookups need no backbone."""
    with torch.device("meta"):
        model = timm.create_model(spec.timm_name, pretrained=False, num_classes=2)
    return num_features(model)


def hash_files(paths: Sequence[Path], workers: int | None = None) -> list[str | None]:
    """SHA-256 of each file (None where it cannot be read), in threads: hashlib releases the GIL."""
    paths = [Path(p) for p in paths]
    if not paths:
        return []

    def one(path: Path) -> str | None:
        try:
            return file_sha256(path)
        except OSError:
            return None

    with ThreadPoolExecutor(max_workers=min(8, workers or os.cpu_count() or 1)) as pool:
        return list(pool.map(one, paths))


def embed_files(
    paths: Sequence[Path],
    sha256s: Sequence[str] | None,
    spec: ModelSpec,
    store: EmbeddingStore | None,
    *,
    batch_size: int = 64,
    progress: bool = False,
    model: torch.nn.Module | None = None,
    decode: Callable[[list[Path], Preprocessing], Decoded] | None = None,
) -> tuple[np.ndarray, list[Skipped]]:
    """Pooled backbone features (N, F) float32 of `paths`, in order; rows of unreadable files
    are NaN and those files are returned as Skipped.

    Vectors already in `store` (looked up by `sha256s`, computed when None) are reused; only the
    rest is decoded and embedded, `batch_size` files at a time so memory stays flat for any N,
    and each chunk is stored as soon as it is done (an interrupted run keeps its work). Files
    with identical bytes are embedded once. `model`, if given, must be the spec's backbone with
    its ImageNet weights (its head is ignored): it saves building one. `decode` turns paths
    into an eval-transformed batch (default: decoding the files; a ShardSet's batch_decoder
    reads them from shards).
    """
    paths = [Path(p) for p in paths]
    hashes = list(sha256s) if sha256s is not None else hash_files(paths)
    if len(hashes) != len(paths):
        raise ValueError(f"got {len(hashes)} hashes for {len(paths)} paths")
    key = embedding_key(spec) if store is not None else ""
    known = [h for h in hashes if h]
    found = store.get_many(key, known) if store is not None and known else {}
    width = num_features(model) if model is not None else feature_width(spec)
    found = {h: v for h, v in found.items() if len(v) == width}  # a stale width: recompute
    out = np.full((len(paths), width), np.nan, dtype=np.float32)
    groups = _missing_groups(hashes, found, out)
    if not groups:
        return out, []  # everything cached: no backbone needed
    extractor = _Extractor(spec, model)
    skipped = _embed_missing(
        paths, hashes, groups, extractor, store, key, (batch_size, decode), progress, out
    )
    return out, skipped


def _missing_groups(
    hashes: Sequence[str | None], found: dict[str, np.ndarray], out: np.ndarray
) -> dict[int, list[int]]:
    """Fill `out` with the cached rows; return {file to embed: every row that shares its bytes}."""
    groups: dict[int, list[int]] = {}
    first: dict[str, int] = {}
    for i, h in enumerate(hashes):
        if h and h in found:
            out[i] = found[h]
        elif h and h in first:
            groups[first[h]].append(i)
        else:
            groups[i] = [i]
            if h:
                first[h] = i
    return groups


def _embed_missing(
    paths: list[Path],
    hashes: Sequence[str | None],
    groups: dict[int, list[int]],
    extractor: _Extractor,
    store: EmbeddingStore | None,
    key: str,
    batching: tuple[int, Callable[[list[Path], Preprocessing], Decoded] | None],
    progress: bool,
    out: np.ndarray,
) -> list[Skipped]:
    """Decode + embed the files in `groups` chunk by chunk into `out`, storing each chunk."""
    batch_size, decode = batching
    todo = list(groups)
    chunks = [todo[s : s + max(1, batch_size)] for s in range(0, len(todo), max(1, batch_size))]
    failed: dict[int, str] = {}
    with _progress_bar(progress, len(todo)) as advance:
        prefetched = _prefetched(paths, chunks, extractor.preprocessing, decode)
        for chunk, (batch, ok, bad) in prefetched:
            features = extractor(batch) if ok else np.zeros((0, extractor.width), np.float32)
            new: dict[str, np.ndarray] = {}
            for row, j in zip(features, ok, strict=True):
                for i in groups[chunk[j]]:
                    out[i] = row
                if hashes[chunk[j]]:
                    new[hashes[chunk[j]]] = row
            unreadable = sorted(set(range(len(chunk))) - set(ok))  # `bad` is in this order
            for j, s in zip(unreadable, bad, strict=True):
                for i in groups[chunk[j]]:
                    failed[i] = s.reason
            if store is not None:
                store.put_many(key, new)
            advance(len(chunk))
    return [Skipped(paths[i], failed[i]) for i in sorted(failed)]


def _prefetched(
    paths: list[Path],
    chunks: list[list[int]],
    p: Preprocessing,
    decoder: Callable[[list[Path], Preprocessing], Decoded] | None = None,
) -> Iterator[tuple[list[int], Decoded]]:
    """Yield each chunk with its decoded batch, decoding the next one while this one is embedded;
    at most two chunks of pixels are alive at a time."""
    if not chunks:
        return

    def decode(chunk: list[int]) -> Decoded:
        files = [paths[i] for i in chunk]
        return decoder(files, p) if decoder is not None else decode_batch_for_inference(files, p)

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: Future[Decoded] = pool.submit(decode, chunks[0])
        for n, chunk in enumerate(chunks):
            decoded = pending.result()
            if n + 1 < len(chunks):
                pending = pool.submit(decode, chunks[n + 1])
            yield chunk, decoded
            del decoded


class _Extractor:
    """The backbone as a function images -> features: ONNX Runtime when it exports (phase 1's
    engine), else PyTorch's forward_features in eval mode on the model's device."""

    def __init__(self, spec: ModelSpec, model: torch.nn.Module | None) -> None:
        self.preprocessing = preprocessing_of(spec)
        self.model = model if model is not None else create_model(spec, 2, "imagenet")
        self.width = num_features(self.model)
        self._engine: Engine | None = None
        self._made = False

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        if not self._made:  # exporting costs ~1 s: only when something is to be embedded
            self._engine = onnx_feature_extractor(self.model, self.preprocessing.input_size)
            self._made = True
        if self._engine is not None:
            return self._engine(images).float().numpy()
        was_training = self.model.training
        self.model.eval()
        try:
            device = next(self.model.parameters()).device
            x = images.to(device).contiguous(memory_format=torch.channels_last)
            return forward_features(self.model, x).float().cpu().numpy()
        finally:
            self.model.train(was_training)


@contextmanager
def _progress_bar(enabled: bool, total: int) -> Iterator[Callable[[int], None]]:
    if not enabled or total == 0:
        yield lambda n: None
        return
    with Progress(transient=True) as bar:
        task = bar.add_task("Embedding images", total=total)
        yield lambda n: bar.advance(task, n)
