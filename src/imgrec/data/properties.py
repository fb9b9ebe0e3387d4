"""Input properties a monitor tracks: brightness, contrast and sharpness of what the model saw.

They are measured on the model input (after resize, crop and normalisation are undone), so a
folder of photos, a `predict` run and the server give the same numbers for the same image,
and a new camera that is darker, softer or flatter shows up as a shift in one of them.
"""

from __future__ import annotations

import numpy as np
import torch

from imgrec.data.preprocess import Preprocessing

PROPERTIES = ("brightness", "contrast", "sharpness")
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as PIL's "L" mode


def input_properties(batch: torch.Tensor | np.ndarray, preprocessing: Preprocessing) -> np.ndarray:
    """(N, 3) float32: mean luma (0..1), luma standard deviation (0..0.5) and sharpness, the
    standard deviation of the Laplacian of luma (blur lowers it, noise and JPEG blocks raise it),
    for a normalised (N, 3, H, W) batch as the engines take it."""
    x = torch.as_tensor(batch, dtype=torch.float32)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a (N, 3, H, W) batch, got shape {tuple(x.shape)}")
    mean = torch.tensor(preprocessing.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(preprocessing.std, dtype=torch.float32).view(1, 3, 1, 1)
    rgb = (x * std + mean).clamp(0.0, 1.0)
    luma = (rgb * torch.tensor(_LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    laplacian = torch.nn.functional.conv2d(luma, kernel)
    out = torch.stack([luma.mean((1, 2, 3)), luma.std((1, 2, 3)), laplacian.std((1, 2, 3))], dim=1)
    return out.numpy().astype(np.float32)
