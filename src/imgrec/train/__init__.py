"""The fitting engine: two-phase transfer learning on Lightning."""

from imgrec.train.config import TrainConfig

__all__ = ["FitOutcome", "TrainConfig", "TrainingInterrupted", "fit_model"]


def __getattr__(name: str):
    # Lightning loads only when training starts, so the CLI's --help and defaults stay instant.
    if name in {"FitOutcome", "TrainingInterrupted", "fit_model"}:
        from imgrec.train import fit

        return getattr(fit, name)
    raise AttributeError(f"module 'imgrec.train' has no attribute {name!r}")
