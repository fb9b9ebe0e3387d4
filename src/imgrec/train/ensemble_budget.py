"""Fit an ensemble into `--time-limit`: keep the members whose forward passes the time allows.

An ensemble's cost is one forward pass per image and member, paid once for the head's
features and again for the evaluation and the drift reference. The first member is timed on
this machine (a few batches through ONNX Runtime, as the head phase runs it: about 3 s with
the export) before anything is decoded; the offline Lites are costed relative to it
(RELATIVE_COST, measured), any other member is timed too. Members are kept in the order given
while their passes fit in SHARE of the limit; the rest of the limit is left for decoding, the
audit and writing the run. The first member is always kept: a run needs one backbone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from imgrec.models.ensemble import SEPARATOR, member_names

SHARE = 0.6  # of the time limit for the members' forward passes
PASSES = 1.6  # forward passes per image: all for the head, held-out ones for evaluation and drift
_BATCH = 16
# Seconds per image relative to EfficientNet-Lite0 at the same input size, ONNX Runtime, batch
# 16, 2 threads (benchmarks/ensemble_ablation.py on an idle 2-core CPU: 141, 110 and 101 img/s).
RELATIVE_COST = {"efficientnet_lite0": 1.0, "efficientnet_lite1": 1.28, "efficientnet_lite2": 1.40}


@dataclass(frozen=True)
class EnsembleChoice:
    model: str  # the ensemble kept, or its first member alone
    reason: str | None  # one line when members were dropped


def members_within(name: str, n_images: int, seconds: float) -> EnsembleChoice:
    """The prefix of ensemble `name` whose measured cost on `n_images` fits `seconds`."""
    from imgrec.models.registry import get_spec

    members = member_names(name)
    size = get_spec(name).input_size  # every member sees the ensemble's one input
    budget = SHARE * seconds
    kept: list[str] = []
    spent = 0.0
    lite0: list[float] = []  # timed once, on first need
    for member in members:
        cost = PASSES * n_images * _member_seconds(member, size, lite0)
        if kept and spent + cost > budget:
            break
        kept.append(member)
        spent += cost
    if len(kept) == len(members):
        return EnsembleChoice(name, None)
    dropped = ", ".join(members[len(kept) :])
    return EnsembleChoice(
        SEPARATOR.join(kept),
        f"the time limit leaves {max(0.0, seconds):.0f} s, room for the forward passes of "
        f"{SEPARATOR.join(kept)} on {n_images} images (about {spent:.0f} s); left out: "
        f"{dropped}.",
    )


def _member_seconds(member: str, size: int, lite0: list[float]) -> float:
    """Seconds per image of `member`: an offline Lite relative to Lite0 timed here, else timed."""
    if member not in RELATIVE_COST:
        return seconds_per_image(member, size)
    if not lite0:
        lite0.append(seconds_per_image("efficientnet_lite0", size))
    return RELATIVE_COST[member] * lite0[0]


def seconds_per_image(member: str, size: int) -> float:
    """One forward pass of `member`'s frozen features at `size` px, timed here (ONNX Runtime
    when it exports, else PyTorch) on random images."""
    from imgrec.models.fast_features import onnx_feature_extractor
    from imgrec.models.registry import create_model, get_spec

    model = create_model(get_spec(member), 2).eval()
    images = torch.rand(_BATCH, 3, size, size)
    engine = onnx_feature_extractor(model, size, _BATCH)
    if engine is None:
        from imgrec.models.anatomy import forward_features

        def engine(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return forward_features(model, x)

    engine(images)  # warm-up: the first run plans memory and layouts
    start = time.perf_counter()
    for _ in range(2):
        engine(images)
    return (time.perf_counter() - start) / (2 * _BATCH)
