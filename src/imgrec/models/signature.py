"""A compact signature of what the network saw: its pre-logit features, randomly projected.

Drift monitoring compares where images land in the model's own feature space (a new camera or
an unseen kind of object moves them long before accuracy can be measured). Logging 1280 floats
per prediction is too much, so the features are multiplied by a fixed Gaussian projection
(Johnson-Lindenstrauss: pairwise distances, and so kernel two-sample tests on them, survive).
The projection depends only on the feature width and a constant seed: every engine, every
process and every model file agree on it without storing it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from imgrec.models.anatomy import forward_features
from imgrec.models.classic import ClassicNetwork

SIGNATURE_DIMS = 32
_SEED = 20261129


def projection(width: int) -> torch.Tensor:
    """The (width, SIGNATURE_DIMS) projection for features of `width` values."""
    rng = np.random.default_rng(_SEED + width)  # numpy: a constant, also inside an ONNX trace
    matrix = rng.standard_normal((width, SIGNATURE_DIMS)) / math.sqrt(SIGNATURE_DIMS)
    return torch.from_numpy(matrix.astype(np.float32))


def logits_and_features(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, pre-logit features) in one forward pass; a classic model's features are what
    its scikit-learn estimator sees (HOG or embeddings) and its logits are log-probabilities."""
    if isinstance(model, ClassicNetwork):
        features = model.features(x)
        return model.log_proba(features.numpy()), features
    features = forward_features(model, x)
    return model.get_classifier()(features), features


class WithSignature(nn.Module):
    """`model` as (probabilities at `temperature`, signature): what engines run and log."""

    def __init__(self, model: nn.Module, temperature: float = 1.0):
        super().__init__()
        self.model = model
        self.temperature = float(temperature)
        self.projection: torch.Tensor | None = None

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, features = logits_and_features(self.model, images)
        features = features.float().flatten(1)
        width = int(features.shape[1])  # a constant when traced for ONNX
        if self.projection is None or self.projection.shape[0] != width:
            self.projection = projection(width)
        probs = torch.softmax(logits.float() / self.temperature, dim=1)
        return probs, features @ self.projection
