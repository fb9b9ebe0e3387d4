"""The fitting engine: two-phase transfer learning on Lightning."""

from imgrec.config import TrainConfig
from imgrec.train.state import TrainingInterrupted

__all__ = ["FitOutcome", "TrainConfig", "TrainingInterrupted", "fit_model"]


def __getattr__(name: str):
    # torch loads only when training starts, so the CLI's --help and defaults stay instant.
    if name in {"FitOutcome", "fit_model"}:
        from imgrec.train import fit

        return getattr(fit, name)
    raise AttributeError(f"module 'imgrec.train' has no attribute {name!r}")
