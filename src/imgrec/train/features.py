"""Fixed features of decoded images (frozen-backbone embeddings, HOG), reused across runs.

Rows are looked up in the EmbeddingStore by file SHA-256 and a key naming the extractor;
only missing rows are computed from the cached pixels, and written back. A second run on the
same photos, a run after `imgrec audit`, or the next family on a leaderboard then skips the
extraction. Any problem with the store means computing everything, never a failed run.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import torch
from rich.progress import Progress

from imgrec.data.cache import DecodedCache
from imgrec.data.embedding_store import EmbeddingStore
from imgrec.data.preprocess import Preprocessing
from imgrec.data.transforms import eval_transform
from imgrec.infer.embed import embedding_key, hash_files
from imgrec.models.anatomy import num_features
from imgrec.models.fast_features import onnx_feature_extractor
from imgrec.models.registry import get_spec
from imgrec.runtime import torch_threads
from imgrec.train.distributed import SINGLE, World, broadcast, gather_rows, share
from imgrec.train.head import extract_features

log = logging.getLogger(__name__)

Compute = Callable[[DecodedCache, list[int], str], torch.Tensor]


class StoredFeatures:
    """`features(cache, name)` -> (valid images, width) tensor, store first, compute the rest.

    `shared_by(world)` splits the computing among the processes of a multi-process run:
    rank 0 looks up the store and says which rows are missing, each process computes its
    share of them, and rank 0 gathers and stores them; the others get an empty tensor.
    """

    def __init__(self, key: str | None, width: int, compute: Compute) -> None:
        self.width = width
        self.compute = compute
        self.key = key or ""
        self.store = _open_store() if key else None
        self.world = SINGLE

    def shared_by(self, world: World) -> StoredFeatures:
        self.world = world
        if not world.is_main and self.store is not None:
            self.store.close()  # one writer: rank 0
            self.store = None
        return self

    def __enter__(self) -> StoredFeatures:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.store is not None:
            self.store.close()

    def __call__(self, cache: DecodedCache, name: str) -> torch.Tensor:
        indices = cache.valid_indices
        world = self.world
        found, hashes = self._lookup(cache, indices) if world.is_main else ({}, [])
        missing = broadcast(world, [j for j, h in enumerate(hashes) if h not in found])
        todo = [indices[j] for j in missing]
        mine = share(world, todo)  # may be empty: every image stored, or fewer than ranks
        rows = self.compute(cache, mine, name) if mine else torch.empty(0, self.width)
        new = gather_rows(world, rows, len(todo))
        if new is None:  # not rank 0: its share is with rank 0 now
            return torch.empty(0, self.width)
        out = torch.empty(len(indices), self.width)
        for j, h in enumerate(hashes):
            if h in found:
                out[j] = torch.from_numpy(found[h])
        if missing:
            out[missing] = new
            if self.store is not None:
                rows = {hashes[j]: new[k].numpy() for k, j in enumerate(missing) if hashes[j]}
                self.store.put_many(self.key, rows)
        return out

    def _lookup(self, cache: DecodedCache, indices: list[int]) -> tuple[dict, list[str | None]]:
        """(rows the store holds by file hash, each image's hash); without a store, nothing
        is found and every hash is None."""
        if self.store is None:
            return {}, [None] * len(indices)
        facts = [cache.facts[i] for i in indices]  # hashed already when decoded with facts
        hashes = (
            [f.sha256 for f in facts]
            if all(facts)
            else hash_files([cache.paths[i] for i in indices])
        )
        found = self.store.get_many(self.key, [h for h in hashes if h])
        return {h: v for h, v in found.items() if v.shape == (self.width,)}, hashes


def _open_store() -> EmbeddingStore | None:
    try:
        store = EmbeddingStore()
    except Exception as exc:  # noqa: BLE001 - a cache problem must never cost the run
        log.warning("not caching features (%s); computing them all.", exc)
        return None
    return store if store.available else None


def backbone_features(
    model: torch.nn.Module,
    model_name: str,
    weights: str,
    preprocessing: Preprocessing,
    progress: bool,
) -> StoredFeatures:
    """Frozen-backbone embeddings of `model` (ONNX Runtime where it exports, else PyTorch).

    They are stored only for pretrained weights (a random backbone's features are not
    reproducible); the key is the one the audit uses, so either fills the cache for the other.
    """
    transform = eval_transform(preprocessing)
    engine: list = []  # exported on first need (~1 s): fully cached lookups skip it

    def compute(cache: DecodedCache, indices: list[int], name: str) -> torch.Tensor:
        if not engine:
            engine.append(onnx_feature_extractor(model, preprocessing.input_size))
        images = [cache[i] for i in indices]
        return extract_features(model, images, transform, 32, name, progress, engine[0])

    key = None
    if weights == "imagenet":
        try:
            p = preprocessing
            spec = dataclasses.replace(
                _backbone_spec(model_name),
                input_size=p.input_size,
                mean=tuple(p.mean),
                std=tuple(p.std),
                resize_size=p.resize_size,
            )
            key = embedding_key(spec, weights)
        except Exception as exc:  # noqa: BLE001 - an unkeyable model is computed, not stored
            log.warning("not caching features (%s); computing them all.", exc)
    return StoredFeatures(key, num_features(model), compute)


def _backbone_spec(model_name: str):
    """The spec whose embeddings a model's features are: the backbone behind a family name."""
    from imgrec.models.families import EMBED_BACKBONE, get_family

    family = get_family(model_name)
    return get_spec(EMBED_BACKBONE if family.features == "embed" else model_name)


def module_features(
    extractor: torch.nn.Module,
    key: str | None,
    width: int,
    preprocessing: Preprocessing,
    progress: bool,
    batch_size: int = 64,
) -> StoredFeatures:
    """Features from any image -> vector module (e.g. HOG) over the eval-transformed pixels."""
    transform = eval_transform(preprocessing)

    @torch.inference_mode()
    def compute(cache: DecodedCache, indices: list[int], name: str) -> torch.Tensor:
        with torch_threads(1):  # per-image crops and casts: threads only wait on each other
            return _extract(cache, indices, name)

    def _extract(cache: DecodedCache, indices: list[int], name: str) -> torch.Tensor:
        chunks = []
        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task(name, total=len(indices))
            for start in range(0, len(indices), batch_size):
                part = indices[start : start + batch_size]
                chunks.append(extractor(torch.stack([transform(cache[i]) for i in part])))
                bar.advance(task, len(part))
        return torch.cat(chunks)

    return StoredFeatures(key, width, compute)


def job_features(
    job, features: StoredFeatures
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train_x, train_y, val_x, val_y) of a job's readable images."""
    with features:
        train_x = features(job.train_cache, "features (train)")
        val_x = features(job.val_cache, "features (val)")
    train_y = torch.tensor([job.train_targets[i] for i in job.train_cache.valid_indices])
    val_y = torch.tensor([job.val_targets[i] for i in job.val_cache.valid_indices])
    return train_x, train_y, val_x, val_y
