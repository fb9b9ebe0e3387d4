"""A deep fully connected classifier ("DNN") that replaces a backbone's linear head.

Put in the backbone's classifier slot, it makes the whole model one plain network: predict,
serve and ONNX export need nothing special for the mlp-embed family.
"""

from __future__ import annotations

from torch import nn

HIDDEN = (512, 256)


class MLPHead(nn.Sequential):
    """Linear -> BatchNorm -> ReLU -> Dropout per hidden layer, then a linear output."""

    def __init__(self, in_features: int, num_classes: int, dropout: float, hidden=HIDDEN) -> None:
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.BatchNorm1d(size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)
        self.in_features = in_features
        self.out_features = num_classes
