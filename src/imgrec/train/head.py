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

from imgrec.models.anatomy import forward_features


@torch.no_grad()  # not inference_mode: the head fit needs these as autograd inputs
def extract_features(
    model: nn.Module,
    images: Sequence[torch.Tensor],
    transform: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 32,
    description: str = "features",
    progress: bool = True,
    engine: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Pooled backbone features (N, F) for uint8 images; `engine` (e.g. ONNX Runtime) if given,
    else the model itself in eval mode and channels_last."""
    model.eval()
    if engine is None:

        def engine(x: torch.Tensor) -> torch.Tensor:
            return forward_features(model, x.contiguous(memory_format=torch.channels_last))

    chunks = []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(description, total=len(images))
        for start in range(0, len(images), batch_size):
            batch = [
                transform(images[i]) for i in range(start, min(start + batch_size, len(images)))
            ]
            chunks.append(engine(torch.stack(batch)).float())
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


def class_weights(targets: Sequence[int] | torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse-frequency class weights, normalised to mean 1 over the classes present.

    A minority class then costs as much in the loss as a majority class, in total. Mean 1
    keeps the loss on the same scale as the unweighted one, so learning rates and the L2 path
    still fit. A class absent from `targets` gets weight 0 (nothing to weigh).
    """
    counts = torch.bincount(torch.as_tensor(targets, dtype=torch.long), minlength=num_classes)
    present = counts > 0
    weights = torch.zeros(num_classes, dtype=torch.float32)
    weights[present] = 1.0 / counts[present].float()
    return weights * (present.sum() / weights.sum())


# L2 strengths tried for the head, strongest first (warm-started along the path). 2.5e-4 is
# scikit-learn's LogisticRegression default (C=1) for 2000 samples.
L2_PATH = (3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4)


def fit_head(
    head: nn.Linear,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    on_epoch: Callable[[dict], None] | None = None,
    started: float | None = None,
    class_weight: torch.Tensor | None = None,
) -> dict:
    """Fit `head` in place as L2-regularised multinomial logistic regression (full-batch L-BFGS).

    On frozen features this is a convex problem: L-BFGS solves it exactly in well under a
    second, where SGD epochs on a fresh head are slow and unstable. The penalty is picked on
    the validation split along a short regularisation path; each step is one history row.
    Returns the chosen row (val_acc, val_loss, ...); `seconds` counts from `started`.
    `class_weight` (one per class, see `class_weights`) weights the training loss only; the
    reported losses and the choice of penalty stay unweighted, as in phase 2.
    """
    started = time.perf_counter() if started is None else started
    weight = torch.zeros_like(head.weight, requires_grad=True)
    bias = torch.zeros_like(head.bias, requires_grad=True)
    best: dict = {"val_score": -math.inf}
    best_state = copy.deepcopy(head.state_dict())
    for step, l2 in enumerate(L2_PATH, start=1):
        _solve(weight, bias, train_x, train_y, l2, class_weight)
        with torch.no_grad():
            train_acc, train_loss = evaluate_logits(train_x @ weight.T + bias, train_y)
            val_acc, val_loss = evaluate_logits(val_x @ weight.T + bias, val_y)
        row = {
            "phase": "head",
            "epoch": step,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "val_score": score(val_acc, val_loss),
            "lr": l2,
            "seconds": time.perf_counter() - started,
        }
        if on_epoch:
            on_epoch(row)
        if row["val_score"] > best["val_score"]:
            best = row
            best_state = {"weight": weight.detach().clone(), "bias": bias.detach().clone()}
    head.load_state_dict(best_state)
    return best


def _solve(weight, bias, x, y, l2: float, class_weight: torch.Tensor | None = None) -> None:
    """Minimise (class-weighted) cross-entropy + l2 * ||weight||^2 in place, warm-started.

    No label smoothing here: on hymenoptera_data it cost 2-3 of 153 validation images.
    """
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1,
        max_iter=300,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(x @ weight.T + bias, y, weight=class_weight)
        loss = loss + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)


def warmup_cosine(
    total_steps: int,
    warmup_fraction: float,
    time_used: Callable[[], float] | None = None,
) -> Callable[[int], float]:
    """LR multiplier: linear warm-up, then cosine decay to zero.

    With `time_used` (the fraction of the time budget spent, 0..1) the whole schedule, warm-up
    included, follows whichever is further along, the steps or the clock. A run cut by its
    time limit then reaches its peak learning rate after `warmup_fraction` of the time and
    still ends on the low learning rates where most of a schedule's gain is; `--epochs` is
    only an upper bound. A function, so LambdaLR keeps it out of checkpoints (FineTuneModule
    keeps the clock's origin there instead).
    """
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        clock = time_used() if time_used is not None else 0.0
        warmed = (step + 1) / warmup
        if warmup_fraction > 0:
            warmed = max(warmed, clock / warmup_fraction)
        if warmed < 1:
            return warmed
        progress = (step - warmup) / max(1, total_steps - warmup)
        progress = max(progress, (clock - warmup_fraction) / (1 - warmup_fraction))
        return 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))

    return factor


def make_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay
        )
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def fit_mlp_head(
    head: nn.Module,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    config,
    on_epoch: Callable[[dict], None] | None = None,
    started: float | None = None,
    class_weight: torch.Tensor | None = None,
    max_epochs: int = 200,
    patience: int = 20,
) -> dict:
    """Train a deep head (MLPHead) on frozen features with mini-batches, keeping the best epoch.

    Unlike the linear head this is not convex, so it is trained the deep-learning way: the
    configured optimizer, learning rate, weight decay, label smoothing and dropout, and
    early stopping once `patience` epochs pass without a better validation score. Epochs over
    a few thousand cached vectors take milliseconds, so the search is generous.
    """
    started = time.perf_counter() if started is None else started
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = make_optimizer(config.optimizer, head.parameters(), config.lr, config.weight_decay)
    batch = 64
    best: dict = {"val_score": -math.inf}
    best_state = copy.deepcopy(head.state_dict())
    waited = 0
    for epoch in range(1, max_epochs + 1):
        head.train()
        order = torch.randperm(len(train_x), generator=generator)
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            if len(idx) < 2:  # BatchNorm needs two rows
                continue
            loss = nn.functional.cross_entropy(
                head(train_x[idx]),
                train_y[idx],
                weight=class_weight,
                label_smoothing=config.label_smoothing,
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        head.eval()
        with torch.no_grad():
            train_acc, train_loss = evaluate_logits(head(train_x), train_y)
            val_acc, val_loss = evaluate_logits(head(val_x), val_y)
        row = {
            "phase": "head",
            "epoch": epoch,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "val_score": score(val_acc, val_loss),
            "lr": config.lr,
            "seconds": time.perf_counter() - started,
        }
        if on_epoch:
            on_epoch(row)
        if row["val_score"] > best["val_score"]:
            best, waited = row, 0
            best_state = copy.deepcopy(head.state_dict())
        else:
            waited += 1
            if waited >= patience:
                break
    head.load_state_dict(best_state)
    head.eval()
    return best
