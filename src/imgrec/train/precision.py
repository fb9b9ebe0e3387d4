"""The arithmetic of training steps (TrainConfig.precision), and a refusal in one sentence of
a dtype the device cannot run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imgrec.errors import ImgrecError
from imgrec.runtime import autocast_dtype

if TYPE_CHECKING:
    import torch


def training_dtype(
    precision: str, device: torch.device | str, from_scratch: bool
) -> torch.dtype | None:
    """The autocast dtype of training steps for TrainConfig.precision (None: float32).

    "auto" is `autocast_dtype`, with bf16 on a CPU only from scratch: the CNN trained 1.3x
    faster per step at 128 px on a CPU with native bf16 (benchmarks/scratch_cnn_experiments.md);
    fine-tuning a pretrained backbone keeps float32, where its measured accuracy and speed
    come from. A forced dtype the device cannot run is refused in one sentence."""
    import torch

    on_gpu = torch.device(device).type == "cuda"
    if precision == "auto":
        return autocast_dtype(device, cpu_bf16=from_scratch)
    if precision == "32":
        return None
    if precision == "16":
        if not on_gpu:
            raise ImgrecError("--precision 16 needs a GPU; on a CPU use bf16 or 32.")
        return torch.float16
    if on_gpu and not torch.cuda.is_bf16_supported():
        raise ImgrecError("this GPU has no bf16; use --precision 16 or 32.")
    return torch.bfloat16
