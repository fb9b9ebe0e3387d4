"""Batched prediction over image files: threaded decoding, one forward pass per batch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from imgrec.data.cache import decode_batch_for_inference
from imgrec.data.dataset import Skipped
from imgrec.data.transforms import Preprocessing


@torch.inference_mode()
def predict_probabilities(
    model: torch.nn.Module,
    paths: Sequence[Path],
    preprocessing: Preprocessing,
    batch_size: int = 32,
    temperature: float = 1.0,
) -> Iterator[tuple[list[Path], np.ndarray, list[Skipped]]]:
    """Yield (readable paths, probabilities (n, C), skipped files) chunk by chunk.

    Streaming keeps memory flat for folders of any size; unreadable files are reported, not fatal.
    """
    model.eval()
    for start in range(0, len(paths), batch_size):
        chunk = list(paths[start : start + batch_size])
        x, ok, skipped = decode_batch_for_inference(chunk, preprocessing)
        if not ok:
            yield [], np.zeros((0, 0), dtype=np.float32), skipped
            continue
        yield [chunk[i] for i in ok], forward_probabilities(model, x, temperature), skipped


@torch.inference_mode()
def forward_probabilities(
    model: torch.nn.Module, x: torch.Tensor, temperature: float = 1.0
) -> np.ndarray:
    """Softmax probabilities (n, C) for a normalised batch; shared by predict and serve."""
    logits = model(x.contiguous(memory_format=torch.channels_last)).float()
    return torch.softmax(logits / temperature, dim=1).numpy()
