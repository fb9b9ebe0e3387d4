"""Phase 2 of transfer learning as a LightningModule: the whole network, discriminative LRs."""

from __future__ import annotations

import functools
from collections.abc import Callable

import lightning as L
import torch
from torch import nn

from imgrec.config import TrainConfig
from imgrec.data.transforms import batch_mix
from imgrec.models.anatomy import (
    backbone_parameters,
    freeze_batchnorm_statistics,
    head_parameters,
)
from imgrec.train.head import make_optimizer, score, warmup_cosine


class FineTuneModule(L.LightningModule):
    """Fine-tunes a timm classifier; BatchNorm statistics stay frozen.

    Small datasets give noisy batch statistics, and the ImageNet running stats are a better
    estimate than a few hundred photos can give (the Keras and timm fine-tuning advice).
    With `config.mix`, training batches are mixed (MixUp / CutMix) into soft targets; the
    training loss takes probabilities, with label smoothing and `class_weight` still applied.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        total_steps: int,
        freeze_bn: bool,
        class_weight: torch.Tensor | None = None,
        time_used: Callable[[], float] | None = None,
    ):
        super().__init__()
        self.time_used = time_used  # fraction of the time limit spent, for the LR schedule
        self.clock_origin: float | None = None  # time_used() at the first step of this phase
        self.model = model
        self.config = config
        self.total_steps = total_steps
        self.freeze_bn = freeze_bn
        self.mix = batch_mix(config.mix, model.get_classifier().out_features, config.mix_alpha)
        # Not persistent: the weights follow from config + data, so checkpoints stay the same
        # with or without balancing and a resumed run recomputes them.
        self.register_buffer("class_weight", class_weight, persistent=False)
        self.batches_seen = 0  # by this process: under DDP each runs its share of an epoch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last))

    def train(self, mode: bool = True) -> FineTuneModule:
        super().train(mode)
        if mode and self.freeze_bn:
            freeze_batchnorm_statistics(self.model)
        return self

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.batches_seen += 1
        target = y
        if self.mix is not None:
            x, target = self.mix(x, y)
        logits = self(x)
        loss = nn.functional.cross_entropy(
            logits, target, weight=self.class_weight, label_smoothing=self.config.label_smoothing
        )
        # a mixed image counts as its dominant class
        hard = target.argmax(1) if target.ndim == 2 else target
        acc = (logits.argmax(1) == hard).float().mean()
        # epoch figures are reduced over the processes of a DDP run (a no-op in one process)
        log = functools.partial(
            self.log, prog_bar=True, on_epoch=True, batch_size=len(y), sync_dist=True
        )
        log("train_loss", loss, on_step=True)
        log("train_acc", acc, on_step=False)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y)
        acc = (logits.argmax(1) == y).float().mean()
        self.log("val_loss", loss, prog_bar=True, on_epoch=True, batch_size=len(y), sync_dist=True)
        self.log("val_acc", acc, prog_bar=True, on_epoch=True, batch_size=len(y), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        metrics = self.trainer.callback_metrics
        if "val_acc" in metrics and "val_loss" in metrics:
            value = score(float(metrics["val_acc"]), float(metrics["val_loss"]))
            self.log("val_score", value, sync_dist=True)

    def schedule_clock(self) -> float:
        """The fraction of the time that was left at this phase's first step now spent: phase
        1 may have used part of the limit, and the schedule spreads over what it left."""
        used = self.time_used()
        if self.clock_origin is None:
            self.clock_origin = used
        return (used - self.clock_origin) / max(1e-9, 1.0 - self.clock_origin)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["imgrec_clock_origin"] = self.clock_origin

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # restored before configure_optimizers: a resumed run keeps its schedule's clock
        self.clock_origin = checkpoint.get("imgrec_clock_origin")

    def configure_optimizers(self):
        c = self.config
        backbone = [p for p in backbone_parameters(self.model) if p.requires_grad]
        groups = [{"params": head_parameters(self.model), "lr": c.lr}]
        if backbone and c.backbone_lr_mult > 0:
            groups.append({"params": backbone, "lr": c.lr * c.backbone_lr_mult})
        optimizer = make_optimizer(c.optimizer, groups, c.lr, c.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            warmup_cosine(
                self.total_steps,
                c.warmup_fraction,
                self.schedule_clock if self.time_used is not None else None,
            ),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
