"""Phase 1 of transfer learning: fit the new head on frozen backbone features.

Features are computed once from the decoded-image cache without augmentation, so the head
trains in seconds instead of minutes of full forward passes per epoch.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence

import torch
from rich.progress import Progress
from torch import nn

from imgrec.models.registry import forward_features
from imgrec.train.config import TrainConfig


@torch.inference_mode()
def extract_features(
    model: nn.Module,
    images: Sequence[torch.Tensor],
    transform: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 32,
    description: str = "features",
    progress: bool = True,
) -> torch.Tensor:
    """Pooled backbone features (N, F) for uint8 images, in eval mode and channels_last."""
    model.eval()
    chunks = []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(description, total=len(images))
        for start in range(0, len(images), batch_size):
            batch = [
                transform(images[i]) for i in range(start, min(start + batch_size, len(images)))
            ]
            x = torch.stack(batch).contiguous(memory_format=torch.channels_last)
            chunks.append(forward_features(model, x).float())
            bar.advance(task, len(batch))
    return torch.cat(chunks) if chunks else torch.empty(0)


def score(acc: float, loss: float) -> float:
    """Model selection score: accuracy first, lower loss breaks ties between equal accuracies."""
    return acc - 1e-3 * loss


def evaluate_logits(logits: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    """(accuracy, plain cross-entropy) — no label smoothing so phases compare fairly."""
    loss = nn.functional.cross_entropy(logits, targets).item()
    acc = (logits.argmax(1) == targets).float().mean().item()
    return acc, loss


def fit_head(
    head: nn.Linear,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    config: TrainConfig,
    on_epoch: Callable[[dict], None] | None = None,
    started: float | None = None,
) -> dict:
    """Train `head` in place on features; keep the epoch with the best validation score.

    Returns the best epoch's row (val_acc, val_loss, ...); `seconds` counts from `started`.
    """
    generator = torch.Generator().manual_seed(config.seed)
    dropout = nn.Dropout(config.dropout)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    optimizer = make_optimizer(
        config.optimizer, head.parameters(), config.head_lr, config.weight_decay
    )
    batch = max(16, min(config.batch_size * 2, len(train_x)))
    steps = config.head_epochs * math.ceil(len(train_x) / batch)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(steps, config.warmup_fraction)
    )
    best: dict = {"val_score": -math.inf}
    best_state = copy.deepcopy(head.state_dict())
    started = time.perf_counter() if started is None else started
    for epoch in range(1, config.head_epochs + 1):
        head.train()
        order = torch.randperm(len(train_x), generator=generator)
        total_loss = total_correct = 0.0
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            logits = head(dropout(train_x[idx]))
            loss = criterion(logits, train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.item() * len(idx)
            total_correct += (logits.argmax(1) == train_y[idx]).sum().item()
        head.eval()
        with torch.no_grad():
            val_acc, val_loss = evaluate_logits(head(val_x), val_y)
        row = {
            "phase": "head",
            "epoch": epoch,
            "train_loss": total_loss / len(train_x),
            "train_acc": total_correct / len(train_x),
            "val_loss": val_loss,
            "val_acc": val_acc,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - started,
        }
        row["val_score"] = score(val_acc, val_loss)
        if on_epoch:
            on_epoch(row)
        if row["val_score"] > best["val_score"]:
            best = row
            best_state = copy.deepcopy(head.state_dict())
    head.load_state_dict(best_state)
    return best


def warmup_cosine(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    """LR multiplier: linear warm-up, then cosine decay to zero."""
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def make_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay
        )
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
