"""Several frozen backbones side by side: one input, their pooled features joined, one head.

Why: on a CPU, a second and third ImageNet backbone cost one more forward pass per image each,
while fine-tuning one backbone costs three or more passes per image per epoch. Backbones
trained differently make different mistakes, so a logistic-regression head on their joined
features gains where fine-tuning often does not: on cats_and_dogs_filtered Lite0 + Lite1 +
Lite2 features made 2 errors in 1000 test images against 5-8 for any one of them, on
hymenoptera_data 4 in 153 against 4-8 (benchmarks/RESULTS.md). `imgrec train --preset best`
trains this.

The ensemble behaves like a timm model where imgrec looks (forward_features, forward_head,
get_classifier, num_features), so the head phase, the model file, ONNX export, int8, predict
and serve need nothing of their own: every member sees the same input image, and the graph
is one network.
"""

from __future__ import annotations

import torch
from torch import nn

from imgrec.models.anatomy import forward_features, num_features

SEPARATOR = "+"  # "efficientnet_lite0+efficientnet_lite2" names an ensemble of the two


def is_ensemble(name: str) -> bool:
    return SEPARATOR in name


def member_names(name: str) -> list[str]:
    """The backbones an ensemble name joins, in order ("a+b" -> ["a", "b"])."""
    return [part.strip() for part in name.split(SEPARATOR)]


class BackboneEnsemble(nn.Module):
    """`members` (timm models without a classifier) run on the same images; their pooled
    features are concatenated in member order and classified by one linear layer."""

    def __init__(self, members: list[nn.Module], num_classes: int, drop_rate: float = 0.0):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.num_features = sum(num_features(m) for m in members)
        self.head_drop = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The joined pooled features (N, sum of member widths)."""
        return torch.cat([forward_features(member, x) for member in self.members], dim=1)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits:
            return features
        return self.classifier(self.head_drop(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Linear:
        return self.classifier
