"""Model kinds: timm backbones with offline-first ImageNet weights."""

from imgrec.models.registry import (
    DEFAULT_MODEL,
    ModelSpec,
    backbone_parameters,
    create_model,
    forward_features,
    get_spec,
    head_parameters,
    list_models,
    num_features,
)

__all__ = [
    "DEFAULT_MODEL",
    "ModelSpec",
    "backbone_parameters",
    "create_model",
    "forward_features",
    "get_spec",
    "head_parameters",
    "list_models",
    "num_features",
]
