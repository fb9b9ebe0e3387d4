"""What both training phases work on: prepared once by `fit_model`, read by the head fit,
the classic learners and fine-tuning (its own module so they need not import fit)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from imgrec.config import TrainConfig
from imgrec.data.cache import DecodedCache
from imgrec.data.preprocess import Preprocessing
from imgrec.train.distributed import SINGLE, World
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
    # when fine-tuning must end (a time.perf_counter() value; None: no time limit)
    finetune_until: float | None = None
    # stop fine-tuning at the first epoch that does not beat the best so far, head included
    stop_unless_better: bool = False
    # this process's place in a multi-process run (train/distributed.py)
    world: World = SINGLE
