"""What a fine-tuning epoch costs on this machine, measured before Lightning starts.

A couple of real training steps (the training transform, forward and backward on real batches,
early layers and BatchNorm frozen as in fine-tuning) and a validation forward pass: a few
seconds that let the plan (train/plan.py) decide on measurements rather than guesses. No
optimizer step is taken, so the weights stay exactly as they were.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from imgrec.models.anatomy import freeze_batchnorm_statistics, freeze_early_layers
from imgrec.runtime import device

# What the evaluation after training costs beyond its forward passes: building the ONNX
# graph the drift reference runs on, plots, report and card (13 s in all for the 68 held-out
# images of the bundled sample on 2 CPU cores, most of it not per image).
REPORT_SECONDS = 12.0


@dataclass(frozen=True)
class StepTimes:
    """Measured seconds per batch of `batch_size` images."""

    train_step: float  # training transform, forward and backward
    eval_batch: float  # evaluation transform and forward
    batch_size: int

    def epoch_seconds(self, n_train: int, n_val: int) -> float:
        """One fine-tuning epoch: every training batch, then the validation pass."""
        return self.train_step * math.ceil(n_train / self.batch_size) + self.eval_batch * (
            math.ceil(n_val / self.batch_size)
        )

    def eval_seconds(self, n_images: int) -> float:
        """Scoring `n_images` after training (0 for none), the report's writing included."""
        if n_images <= 0:
            return 0.0
        return self.eval_batch / self.batch_size * n_images + REPORT_SECONDS


Batches = Callable[[int], tuple[torch.Tensor, torch.Tensor]]


def measure_steps(
    model: nn.Module,
    train_batch: Batches,
    val_batch: Batches,
    batch_size: int,
    freeze_stride: int,
    label_smoothing: float = 0.0,
    steps: int = 2,
    dtype: torch.dtype | None = None,
) -> StepTimes:
    """Time `steps` training steps (after one untimed warm-up) and one validation batch.

    `train_batch(k)` / `val_batch(k)` give the k-th batch (images transformed as in training
    / validation, and their class indices). Layers up to stride `freeze_stride` are frozen and
    BatchNorm statistics stay fixed, as in fine-tuning; with `steps` 0 only validation is
    timed. The model leaves as it came: same weights, device, mode, requires_grad flags and
    gradients (no optimizer step is taken). `dtype` is the autocast dtype (None: float32).
    """
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    origin = params[0].device if params else torch.device("cpu")
    was_training = model.training
    target = device()
    cast = torch.autocast(target.type, dtype=dtype) if dtype is not None else nullcontext()
    try:
        model.to(target)
        freeze_early_layers(model, freeze_stride)

        def train_step(k: int) -> None:
            x, y = train_batch(k)
            model.train()
            freeze_batchnorm_statistics(model)  # as FineTuneModule trains
            with cast:
                logits = model(_on(x, target))
                loss = nn.functional.cross_entropy(
                    logits, y.to(target), label_smoothing=label_smoothing
                )
            loss.backward()
            for p in params:
                p.grad = None

        def eval_step(k: int) -> None:
            x, _ = val_batch(k)
            model.eval()
            with torch.no_grad(), cast:
                model(_on(x, target))

        train_seconds = _timed(train_step, steps, target) if steps > 0 else 0.0
        eval_seconds = _timed(eval_step, 1, target)
    finally:
        for p, flag, grad in zip(params, flags, grads, strict=True):
            p.requires_grad_(flag)
            p.grad = grad
        model.to(origin)
        model.train(was_training)
    return StepTimes(train_seconds, eval_seconds, batch_size)


def _on(x: torch.Tensor, target: torch.device) -> torch.Tensor:
    return x.to(target).contiguous(memory_format=torch.channels_last)


def _timed(step: Callable[[int], None], times: int, target: torch.device) -> float:
    """Mean seconds of `times` calls of `step(k)`, after one untimed warm-up call."""
    step(0)
    _sync(target)
    tic = time.perf_counter()
    for k in range(1, times + 1):
        step(k)
    _sync(target)
    return (time.perf_counter() - tic) / times


def _sync(target: torch.device) -> None:
    if target.type == "cuda":
        torch.cuda.synchronize(target)


def dataset_batches(data, batch_size: int) -> Batches:
    """The k-th batch of a (tensor, class index) dataset, wrapping round a small one."""

    def batch(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        size = min(batch_size, len(data))
        items = [data[(k * size + i) % len(data)] for i in range(size)]
        return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])

    return batch
