"""The fitting engine: two-phase transfer learning on Lightning."""

from imgrec.train.config import TrainConfig
from imgrec.train.fit import FitOutcome, TrainingInterrupted, fit_model

__all__ = ["FitOutcome", "TrainConfig", "TrainingInterrupted", "fit_model"]
