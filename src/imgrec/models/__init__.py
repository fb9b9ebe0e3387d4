"""Model kinds: the families (classic learners, MLP, scratch CNN) and timm backbones.

Attributes load lazily, so `imgrec.models.families` (no torch) stays instant for the CLI.
"""

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


def __getattr__(name: str):
    if name in __all__:
        from imgrec.models import anatomy, registry

        return getattr(anatomy if hasattr(anatomy, name) else registry, name)
    raise AttributeError(f"module 'imgrec.models' has no attribute {name!r}")
