"""The Python API: what a notebook imports. It re-exports; the work is done below.

>>> from imgrec import ImageClassifier, load_dataset
>>> train = load_dataset("photos/")
>>> clf = ImageClassifier("efficientnet_lite0", epochs=4).fit(train)
>>> clf.predict(["cat.jpg"])[0].label
"""

from __future__ import annotations

from imgrec.audit.result import AuditResult
from imgrec.audit.run import audit_dataset
from imgrec.bundle.model import TrainedModel, load_model, save_model
from imgrec.bundle.predictor import open_predictor
from imgrec.classifier import ImageClassifier
from imgrec.data.dataset import Dataset, load_dataset
from imgrec.infer.predict import Prediction

__all__ = [
    "AuditResult",
    "Dataset",
    "ImageClassifier",
    "Prediction",
    "TrainedModel",
    "audit",
    "load_dataset",
    "load_model",
    "open_predictor",
    "save_model",
]


def audit(
    dataset: Dataset, *, embeddings: bool = True, model: str = "efficientnet_lite0"
) -> AuditResult:
    """Check data before training: unreadable files, balance, odd images, duplicates and
    leakage between splits, likely label errors and outliers. See docs/data-quality.md."""
    return audit_dataset(dataset, embeddings=embeddings, model=model)
