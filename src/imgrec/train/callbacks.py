"""Lightning callback that keeps a run's results on disk after every epoch."""

from __future__ import annotations

import math
import time

import lightning as L

from imgrec.train.state import RunState


class KeepBestAndHistory(L.Callback):
    """After each validated epoch: append a history row and keep the best weights so far.

    With `stop_unless_better`, training stops after the first epoch whose score does not beat
    the best so far (whatever the state held before fine-tuning, the head's best included:
    `best_score`). Under DDP the metrics are already reduced over the processes, every
    process takes the same decision, and rank 0 alone writes.
    """

    def __init__(
        self,
        state: RunState,
        started: float,
        stop_unless_better: bool = False,
        best_score: float | None = None,
    ):
        self.state = state
        self.started = started
        self.stop_unless_better = stop_unless_better
        self.best_score = best_score

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        m = trainer.callback_metrics
        if "val_score" not in m or trainer.sanity_checking:
            return
        row = {
            "phase": "finetune",
            "epoch": trainer.current_epoch + 1,
            "train_loss": float(m.get("train_loss_epoch", m.get("train_loss", math.nan))),
            "train_acc": float(m.get("train_acc", math.nan)),
            "val_loss": float(m["val_loss"]),
            "val_acc": float(m["val_acc"]),
            "val_score": float(m["val_score"]),
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
            "seconds": time.perf_counter() - self.started,
        }
        better = self.best_score is None or row["val_score"] > self.best_score
        if trainer.is_global_zero:
            self.state.append_history(row)
            if better:
                self.state.save_best(pl_module.model.state_dict(), row)
        if better:
            self.best_score = row["val_score"]
        elif self.stop_unless_better:
            trainer.should_stop = True
