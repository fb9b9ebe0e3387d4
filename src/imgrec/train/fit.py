"""Two-phase transfer learning with checkpoints after every epoch, resumable after a crash."""

from __future__ import annotations

import logging
import math
import os
import signal
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from imgrec.data.cache import DecodedCache, ImageTensorDataset
from imgrec.data.dataset import Dataset, Skipped
from imgrec.data.transforms import Preprocessing, eval_transform, train_transform
from imgrec.errors import ImgrecError
from imgrec.models.fast_features import onnx_feature_extractor
from imgrec.models.registry import freeze_early_layers
from imgrec.train.callbacks import KeepBestAndHistory, RunState
from imgrec.train.config import TrainConfig
from imgrec.train.head import extract_features, fit_head
from imgrec.train.module import FineTuneModule


class TrainingInterrupted(ImgrecError):
    """Raised after Ctrl-C once finished epochs are safely on disk."""


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
    L.seed_everything(config.seed, workers=True, verbose=False)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no device banners/tips
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

    from_scratch = config.weights == "none"
    if state.best() is None and not from_scratch and config.head:
        _fit_head_phase(
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

    finetuned_epochs = sum(1 for row in state.history() if row["phase"] == "finetune")
    if config.epochs > finetuned_epochs:
        _fine_tune_phase(
            model,
            preprocessing,
            train_cache,
            val_cache,
            train_targets,
            val_targets,
            config,
            state,
            started,
            resume,
            from_scratch,
            progress,
        )

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


def _fit_head_phase(
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
) -> None:
    transform = eval_transform(preprocessing)
    engine = onnx_feature_extractor(model, preprocessing.input_size)
    train_idx, val_idx = train_cache.valid_indices, val_cache.valid_indices

    def features(cache, indices, name):
        images = [cache[i] for i in indices]
        return extract_features(model, images, transform, 32, name, progress, engine)

    train_x = features(train_cache, train_idx, "features (train)")
    val_x = features(val_cache, val_idx, "features (val)")
    train_y = torch.tensor([train_targets[i] for i in train_idx])
    val_y = torch.tensor([val_targets[i] for i in val_idx])
    head = model.get_classifier()
    best = fit_head(head, train_x, train_y, val_x, val_y, state.append_history, started)
    state.save_best(model.state_dict(), best)


def default_workers() -> int:
    """Loader worker processes: none on small machines, where the images are already decoded
    and a worker only competes with the training threads for the cores (measured 2x slower
    with one worker on 2 cores)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return 0 if (cores or 1) <= 4 else min(4, cores // 4)


def _fine_tune_phase(
    model,
    preprocessing,
    train_cache,
    val_cache,
    train_targets,
    val_targets,
    config,
    state,
    started,
    resume,
    from_scratch,
    progress,
) -> None:
    best = state.best()
    if best is not None:
        model.load_state_dict(load_file(state.best_weights))
    workers = config.workers if config.workers is not None else default_workers()
    loader_args = {"num_workers": workers, "persistent_workers": workers > 0}
    train_data = ImageTensorDataset(
        train_cache, train_targets, train_transform(preprocessing, config.augment)
    )
    val_data = ImageTensorDataset(val_cache, val_targets, eval_transform(preprocessing))
    generator = torch.Generator().manual_seed(config.seed)
    train_loader = DataLoader(
        train_data, batch_size=config.batch_size, shuffle=True, generator=generator, **loader_args
    )
    val_loader = DataLoader(val_data, batch_size=config.batch_size, **loader_args)

    if not from_scratch:
        freeze_early_layers(model, config.freeze_stride)
    if from_scratch:
        config = TrainConfig.from_dict({**config.to_dict(), "backbone_lr_mult": 1.0})
    total_steps = config.epochs * math.ceil(len(train_data) / config.batch_size)
    module = FineTuneModule(model, config, total_steps, freeze_bn=not from_scratch)
    last = state.folder / "last.ckpt"
    callbacks = [
        KeepBestAndHistory(state, started),
        EarlyStopping(monitor="val_score", mode="max", patience=config.patience),
        ModelCheckpoint(
            dirpath=state.folder,
            filename="last",
            monitor=None,
            save_top_k=1,
            enable_version_counter=False,
        ),
    ]
    if progress:
        callbacks.append(RichProgressBar())
    cuda = torch.cuda.is_available()
    trainer = L.Trainer(
        max_epochs=config.epochs,
        accelerator="gpu" if cuda else "cpu",
        devices=1,
        precision="bf16-mixed"
        if cuda and torch.cuda.is_bf16_supported()
        else ("16-mixed" if cuda else "32-true"),
        logger=False,
        callbacks=callbacks,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=state.folder,
        deterministic=False,
    )
    ckpt = last if resume and last.exists() else None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            warnings.filterwarnings("ignore", ".*The number of training batches.*")
            warnings.filterwarnings("ignore", ".*module\\(s\\) in eval mode.*")  # frozen BN
            warnings.filterwarnings("ignore", ".*exists and is not empty.*")  # resume folder
            warnings.filterwarnings("ignore", ".*LeafSpec.*")
            trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt, weights_only=True)
    except SystemExit as stop:
        if trainer.interrupted:
            raise TrainingInterrupted(
                f"training interrupted; finished epochs are saved in {state.folder}."
            ) from stop
        raise
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
