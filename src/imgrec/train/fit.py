"""Two-phase transfer learning with checkpoints after every epoch, resumable after a crash."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from imgrec.data.cache import DecodedCache
from imgrec.data.dataset import Dataset, Skipped
from imgrec.data.embedding_store import EmbeddingStore
from imgrec.data.transforms import Preprocessing, eval_transform
from imgrec.errors import ImgrecError
from imgrec.models.embed import embedding_key, hash_files
from imgrec.models.fast_features import onnx_feature_extractor
from imgrec.models.registry import get_spec, num_features
from imgrec.train.config import TrainConfig
from imgrec.train.head import class_weights, extract_features, fit_head
from imgrec.train.state import RunState

log = logging.getLogger(__name__)


@dataclass
class Fitting:
    """What both training phases work on, prepared once by `fit_model`."""

    model: torch.nn.Module
    preprocessing: Preprocessing
    train_cache: DecodedCache
    val_cache: DecodedCache
    train_targets: list[int]
    val_targets: list[int]
    config: TrainConfig
    state: RunState
    started: float
    progress: bool


@dataclass
class FitOutcome:
    history: list[dict]
    best: dict
    skipped: list[Skipped] = field(default_factory=list)


def fit_model(
    model: torch.nn.Module,
    preprocessing: Preprocessing,
    train: Dataset,
    val: Dataset,
    config: TrainConfig,
    work_dir: Path,
    resume: bool = False,
    progress: bool = True,
    decoded: DecodedCache | None = None,
) -> FitOutcome:
    """Train `model` in place and leave the best validation weights loaded in it.

    Everything needed to continue lives in `work_dir`: the best weights so far, history.csv and
    Lightning's last.ckpt. With `resume`, finished phases and epochs are not repeated.
    """
    torch.manual_seed(config.seed)
    state = RunState(work_dir)
    if not resume:
        for stale in (
            state.history_path,
            state.best_info,
            state.best_weights,
            work_dir / "last.ckpt",
        ):
            stale.unlink(missing_ok=True)
    else:
        _forget_unfinished(state)
    history = state.history()
    started = time.perf_counter() - (history[-1]["seconds"] if history else 0.0)

    train_targets = train.targets()
    val_targets = val.targets()
    if decoded is not None:  # the caller decoded everything already (the workflow does)
        train_cache, val_cache = decoded.subset(train.paths), decoded.subset(val.paths)
    else:
        train_cache = DecodedCache(train.paths, preprocessing, progress=progress)
        val_cache = DecodedCache(val.paths, preprocessing, progress=progress)
    skipped = train_cache.build() + val_cache.build()
    if not train_cache.valid_indices or not val_cache.valid_indices:
        raise ImgrecError("no readable images left in the training or validation split.")

    job = Fitting(
        model,
        preprocessing,
        train_cache,
        val_cache,
        train_targets,
        val_targets,
        config,
        state,
        started,
        progress,
    )
    from_scratch = config.weights == "none"
    if state.best() is None and not from_scratch and config.head:
        _fit_head_phase(job)

    finetuned_epochs = sum(1 for row in state.history() if row["phase"] == "finetune")
    if config.epochs > finetuned_epochs:
        from imgrec.train.finetune import fine_tune  # loads Lightning

        fine_tune(job, resume, from_scratch)

    best = state.best()
    if best is None:
        raise ImgrecError("training produced no validated epoch; check the data and settings.")
    model.load_state_dict(load_file(state.best_weights))
    return FitOutcome(history=state.history(), best=best, skipped=skipped)


def _forget_unfinished(state: RunState) -> None:
    """Drop history rows that the checkpoints do not back, before resuming.

    A row is written just before Lightning saves last.ckpt, so a kill in between would
    otherwise repeat that epoch in the history; an unfinished head phase is redone whole.
    """
    last = state.folder / "last.ckpt"
    done = (
        torch.load(last, map_location="cpu", weights_only=True)["epoch"] + 1 if last.exists() else 0
    )
    head_done = state.best() is not None
    state.keep_history(
        lambda row: row["epoch"] <= done if row["phase"] == "finetune" else head_done
    )


def _fit_head_phase(job: Fitting) -> None:
    model = job.model
    model.eval()  # as extract_features always left it, even when every feature is cached
    with _Phase1Features(job) as features:
        train_x = features(job.train_cache, "features (train)")
        val_x = features(job.val_cache, "features (val)")
    train_y = torch.tensor([job.train_targets[i] for i in job.train_cache.valid_indices])
    val_y = torch.tensor([job.val_targets[i] for i in job.val_cache.valid_indices])
    head = model.get_classifier()
    # both balance modes weight the head fit: a full-batch fit has no sampling to balance
    weight = class_weights(train_y, head.out_features) if job.config.balance != "none" else None
    best = fit_head(
        head, train_x, train_y, val_x, val_y, job.state.append_history, job.started, weight
    )
    job.state.save_best(model.state_dict(), best)


class _Phase1Features:
    """Frozen-backbone features of a decoded cache for the head fit, reusing the EmbeddingStore.

    Rows are looked up by file SHA-256 (hashing 400 photos takes ~0.05 s); only the missing ones
    are computed from the cached pixels, as before, and written back, so a second run on the
    same photos, or a run after `imgrec audit`, skips the backbone. The ONNX export (~1 s) happens
    only when something is missing. Any problem with the store means computing everything.
    """

    def __init__(self, job: Fitting) -> None:
        self.job = job
        self.transform = eval_transform(job.preprocessing)
        self.width = num_features(job.model)
        self.store, self.key = _open_feature_store(job)
        self._engine: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._engine_made = False

    def __enter__(self) -> _Phase1Features:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.store is not None:
            self.store.close()

    def __call__(self, cache: DecodedCache, name: str) -> torch.Tensor:
        indices = cache.valid_indices
        if self.store is None:
            return self._compute(cache, indices, name)
        facts = [cache.facts[i] for i in indices]  # hashed already when decoded with facts
        hashes = (
            [f.sha256 for f in facts]
            if all(facts)
            else hash_files([cache.paths[i] for i in indices])
        )
        found = self.store.get_many(self.key, [h for h in hashes if h])
        found = {h: v for h, v in found.items() if v.shape == (self.width,)}
        missing = [j for j, h in enumerate(hashes) if h not in found]
        out = torch.empty(len(indices), self.width)
        for j, h in enumerate(hashes):
            if h in found:
                out[j] = torch.from_numpy(found[h])
        if missing:
            new = self._compute(cache, [indices[j] for j in missing], name)
            out[missing] = new
            rows = {hashes[j]: new[k].numpy() for k, j in enumerate(missing) if hashes[j]}
            self.store.put_many(self.key, rows)
        return out

    def _compute(self, cache: DecodedCache, indices: list[int], name: str) -> torch.Tensor:
        if not self._engine_made:
            self._engine = onnx_feature_extractor(self.job.model, self.job.preprocessing.input_size)
            self._engine_made = True
        images = [cache[i] for i in indices]
        return extract_features(
            self.job.model, images, self.transform, 32, name, self.job.progress, self._engine
        )


def _open_feature_store(job: Fitting) -> tuple[EmbeddingStore | None, str]:
    """The store and key for this job's backbone + preprocessing, or (None, "") if unusable."""
    p = job.preprocessing
    try:
        spec = dataclasses.replace(
            get_spec(job.config.model),
            input_size=p.input_size,
            mean=tuple(p.mean),
            std=tuple(p.std),
            resize_size=p.resize_size,
        )
        key = embedding_key(spec, job.config.weights)
        store = EmbeddingStore()
    except Exception as exc:  # noqa: BLE001 - a cache problem must never cost the run
        log.warning("not caching phase-1 features (%s); computing them all.", exc)
        return None, ""
    if not store.available:
        return None, ""
    return store, key
