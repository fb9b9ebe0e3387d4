"""The "fast" augmentation preset: crops, flips and colour jitter on whole batches.

Per-image torchvision transforms cost a few milliseconds an image on a CPU, which for a small
CNN trained from scratch is as much as the training step itself (benchmarks/
scratch_cnn_experiments.md). Here each image only gets a random square crop of its cached
short side (a slice, no copy of pixels); the rest happens once per batch: one affine grid
sample does random-resized crop, aspect change and horizontal flip for the whole batch, and
brightness / contrast / saturation jitter are a few tensor ops.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from imgrec.data.transforms import Preprocessing

SCALE = (0.25, 1.0)  # share of the square's area a crop keeps
RATIO = (3 / 4, 4 / 3)  # crop aspect ratios, as torchvision's RandomResizedCrop
JITTER = 0.25  # brightness, contrast and saturation factors drawn from 1 +- JITTER


class RandomSquare:
    """Per image: a random square crop as large as the short side, kept as uint8."""

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        side = min(h, w)
        top = int(torch.randint(0, h - side + 1, ()).item())
        left = int(torch.randint(0, w - side + 1, ()).item())
        return image[..., top : top + side, left : left + side]


class BatchAugment:
    """(N, 3, R, R) uint8 squares -> (N, 3, S, S) normalised float, randomly cropped,
    flipped and colour-jittered per image, in a handful of batched ops."""

    def __init__(self, p: Preprocessing, scale=SCALE, ratio=RATIO, jitter: float = JITTER):
        self.size = p.input_size
        self.mean = torch.tensor(p.mean).view(1, 3, 1, 1)
        self.std = torch.tensor(p.std).view(1, 3, 1, 1)
        self.scale, self.ratio, self.jitter = scale, ratio, jitter

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float().div_(255)
        n = x.shape[0]
        x = F.grid_sample(x, self._grid(n), mode="bilinear", align_corners=False)
        x = self._colour(x, n)
        return (x - self.mean) / self.std

    def _grid(self, n: int) -> torch.Tensor:
        """Affine sampling grids: each output pixel's place in its source square."""
        area = torch.empty(n).uniform_(*self.scale)
        log_ratio = torch.empty(n).uniform_(math.log(self.ratio[0]), math.log(self.ratio[1]))
        aspect = log_ratio.exp()
        width = (area * aspect).sqrt().clamp(max=1.0)  # fractions of the square's side
        height = (area / aspect).sqrt().clamp(max=1.0)
        centre_x = (torch.rand(n) * 2 - 1) * (1 - width)  # normalised coordinates, -1..1
        centre_y = (torch.rand(n) * 2 - 1) * (1 - height)
        flip = torch.where(torch.rand(n) < 0.5, -1.0, 1.0)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = width * flip
        theta[:, 0, 2] = centre_x
        theta[:, 1, 1] = height
        theta[:, 1, 2] = centre_y
        return F.affine_grid(theta, [n, 3, self.size, self.size], align_corners=False)

    def _colour(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """Brightness, contrast and saturation as torchvision's ColorJitter defines them."""
        if self.jitter <= 0:
            return x

        def factors() -> torch.Tensor:
            return torch.empty(n, 1, 1, 1).uniform_(1 - self.jitter, 1 + self.jitter)

        x = x * factors()
        gray = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        x = gray.mean((2, 3), keepdim=True) + factors() * (x - gray.mean((2, 3), keepdim=True))
        gray = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        x = gray + factors() * (x - gray)
        return x.clamp_(0.0, 1.0)
