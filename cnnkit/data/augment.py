"""Batched augmentation on the device: one affine warp for the whole batch.

Per-sample PIL transforms in DataLoader workers are what makes the textbook
recipe slow. Here a batch of N images (or clips) gets N random affine
matrices, one ``affine_grid`` + ``grid_sample`` call warps them all on the
device the batch is already on, and a clip gets the same warp in every frame
(so motion stays motion).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class BatchAugment:
    """Random shift (fraction of the size), rotation (degrees), scale and optional h-flip."""

    shift: float = 0.1
    rotate: float = 10.0
    scale: float = 0.1
    hflip: bool = False

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Float batch (N, C, H, W) or (N, C, T, H, W) -> the same shape, warped.

        Pixels moved in from outside the image are zero (apply before
        normalising so that zero is black).
        """
        n = x.shape[0]
        dev = x.device

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return torch.rand(n, generator=generator).mul_(hi - lo).add_(lo).to(dev)

        angle = uniform(-self.rotate, self.rotate) * (math.pi / 180.0)
        scale = 1.0 + uniform(-self.scale, self.scale)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        # affine_grid works in [-1, 1] coordinates: a shift of f of the size is 2f.
        tx, ty = uniform(-2 * self.shift, 2 * self.shift), uniform(-2 * self.shift, 2 * self.shift)
        flip = torch.ones(n, device=dev)
        if self.hflip:
            flip = torch.where(torch.rand(n, generator=generator).to(dev) < 0.5, -flip, flip)
        theta = torch.stack(
            [torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1
        ).to(x.dtype)  # (N, 2, 3)

        shape = x.shape
        flat = x.reshape(n, -1, shape[-2], shape[-1])  # clips: frames become channels
        grid = F.affine_grid(theta, list(flat.shape), align_corners=False)
        out = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out.reshape(shape)
