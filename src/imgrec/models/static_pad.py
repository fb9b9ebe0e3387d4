"""Replace timm's dynamic 'SAME' padding with constant padding for a fixed input size.

TF-ported backbones (the default tf_efficientnet_lite0) pad stride-2 convolutions from the
input's runtime shape. Traced, that becomes a chain of Shape/Gather/Ceil/Sub ops in front of
each such conv, which blocks ONNX Runtime's Pad+Conv fusion and, worse, splits int8 graphs into
float islands. An exported model always sees `input_size`, so the padding is a constant.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from timm.layers import Conv2dSame
from torch import nn


class StaticSameConv(nn.Module):
    """`conv` after a fixed F.pad: the same numbers as Conv2dSame at one input size."""

    def __init__(self, conv: nn.Conv2d, pad: tuple[int, int, int, int]):
        super().__init__()
        self.conv = conv
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        x = F.pad(x, self.pad)
        return F.conv2d(x, c.weight, c.bias, c.stride, 0, c.dilation, c.groups)


def with_static_padding(model: nn.Module, input_size: int) -> nn.Module:
    """A copy of `model` (eval mode) whose Conv2dSame layers pad by constants; `model` is kept."""
    model = copy.deepcopy(model).eval()
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [
        module.register_forward_pre_hook(
            lambda _m, args, name=name: sizes.__setitem__(name, tuple(args[0].shape[-2:]))
        )
        for name, module in model.named_modules()
        if isinstance(module, Conv2dSame)
    ]
    if not hooks:
        return model
    with torch.no_grad():
        model(torch.zeros(1, 3, input_size, input_size))
    for hook in hooks:
        hook.remove()
    for name, (ih, iw) in sizes.items():
        conv = model.get_submodule(name)
        pad_h = _same_padding(ih, conv.kernel_size[0], conv.stride[0], conv.dilation[0])
        pad_w = _same_padding(iw, conv.kernel_size[1], conv.stride[1], conv.dilation[1])
        pad = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, StaticSameConv(conv, pad))
    return model


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> int:
    """TensorFlow's SAME padding total, as timm.layers.padding.get_same_padding computes it."""
    return max((-(size // -stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
