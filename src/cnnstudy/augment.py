"""The seed's augmentation on a whole uint8 batch at once, on the training device, and the loader
that feeds batches straight from the decode-once cache.

Per sample: horizontal flip (p=0.5), rotation uniform in ±20°, scale uniform in 0.8-1.2, the same
distributions as RandomHorizontalFlip + RandomRotation(20) + RandomAffine(0, scale=(0.8, 1.2)),
applied as one affine warp per image (affine_grid + grid_sample, nearest like torchvision's default).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .models import Stats


def sample_params(batch: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Random flip/angle/scale per sample, drawn from the CPU generator (seeded per epoch by fit)."""
    return {"flip": torch.rand(batch, generator=generator) < 0.5,
            "angle": torch.empty(batch).uniform_(-20.0, 20.0, generator=generator),
            "scale": torch.empty(batch).uniform_(0.8, 1.2, generator=generator)}


def affine_matrices(flip: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(B, 2, 3) maps from output to input coordinates: flip, then rotate counter-clockwise, then scale."""
    radians = angle * math.pi / 180
    cos, sin = torch.cos(radians) / scale, torch.sin(radians) / scale
    sign = torch.where(flip, -1.0, 1.0)
    zeros = torch.zeros_like(cos)
    # Output pixel p samples the input at Flip · Rot(angle)^-1 · p / scale (y axis points down).
    row_x = torch.stack([sign * cos, -sign * sin, zeros], 1)
    row_y = torch.stack([sin, cos, zeros], 1)
    return torch.stack([row_x, row_y], 1)


def warp(images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Apply per-sample affine params to a float (B, C, H, W) batch; outside pixels become 0."""
    theta = affine_matrices(**params).to(images.device, images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def normalize(images: torch.Tensor, stats: Stats) -> torch.Tensor:
    """uint8-range floats to the model's normalized input: (x / 255 - mean) / std, fused into one op."""
    mean = torch.tensor(stats[0], device=images.device).view(1, -1, 1, 1)
    std = torch.tensor(stats[1], device=images.device).view(1, -1, 1, 1)
    return images.mul_(1 / 255).sub_(mean).div_(std)


class CachedLoader:
    """Batches of (normalized images, labels, indices) read from a cached uint8 array.

    Images arrive NHWC from the cache; permuting them gives NCHW with channels_last strides for free.
    """

    def __init__(self, images: np.ndarray, labels: list[int], batch_size: int, shuffle: bool,
                 stats: Stats, device: torch.device, augment: bool = False,
                 generator: torch.Generator | None = None) -> None:
        self.images, self.labels = images, torch.as_tensor(labels, dtype=torch.long)
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.stats, self.device, self.generator = stats, device, generator

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self):
        count = len(self.labels)
        order = torch.randperm(count, generator=self.generator) if self.shuffle else torch.arange(count)
        for start in range(0, count, self.batch_size):
            index = order[start:start + self.batch_size]
            # Sorted reads are sequential on the memory map; the batch order itself does not matter.
            index = index.sort().values
            pixels = torch.from_numpy(np.ascontiguousarray(self.images[index.numpy()]))
            images = pixels.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
            if self.augment:
                images = warp(images, sample_params(len(index)))
            yield normalize(images, self.stats), self.labels[index].to(self.device), index
