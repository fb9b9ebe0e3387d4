"""Phase 2 of transfer learning as a LightningModule: the whole network, discriminative LRs."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from imgrec.models.registry import backbone_parameters, head_parameters
from imgrec.train.config import TrainConfig
from imgrec.train.head import make_optimizer, score, warmup_cosine


class FineTuneModule(L.LightningModule):
    """Fine-tunes a timm classifier; BatchNorm statistics stay frozen.

    Small datasets give noisy batch statistics, and the ImageNet running stats are a better
    estimate than a few hundred photos can give (the Keras and timm fine-tuning advice).
    """

    def __init__(self, model: nn.Module, config: TrainConfig, total_steps: int, freeze_bn: bool):
        super().__init__()
        self.model = model
        self.config = config
        self.total_steps = total_steps
        self.freeze_bn = freeze_bn
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last))

    def train(self, mode: bool = True) -> FineTuneModule:
        super().train(mode)
        if mode and self.freeze_bn:
            for module in self.model.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = self.criterion(logits, y)
        acc = (logits.argmax(1) == y).float().mean()
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(y))
        self.log("train_acc", acc, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y)
        acc = (logits.argmax(1) == y).float().mean()
        self.log("val_loss", loss, prog_bar=True, on_epoch=True, batch_size=len(y))
        self.log("val_acc", acc, prog_bar=True, on_epoch=True, batch_size=len(y))

    def on_validation_epoch_end(self) -> None:
        metrics = self.trainer.callback_metrics
        if "val_acc" in metrics and "val_loss" in metrics:
            value = score(float(metrics["val_acc"]), float(metrics["val_loss"]))
            self.log("val_score", value)

    def configure_optimizers(self):
        c = self.config
        backbone = [p for p in backbone_parameters(self.model) if p.requires_grad]
        groups = [{"params": head_parameters(self.model), "lr": c.lr}]
        if backbone and c.backbone_lr_mult > 0:
            groups.append({"params": backbone, "lr": c.lr * c.backbone_lr_mult})
        optimizer = make_optimizer(c.optimizer, groups, c.lr, c.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_cosine(self.total_steps, c.warmup_fraction)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
