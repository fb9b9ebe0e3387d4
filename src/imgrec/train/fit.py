"""Two-phase transfer learning with checkpoints after every epoch, resumable after a crash."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from imgrec.data.cache import DecodedCache
from imgrec.data.dataset import Dataset, Skipped
from imgrec.data.transforms import Preprocessing, eval_transform
from imgrec.errors import ImgrecError
from imgrec.models.fast_features import onnx_feature_extractor
from imgrec.train.config import TrainConfig
from imgrec.train.head import extract_features, fit_head
from imgrec.train.state import RunState


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
    train_cache = DecodedCache([s.path for s in train.samples], preprocessing, progress=progress)
    val_cache = DecodedCache([s.path for s in val.samples], preprocessing, progress=progress)
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
    transform = eval_transform(job.preprocessing)
    engine = onnx_feature_extractor(model, job.preprocessing.input_size)

    def features(cache: DecodedCache, name: str) -> torch.Tensor:
        images = [cache[i] for i in cache.valid_indices]
        return extract_features(model, images, transform, 32, name, job.progress, engine)

    train_x = features(job.train_cache, "features (train)")
    val_x = features(job.val_cache, "features (val)")
    train_y = torch.tensor([job.train_targets[i] for i in job.train_cache.valid_indices])
    val_y = torch.tensor([job.val_targets[i] for i in job.val_cache.valid_indices])
    head = model.get_classifier()
    best = fit_head(head, train_x, train_y, val_x, val_y, job.state.append_history, job.started)
    job.state.save_best(model.state_dict(), best)
