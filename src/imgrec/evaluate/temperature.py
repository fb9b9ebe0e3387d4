"""Temperature scaling: one scalar T that makes a model's confidence match its accuracy.

Probabilities become softmax(logits / T). T is fitted by minimising the negative
log-likelihood of held-out labels (Guo et al., 2017); it never changes which class ranks
first, so accuracy is untouched. Optimising log T keeps T positive without constraints.
Classic models return log-probabilities as their logits: dividing those by T is the same
operation (softmax of log p is p again at T = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from imgrec.evaluate.calibration import expected_calibration_error

T_RANGE = (0.05, 20.0)  # beyond these the held-out set says more about itself than the model


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits / temperature, in float64 (stable for large logits)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def negative_log_likelihood(
    logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0
) -> float:
    """Mean -log p(true class) at `temperature` (the loss temperature scaling minimises)."""
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64)) / temperature
    t = torch.as_tensor(np.asarray(targets, dtype=np.int64))
    return float(torch.nn.functional.cross_entropy(z, t))


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The T > 0 minimising the NLL of `targets` under softmax(logits / T) (L-BFGS on log T)."""
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    z = torch.nan_to_num(z, neginf=-1e4)  # log(0) of a classic model's unseen class
    t = torch.as_tensor(np.asarray(targets, dtype=np.int64))
    if z.ndim != 2 or t.ndim != 1 or len(z) != len(t) or len(t) == 0:
        raise ValueError(f"need (N, C) logits and N targets, got {tuple(z.shape)} and {len(t)}")
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS(
        [log_t], lr=0.5, max_iter=200, tolerance_grad=1e-10, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), t)
        loss.backward()
        return loss

    optimiser.step(closure)
    value = float(log_t.detach().exp())
    if not np.isfinite(value):
        return 1.0
    return float(np.clip(value, *T_RANGE))


@dataclass
class TemperatureScaling:
    """scikit-learn-style calibrator: `fit(logits, targets)`, then `predict_proba(logits)`.

    >>> scaler = TemperatureScaling().fit(val_logits, val_targets)
    >>> scaler.temperature_, scaler.predict_proba(test_logits)
    """

    temperature_: float = 1.0

    def fit(self, logits: np.ndarray, targets: np.ndarray) -> TemperatureScaling:
        self.temperature_ = fit_temperature(logits, targets)
        return self

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        return softmax(logits, self.temperature_)


def cross_fitted(
    logits: np.ndarray,
    targets: np.ndarray,
    folds: int = 2,
    seed: int = 0,
    base_temperature: float = 1.0,
) -> dict[str, float]:
    """The honest figure: fit T on all folds but one and measure on the one left out, every
    fold in turn, then pool. Returns ECE and NLL of the held-out predictions, before (at
    `base_temperature`, the model's current one) and after, and the mean fitted T."""
    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(targets))
    parts = np.array_split(order, folds)
    calibrated = np.zeros_like(logits)
    temperatures = []
    for i, held_out in enumerate(parts):
        rest = np.concatenate([p for j, p in enumerate(parts) if j != i])
        temperature = fit_temperature(logits[rest], targets[rest])
        temperatures.append(temperature)
        calibrated[held_out] = softmax(logits[held_out], temperature)
    before = softmax(logits, base_temperature)
    return {
        "ece_before": expected_calibration_error(before, targets),
        "ece_after": expected_calibration_error(calibrated, targets),
        "nll_before": _nll_of_probs(before, targets),
        "nll_after": _nll_of_probs(calibrated, targets),
        "temperature_mean": float(np.mean(temperatures)),
    }


def _nll_of_probs(probs: np.ndarray, targets: np.ndarray) -> float:
    picked = probs[np.arange(len(targets)), targets]
    return float(-np.mean(np.log(np.clip(picked, 1e-15, 1.0))))
