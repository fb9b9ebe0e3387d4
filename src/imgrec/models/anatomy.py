"""The parts every timm-style network has: head, backbone, pooled pre-logit features.

Kept apart from the registry so that the networks it builds (classic, scratch) can use
these without importing the registry that imports them.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The classifier's parameters (trained first, at the higher learning rate)."""
    return list(model.get_classifier().parameters())


def backbone_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Everything but the classifier (frozen first, then fine-tuned at a lower rate)."""
    head = {id(p) for p in head_parameters(model)}
    return [p for p in model.parameters() if id(p) not in head]


def forward_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Pooled pre-logits features (N, F): the embedding classic learners and drift use."""
    return model.forward_head(model.forward_features(x), pre_logits=True)


def num_features(model: nn.Module) -> int:
    """Width of forward_features' output (head_hidden_size where a model has a conv head)."""
    return int(getattr(model, "head_hidden_size", None) or model.num_features)


def freeze_early_layers(model: nn.Module, max_reduction: int) -> int:
    """Freeze every layer up to the last stage working at stride <= `max_reduction`.

    Early layers hold generic edge and texture filters and, at high resolution, most of the
    activation memory and backward time: freezing them up to stride 8 roughly doubled CPU
    fine-tuning speed and cut peak memory by ~40% on EfficientNet-Lite0 (benchmarks/RESULTS.md).
    Works for any timm CNN via `feature_info`; models without such stages are left as they are.
    Returns the number of parameter tensors frozen.
    """
    info = getattr(model, "feature_info", [])
    stages = [f["module"] for f in info if f["reduction"] <= max_reduction]
    if max_reduction <= 0 or not stages:
        return 0
    last_stage = stages[-1]
    names = [name for name, _ in model.named_parameters()]
    inside = [i for i, name in enumerate(names) if name.startswith(last_stage + ".")]
    if not inside:
        return 0
    frozen = 0
    for i, (_, param) in enumerate(model.named_parameters()):
        if i > inside[-1]:
            break
        param.requires_grad_(False)
        frozen += 1
    return frozen


def freeze_batchnorm_statistics(model: nn.Module) -> None:
    """Put every BatchNorm layer of `model` in eval mode, so training steps use and keep the
    pretrained running statistics (small fine-tuning batches would make them noisy)."""
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.eval()
