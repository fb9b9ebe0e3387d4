"""Which backbones imgrec can build, and how to build them.

Every model is a timm model, so one code path covers the offline default and the thousand
hub backbones. A ModelSpec carries the preprocessing that belongs to the weights (input size,
mean, std, resize) so it can travel with a trained model into model.imgrec.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass

import timm
import torch
from torch import nn

from imgrec.errors import ImgrecError
from imgrec.models import efficientnet_lite, ensemble, scratch_cnn
from imgrec.models.anatomy import num_features
from imgrec.models.classic import HOG_SIZE, ClassicNetwork, EmbedFeatures, HogFeatures
from imgrec.models.families import EMBED_BACKBONE, Family, get_family
from imgrec.models.mlp_head import MLPHead

DEFAULT_MODEL = "efficientnet_lite0"
SCRATCH_MODEL = "cnn-scratch"
WEIGHTS = ("imagenet", "none")

# Popular, well-tested timm backbones shown by `imgrec models` (need the network once).
POPULAR = (
    "resnet18",
    "resnet50",
    "mobilenetv3_large_100",
    "efficientnet_b0",
    "convnext_tiny",
    "vit_small_patch16_224",
    "regnety_016",
)


@dataclass(frozen=True)
class ModelSpec:
    """A buildable backbone plus the preprocessing its pretrained weights expect."""

    name: str
    timm_name: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_size: int
    offline_weights: bool
    family: str = "transfer"  # see imgrec.models.families
    description: str = ""


# The offline EfficientNet-Lites (sizes and where they come from: models/efficientnet_lite.py).
def _offline_lite(name: str, variant: efficientnet_lite.LiteVariant) -> ModelSpec:
    suffix = " (default)" if name == DEFAULT_MODEL else ""
    return ModelSpec(
        name=name,
        timm_name=variant.timm_name,
        input_size=variant.input_size,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        resize_size=variant.resize_size,
        offline_weights=True,
        description=f"{variant.label}, ImageNet weights shipped offline{suffix}",
    )


_OFFLINE = {
    **{name: _offline_lite(name, v) for name, v in efficientnet_lite.VARIANTS.items()},
    # imgrec's own small residual CNN: no pretrained weights, trained from scratch on a CPU.
    SCRATCH_MODEL: ModelSpec(
        name=SCRATCH_MODEL,
        timm_name=scratch_cnn.TIMM_NAME,
        input_size=scratch_cnn.INPUT_SIZE,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        resize_size=round(scratch_cnn.INPUT_SIZE / 0.875),
        offline_weights=False,
        family="scratch",
        description="small residual CNN, no pretrained weights: train with --weights none",
    ),
}


def _unknown(name: str) -> ImgrecError:
    return ImgrecError(
        f"unknown model '{name}'; run `imgrec models` to see the available ones, "
        f"or use {DEFAULT_MODEL}."
    )


def _spec_from_timm(name: str) -> ModelSpec:
    try:
        cfg = timm.get_pretrained_cfg(name)
    except RuntimeError as err:  # a known architecture with an unknown ".tag"
        raise _unknown(name) from err
    if cfg is not None:
        cfg = cfg.to_dict()
    else:  # architectures without registered weights still have a default config
        cfg = timm.create_model(name, pretrained=False).pretrained_cfg
    input_size = int(cfg.get("input_size", (3, 224, 224))[-1])
    crop_pct = float(cfg.get("crop_pct") or 0.875)
    return ModelSpec(
        name=name,
        timm_name=name,
        input_size=input_size,
        mean=tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))),
        resize_size=round(input_size / crop_pct),
        offline_weights=False,
    )


def _family_spec(family: Family) -> ModelSpec:
    if family.features == "hog":
        return ModelSpec(
            name=family.name,
            timm_name="",
            input_size=HOG_SIZE,
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            resize_size=HOG_SIZE,
            offline_weights=True,
            family=family.kind,
        )
    return dataclasses.replace(_OFFLINE[EMBED_BACKBONE], name=family.name, family=family.kind)


def _ensemble_spec(name: str) -> ModelSpec:
    """One input for every member: the largest member's input and resize size (larger inputs
    cost a little more and lose nothing: FixRes), their shared normalisation."""
    names = ensemble.member_names(name)
    if len(names) < 2 or not all(names) or any(get_family(n).kind != "transfer" for n in names):
        raise ImgrecError(
            f"'{name[:80]}' is not an ensemble imgrec can build: join two or more backbones "
            "with '+', e.g. efficientnet_lite0+efficientnet_lite2."
        )
    members = [get_spec(part) for part in names]
    if len({(m.mean, m.std) for m in members}) > 1:
        raise ImgrecError(
            f"the backbones in '{name[:80]}' expect different input normalisation, so they "
            "cannot share one input; join backbones of one kind (e.g. the EfficientNet-Lites)."
        )
    largest = max(members, key=lambda m: m.input_size)
    return ModelSpec(
        name=ensemble.SEPARATOR.join(m.name for m in members),
        timm_name=ensemble.SEPARATOR.join(m.timm_name for m in members),
        input_size=largest.input_size,
        mean=largest.mean,
        std=largest.std,
        resize_size=largest.resize_size,
        offline_weights=all(m.offline_weights for m in members),
        family="ensemble",
        description="frozen backbones side by side, one head on their joined features",
    )


def get_spec(name: str) -> ModelSpec:
    """Resolve a user-facing model name (a family, the offline default, any timm name, or
    backbones joined with '+', an ensemble)."""
    if ensemble.is_ensemble(name):
        return _ensemble_spec(name)
    family = get_family(name)
    if family.features is not None:
        return _family_spec(family)
    if name in _OFFLINE:
        return _OFFLINE[name]
    if not timm.is_model(name):
        raise _unknown(name)
    return _spec_from_timm(name)


def list_models(pattern: str | None = None) -> list[ModelSpec]:
    """The offline models first, then popular hub backbones, or every pretrained timm match."""
    offline = [s for s in _OFFLINE.values() if pattern is None or fnmatch.fnmatch(s.name, pattern)]
    names = POPULAR if pattern is None else timm.list_models(pattern, pretrained=True)
    return offline + [_spec_from_timm(n) for n in names]


def _network_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the weights could not be fetched" (hub or plain URL)."""
    errors: list[type[BaseException]] = [OSError]  # urllib, requests, huggingface_hub errors
    for module in ("httpx2", "httpx"):
        try:
            errors.append(__import__(module).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def _has_hub_weights(spec: ModelSpec) -> bool:
    cfg = timm.get_pretrained_cfg(spec.timm_name)
    return cfg is not None and bool(cfg.hf_hub_id or cfg.url or cfg.file)


def create_model(
    spec: ModelSpec, num_classes: int, weights: str = "imagenet", drop_rate: float = 0.2
) -> nn.Module:
    """A timm model with a fresh `num_classes` head, in channels_last for fast CPU training;
    for the classic and MLP families, their network around the embedding backbone."""
    if weights not in WEIGHTS:
        raise ImgrecError(f"unknown weights '{weights}'; use one of: {', '.join(WEIGHTS)}.")
    if weights == "imagenet" and spec.name == SCRATCH_MODEL:
        raise ImgrecError(
            f"'{SCRATCH_MODEL}' has no pretrained weights; train it from scratch with "
            f"--weights none, or use the offline default {DEFAULT_MODEL}."
        )
    if ensemble.is_ensemble(spec.name):
        return _create_ensemble(spec, num_classes, weights, drop_rate)
    if get_family(spec.name).features is not None:
        return _create_family_model(spec, num_classes, weights, drop_rate)
    pretrained = weights == "imagenet" and not spec.offline_weights
    if pretrained and not _has_hub_weights(spec):
        raise ImgrecError(
            f"'{spec.name}' has no ImageNet weights; use --weights none to train it from "
            f"scratch, or the offline default {DEFAULT_MODEL}."
        )
    try:
        model = timm.create_model(
            spec.timm_name, pretrained=pretrained, num_classes=num_classes, drop_rate=drop_rate
        )
    except _network_errors() as err:
        raise ImgrecError(
            f"could not download ImageNet weights for '{spec.name}' (no network?); use the "
            f"offline default {DEFAULT_MODEL}, or --weights none to train from scratch."
        ) from err
    if weights == "imagenet" and spec.offline_weights:
        efficientnet_lite.load_imagenet_backbone(model, spec.timm_name)
    return model.to(memory_format=torch.channels_last)


def _create_family_model(
    spec: ModelSpec, num_classes: int, weights: str, drop_rate: float
) -> nn.Module:
    family = get_family(spec.name)
    if family.features == "hog":
        return ClassicNetwork(HogFeatures(spec.mean, spec.std), num_classes)
    backbone = create_model(
        dataclasses.replace(spec, name=EMBED_BACKBONE, family="transfer"),
        num_classes,
        weights,
        drop_rate,
    )
    if not family.traits.sklearn:  # a network head on the features (mlp-embed)
        backbone.classifier = MLPHead(num_features(backbone), num_classes, drop_rate)
        return backbone
    backbone.reset_classifier(0)  # only the pooled features are used
    backbone.eval()
    return ClassicNetwork(EmbedFeatures(backbone), num_classes)


def _create_ensemble(
    spec: ModelSpec, num_classes: int, weights: str, drop_rate: float
) -> nn.Module:
    """The members with ImageNet weights (training) or none (a model file's weights follow)."""
    members = []
    for name in ensemble.member_names(spec.name):
        member = create_model(get_spec(name), num_classes, weights, drop_rate)
        member.reset_classifier(0)  # only the pooled features are used
        members.append(member)
    model = ensemble.BackboneEnsemble(members, num_classes, drop_rate)
    return model.to(memory_format=torch.channels_last)
