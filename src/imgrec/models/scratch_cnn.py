"""A compact residual CNN trained from scratch on a CPU (`--model cnn-scratch --weights none`).

A ResNet-style network sized for two CPU cores: a stride-4 stem, then stages of basic residual
blocks (two 3x3 convolutions, BatchNorm, ReLU) that halve the resolution and double the width,
global average pooling, dropout and a linear classifier. Plain convolutions, BatchNorm and ReLU
only, so it trains fast in channels_last and exports to ONNX like any timm CNN.

It is registered with timm as `imgrec_cnn_scratch`, so the rest of imgrec builds and handles it
exactly like a hub backbone (get_classifier, forward_features, forward_head, feature_info).
"""

from __future__ import annotations

import torch
from timm.models import register_model
from torch import nn

TIMM_NAME = "imgrec_cnn_scratch"
# Sized by the experiments in benchmarks/scratch_cnn_experiments.md: 73 M multiply-adds at
# 128 px, ~6 s per 2000-image epoch (bf16, default augmentation) on two idle cores. 64 px
# plateaued in the mid-70s and 96 px near 79%; 128 px with stronger augmentation reached 86%.
INPUT_SIZE = 128
WIDTHS = (32, 64, 128, 256)  # one stage per width, each at half the previous resolution
DEPTHS = (1, 1, 1, 1)  # residual blocks per stage
STEM_WIDTH = 24

# mean/std 0.5: the network learns its own statistics; nothing pretrained to match.
_CFG = {
    "url": "",
    "num_classes": 1000,
    "input_size": (3, INPUT_SIZE, INPUT_SIZE),
    "pool_size": (INPUT_SIZE // 32, INPUT_SIZE // 32),
    "crop_pct": 0.875,
    "interpolation": "bilinear",
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
    "first_conv": "stem.0.0",
    "classifier": "fc",
}
default_cfgs = {TIMM_NAME: _CFG}


def _conv_bn(cin: int, cout: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, stride)
        self.conv2 = _conv_bn(cout, cout, relu=False)
        # zero-init the last BN so every block starts as the identity (Goyal et al. 2017)
        nn.init.zeros_(self.conv2[1].weight)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class ScratchCNN(nn.Module):
    """Stem (stride 4) + residual stages (stride 2 each) + global average pool + dropout + fc;
    predictions average the image and its mirror image (`flip_average`)."""

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        widths: tuple[int, ...] = WIDTHS,
        depths: tuple[int, ...] = DEPTHS,
        stem_width: int = STEM_WIDTH,
        drop_rate: float = 0.0,
        flip_average: bool = True,
        **_: object,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.flip_average = flip_average
        self.stem = nn.Sequential(
            _conv_bn(in_chans, stem_width, stride=2), _conv_bn(stem_width, widths[0], stride=2)
        )
        self.feature_info = [{"module": "stem", "reduction": 4, "num_chs": widths[0]}]
        stages = []
        cin, reduction = widths[0], 4
        for i, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            stride = 1 if i == 0 else 2
            reduction *= stride
            blocks = [BasicBlock(cin, width, stride)]
            blocks += [BasicBlock(width, width) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            self.feature_info.append(
                {"module": f"stages.{i}", "reduction": reduction, "num_chs": width}
            )
            cin = width
        self.stages = nn.Sequential(*stages)
        self.num_features = self.head_hidden_size = cin
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = self._make_fc(num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_fc(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.fc = self._make_fc(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """In eval mode (with `flip_average`) the feature map is averaged with that of the
        mirrored image, mirrored back: after global pooling that is the mean of both views'
        features, so the logits are too (the head is linear). Training learns with random
        flips, so both views are equally likely inputs; averaging them halves the variance of
        a small network's prediction at twice its (small) inference cost, and because it is
        part of the network it travels into ONNX exports and every engine."""
        features = self.stages(self.stem(x))
        if self.training or not self.flip_average:
            return features
        mirrored = self.stages(self.stem(torch.flip(x, dims=(3,))))
        return 0.5 * (features + torch.flip(mirrored, dims=(3,)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(torch.flatten(self.global_pool(x), 1))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def imgrec_cnn_scratch(pretrained: bool = False, **kwargs) -> ScratchCNN:
    """imgrec's from-scratch CNN; it has no pretrained weights."""
    if pretrained:
        raise ValueError(f"{TIMM_NAME} has no pretrained weights; train it from scratch.")
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    model = ScratchCNN(**kwargs)
    model.pretrained_cfg = model.default_cfg = dict(_CFG, architecture=TIMM_NAME)
    return model
