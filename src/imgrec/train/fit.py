"""Two-phase transfer learning with checkpoints after every epoch, resumable after a crash."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from imgrec.config import TrainConfig
from imgrec.data.cache import DecodedCache
from imgrec.data.dataset import Dataset, Skipped
from imgrec.data.preprocess import Preprocessing
from imgrec.errors import ImgrecError
from imgrec.models.families import get_family
from imgrec.models.mlp_head import MLPHead
from imgrec.runtime import torch_threads
from imgrec.train.features import backbone_features, job_features
from imgrec.train.head import class_weights, fit_head, fit_mlp_head
from imgrec.train.job import Fitting
from imgrec.train.state import RunState

log = logging.getLogger(__name__)


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
    on_epoch: Callable[[dict], None] | None = None,
) -> FitOutcome:
    """Train `model` in place and leave the best validation weights loaded in it.

    Everything needed to continue lives in `work_dir`: the best weights so far, history.csv and
    Lightning's last.ckpt. With `resume`, finished phases and epochs are not repeated.
    """
    torch.manual_seed(config.seed)
    state = RunState(work_dir, on_epoch)
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
    if get_family(config.model).traits.sklearn:
        if state.best() is None:
            from imgrec.train.classic import fit_classic  # loads scikit-learn

            fit_classic(job)
        return _outcome(model, state, skipped)
    from_scratch = config.weights == "none"
    if state.best() is None and not from_scratch and config.head:
        _fit_head_phase(job)

    finetuned_epochs = sum(1 for row in state.history() if row["phase"] == "finetune")
    if config.epochs > finetuned_epochs:
        from imgrec.train.finetune import fine_tune  # loads Lightning

        fine_tune(job, resume, from_scratch)

    return _outcome(model, state, skipped)


def _outcome(model: torch.nn.Module, state: RunState, skipped: list[Skipped]) -> FitOutcome:
    """Load the best weights so far into `model` and describe the run."""
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
    train_x, train_y, val_x, val_y = job_features(
        job,
        backbone_features(
            model, job.config.model, job.config.weights, job.preprocessing, job.progress
        ),
    )
    head = model.get_classifier()
    # both balance modes weight the head fit: a full-batch fit has no sampling to balance
    weight = class_weights(train_y, head.out_features) if job.config.balance != "none" else None
    if isinstance(head, MLPHead):
        with torch_threads(1):  # small tensors: threads only wait on each other
            best = fit_mlp_head(
                head,
                train_x,
                train_y,
                val_x,
                val_y,
                job.config,
                job.state.append_history,
                job.started,
                weight,
            )
    else:
        best = fit_head(
            head, train_x, train_y, val_x, val_y, job.state.append_history, job.started, weight
        )
    job.state.save_best(model.state_dict(), best)
