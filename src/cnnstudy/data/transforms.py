"""Input pipelines side by side (as torchvision's references/classification/presets.py does): the
seed's training augmentation and the plain evaluation resize, each in two forms that see the same
distributions:

- per PIL image, for the torchvision loader: Resize, RandomHorizontalFlip, RandomRotation(20),
  RandomAffine(scale=(0.8, 1.2)), ToTensor, Normalize;
- on a whole uint8 batch on the training device, for the cached loader: one affine warp per image
  (affine_grid + grid_sample, nearest like torchvision's default), then normalization.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision import transforms as T

from ..config import AugmentConfig, augment_settings

Stats = tuple[tuple[float, ...], tuple[float, ...]]  # (mean, std) per channel
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize(size: int, resample: str = "bilinear") -> T.Resize:
    """Resize((size, size)) with the filter the model's weights expect (a timm pretrained_cfg's
    interpolation); the cache resizes with the same PIL filter."""
    return T.Resize((size, size), interpolation=T.InterpolationMode(resample))


def train_transform(size: int, augment: "str | AugmentConfig", stats: Stats, resample: str = "bilinear") -> T.Compose:
    """The training pipeline per PIL image: `seed` is the seed's (resize, flip, rotate ±20°, scale
    0.8-1.2, normalize); parts follow data/policies.py's order with torchvision's own transforms
    (mixup/cutmix act on batches: the loader's)."""
    settings = augment_settings(augment)
    steps = [resize(size, resample)]
    if settings.policy == "seed":
        steps += [T.RandomHorizontalFlip(), T.RandomRotation(20), T.RandomAffine(degrees=0, scale=(0.8, 1.2))]
    if settings.crop != "none":  # of the resized image, as the cached loader crops its cached pixels
        steps.append(T.RandomResizedCrop(size))
    if settings.flips:
        steps.append(T.RandomHorizontalFlip())
    steps += {"trivialaugment": [T.TrivialAugmentWide()], "randaugment": [T.RandAugment()],
              "autoaugment": [T.AutoAugment()]}.get(settings.policy, [])
    if settings.color:
        steps.append(T.ColorJitter(settings.color, settings.color, settings.color))
    steps += [T.ToTensor(), T.Normalize(*stats)]
    if settings.erase:
        steps.append(T.RandomErasing(settings.erase))
    return T.Compose(steps)


def eval_transform(size: int, stats: Stats, resample: str = "bilinear", crop_pct: float | None = None) -> T.Compose:
    """Resize((size, size)); with `crop_pct` (a timm model's), timm's eval transform instead: the
    shorter side to floor(size / crop_pct), then CenterCrop(size)."""
    steps = [resize(size, resample)] if crop_pct is None else \
        [T.Resize(math.floor(size / crop_pct), interpolation=T.InterpolationMode(resample)), T.CenterCrop(size)]
    return T.Compose([*steps, T.ToTensor(), T.Normalize(*stats)])


def sample_params(batch: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Random flip/angle/scale per sample, drawn from the augmentation stream's CPU generator."""
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
    return apply_affine(images, affine_matrices(**params).to(images.device, images.dtype))


def apply_affine(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Warp a float (B, C, H, W) batch by (B, 2, 3) matrices already on its device."""
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def normalizer(stats: Stats, device: torch.device):
    """uint8-range floats to the model's normalized input, (x / 255 - mean) / std in place, with the
    constants made on the device once."""
    mean = torch.tensor(stats[0], device=device).view(1, -1, 1, 1)
    std = torch.tensor(stats[1], device=device).view(1, -1, 1, 1)
    return lambda images: images.mul_(1 / 255).sub_(mean).div_(std)


def normalize(images: torch.Tensor, stats: Stats) -> torch.Tensor:
    return normalizer(stats, images.device)(images)
