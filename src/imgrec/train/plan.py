"""Whether fine-tuning (phase 2) can pay after the head (phase 1), and for how many epochs.

A pure decision on measured numbers, so it is tested without training anything: the errors
the head leaves on the validation split, and the measured time of a fine-tuning epoch against
the time there is. No torch and no Lightning here (train/steptime.py measures the epoch).
"""

from __future__ import annotations

import math

# Seconds fine-tuning may take when no time limit is given: the default must finish in minutes
# on a laptop CPU. Phase 1 alone takes seconds to a minute and gives almost all the accuracy;
# an epoch of fine-tuning took ~125 s on 1700 images on a 2-core CPU (cats_and_dogs_filtered),
# so 5 minutes is two epochs there and more on smaller data. `--time-limit` allows more.
DEFAULT_FINETUNE_BUDGET = 300.0

# Fewer validation errors than this left by the head, and fine-tuning is skipped: fixing every
# one of 5 errors and breaking none is not a significant improvement (the exact two-sided
# McNemar test: p = 2 * 0.5**5 = 0.0625), so on this validation split a better model could not
# be told from chance, and choosing an epoch there would be choosing noise.
MIN_ERRORS = 6


def errors_left(val_acc: float, n_val: int) -> int:
    """The validation images the head gets wrong."""
    return round((1.0 - val_acc) * n_val)


def decide(
    val_acc: float,
    n_val: int,
    epoch_seconds: float,
    seconds_left: float,
    max_epochs: int,
    time_limited: bool = False,
) -> tuple[int, str]:
    """(fine-tuning epochs to run, one-line reason) after a head with `val_acc` on `n_val`
    validation images. `epoch_seconds`: the estimated time of one fine-tuning epoch;
    `seconds_left`: what the time limit leaves for fine-tuning (`time_limited`) or else
    DEFAULT_FINETUNE_BUDGET; `max_epochs`: the most to run (TrainConfig.epochs)."""
    errors = errors_left(val_acc, n_val)
    head = f"{val_acc:.1%} on {n_val} validation images"
    if errors < MIN_ERRORS:
        return 0, (
            f"head reached {val_acc:.1%} on the {n_val} validation images; fine-tuning "
            f"skipped: {_count(errors, 'error') if errors else 'no error'} left to fix, too "
            "few to tell a better model from chance"
        )
    fits = math.floor(max(0.0, seconds_left) / epoch_seconds) if epoch_seconds > 0 else max_epochs
    epochs = max(0, min(max_epochs, fits))
    if epochs == 0:
        room = (
            f"the {_duration(seconds_left)} the time limit leaves; give a longer --time-limit"
            if time_limited
            else f"the {_duration(seconds_left)} budget; give --time-limit"
        )
        return 0, (
            f"one fine-tuning epoch would take about {_duration(epoch_seconds)}, more than "
            f"{room} to allow more (or --epochs N to fine-tune anyway)"
        )
    return epochs, (
        f"fine-tuning {_count(epochs, 'epoch')}, about {_duration(epochs * epoch_seconds)} "
        f"(head: {head}, {_count(errors, 'error')} left)"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _duration(seconds: float) -> str:
    """'40 s', '6 min', '1.5 h': as a person reads a duration."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{round(seconds)} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
