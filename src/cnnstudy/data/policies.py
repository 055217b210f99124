"""Training augmentation on a whole batch on the training device, every image with its own draw.

torchvision.transforms.v2 applied to a batch tensor draws once per batch (one operation, one
magnitude, one crop for all its images), and kornia's auto policies pick their sub-policy per batch
too; both would make a batch of 32 images one augmentation. So the draws are made here, per image,
for the whole epoch at once from the run's augmentation stream (numpy, seeded by run seed, epoch and
part), and the operations are applied grouped by operation with per-image magnitudes. The operation
tables (which operations, their magnitude bins) are torchvision's own, so TrivialAugmentWide,
RandAugment and AutoAugment's ImageNet policy search the spaces torchvision's PIL versions do
(the torchvision loader uses those, image by image).

Order, as torchvision's reference presets: random-resized crop and flip, the policy, colour jitter,
normalization (by the loader), random erasing, then mixup or cutmix on the batch (soft labels).
Images are floats on the uint8 scale (0-255) until normalization.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import transforms as T
from torchvision.transforms import v2

from ..config import AugmentConfig
from ..seeds import derive_seed, seeded_generator
from .transforms import affine_matrices, apply_affine, sample_params

SLOTS = {"trivialaugment": 1, "randaugment": 2, "autoaugment": 2}  # operations per image
RANDAUGMENT_MAGNITUDE, BINS = 9, 31  # torchvision's defaults
PART_KEYS = {"policy": 1, "crop": 2, "color": 3, "erase": 4, "mix": 5}


def operation_space(policy: str, size: int) -> dict[str, tuple[torch.Tensor, bool]]:
    """torchvision's table for `policy`: operation -> (magnitudes by bin, signed)."""
    if policy == "trivialaugment":
        return T.TrivialAugmentWide()._augmentation_space(BINS)
    if policy == "randaugment":
        return T.RandAugment()._augmentation_space(BINS, (size, size))
    return T.AutoAugment()._augmentation_space(10, (size, size))


def _policy_draws(policy: str, size: int, count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per image and slot: the operation (its name's index in the space), magnitude and whether it applies."""
    space = operation_space(policy, size)
    names = list(space)
    slots = SLOTS[policy]
    signs = np.where(rng.random((count, slots)) < 0.5, -1.0, 1.0)
    if policy == "autoaugment":
        table = T.AutoAugment()._get_policies(T.AutoAugmentPolicy.IMAGENET)
        chosen = rng.integers(len(table), size=count)
        applies = rng.random((count, slots))
        ops, mags, active = np.zeros((count, slots), int), np.zeros((count, slots)), np.zeros((count, slots), bool)
        for i, sub in enumerate(chosen):
            for j, (name, probability, bin_) in enumerate(table[sub]):
                magnitudes, signed = space[name]
                ops[i, j], active[i, j] = names.index(name), applies[i, j] <= probability
                mags[i, j] = float(magnitudes[bin_]) * (signs[i, j] if signed else 1.0) if bin_ is not None else 0.0
        return {"op": ops, "magnitude": mags, "active": active, "names": names}
    ops = rng.integers(len(names), size=(count, slots))
    bins = rng.integers(BINS, size=(count, slots)) if policy == "trivialaugment" else \
        np.full((count, slots), RANDAUGMENT_MAGNITUDE)
    mags = np.zeros((count, slots))
    for k, name in enumerate(names):
        magnitudes, signed = space[name]
        if magnitudes.ndim:
            where = ops == k
            mags[where] = magnitudes.numpy()[bins[where]] * (signs[where] if signed else 1.0)
    return {"op": ops, "magnitude": mags, "active": np.ones((count, slots), bool), "names": names}


TRIES = 10  # torchvision's RandomResizedCrop and RandomErasing draw up to 10 boxes before giving up


def _box_draws(count: int, rng: np.random.Generator, scale: tuple[float, float], ratio: tuple[float, float],
               size: int, inside: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image of side `size`: a box's width and height as fractions of the side and whether one was
    found, drawn as torchvision's get_params do: up to 10 tries of an area fraction in `scale` and a
    log-uniform aspect ratio in `ratio`, rounded to pixels, the first that fits kept. `inside`: fits
    within the image (RandomResizedCrop; without a fit, the whole image, its centre crop for a
    square); else strictly smaller than it (RandomErasing; without a fit, no box)."""
    area = rng.uniform(*scale, size=(count, TRIES))
    aspect = np.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]), size=(count, TRIES)))
    width, height = np.round(size * np.sqrt(area * aspect)), np.round(size * np.sqrt(area / aspect))
    fits = (width > 0) & (height > 0) & ((width <= size) & (height <= size) if inside else
                                         (width < size) & (height < size))
    first, found = fits.argmax(1), fits.any(1)
    rows = np.arange(count)
    width = np.where(found, width[rows, first], size) / size
    height = np.where(found, height[rows, first], size) / size
    return width, height, found


def draw_epoch(settings: AugmentConfig, seed: int, epoch: int, count: int, size: int, batches: int) -> dict:
    """Every random choice of an epoch of `count` positions in `batches` batches, each part from
    its own stream, so that adding a part does not change the draws of another."""
    def rng(part: str) -> np.random.Generator:
        return np.random.default_rng(derive_seed(seed, "augment", epoch, PART_KEYS[part]))

    draws: dict = {}
    if settings.policy == "seed":  # the seed's stream, which runs made before parts existed drew from: same numbers
        draws["seed"] = affine_matrices(**sample_params(count, seeded_generator(seed, "augment", epoch)))
    elif settings.policy in SLOTS:
        draws["policy"] = _policy_draws(settings.policy, size, count, rng("policy"))
    if settings.crop != "none" or settings.flips:
        crop = rng("crop")
        width, height, _ = _box_draws(count, crop, (0.08, 1.0), (3 / 4, 4 / 3), size) if settings.crop != "none" \
            else (np.ones(count), np.ones(count), None)
        draws["crop"] = {"width": width, "height": height, "x": crop.uniform(-1, 1, count), "y": crop.uniform(-1, 1, count),
                         "flip": crop.random(count) < 0.5 if settings.flips else np.zeros(count, bool)}
    if settings.color:
        draws["color"] = rng("color").uniform(1 - settings.color, 1 + settings.color, size=(count, 3))
    if settings.erase:
        erase = rng("erase")
        # RandomErasing's ratio is height / width, RandomResizedCrop's width / height
        height, width, found = _box_draws(count, erase, (0.02, 0.33), (0.3, 3.3), size, inside=False)
        draws["erase"] = {"on": (erase.random(count) < settings.erase) & found, "width": width, "height": height,
                          "x": erase.random(count), "y": erase.random(count)}
    if settings.mixes:
        draws["mix"] = mix_draws(settings, seed, epoch, batches)
    return draws


def mix_draws(settings: AugmentConfig, seed: int, epoch: int, batches: int) -> dict:
    """The epoch's mixup/cutmix draws alone (the torchvision loader's, whose other parts are torchvision's)."""
    return _mix_draws(settings, batches, np.random.default_rng(derive_seed(seed, "augment", epoch, PART_KEYS["mix"])))


def _mix_draws(settings: AugmentConfig, batches: int, rng: np.random.Generator) -> dict:
    """Per batch: mixup or cutmix (half each when both are on, as timm's switch), its weight, a box."""
    use_cutmix = rng.random(batches) < (0.5 if settings.mixup and settings.cutmix else float(settings.cutmix > 0))
    alpha = np.where(use_cutmix, settings.cutmix or 1.0, settings.mixup or 1.0)
    return {"cutmix": use_cutmix, "lam": rng.beta(alpha, alpha), "x": rng.random(batches), "y": rng.random(batches),
            "pairing": rng.integers(2**62, size=batches)}


def partners(count: int, seed: int) -> torch.Tensor:
    """Whom each image of a batch is mixed with: a random cycle through the batch, so no image is its own
    partner and partners are not neighbours (a batch is read sorted by index, which is class order)."""
    cycle = torch.randperm(count, generator=torch.Generator().manual_seed(int(seed)))
    partner = torch.empty(count, dtype=torch.long)
    partner[cycle] = cycle.roll(-1)
    return partner


def _take(draws: dict, positions: torch.Tensor) -> dict:
    index = positions.numpy()
    return {key: value[index] if isinstance(value, np.ndarray) else value for key, value in draws.items()}


def augment_pixels(images: torch.Tensor, draws: dict, positions: torch.Tensor) -> torch.Tensor:
    """The batch at `positions` of the epoch, before normalization: crop and flip, the policy, colour."""
    if "seed" in draws:
        images = apply_affine(images, draws["seed"][positions].to(images.device, images.dtype))
    if "crop" in draws:
        images = crop_and_flip(images, _take(draws["crop"], positions))
    if "policy" in draws:
        images = apply_policy(images, _take(draws["policy"], positions))
    if "color" in draws:
        factors = torch.as_tensor(draws["color"][positions.numpy()], dtype=images.dtype, device=images.device)
        images = jitter(images, factors)
    return images


def crop_and_flip(images: torch.Tensor, crop: dict) -> torch.Tensor:
    """Random-resized crop (bilinear, as torchvision's) and horizontal flip, as one warp per image."""
    if (crop["width"] == 1).all() and (crop["height"] == 1).all():  # flip only: exact, no resampling
        flip = torch.as_tensor(crop["flip"], device=images.device).view(-1, 1, 1, 1)
        return torch.where(flip, images.flip(-1), images)
    width, height = (torch.as_tensor(crop[key], dtype=torch.float32) for key in ("width", "height"))
    sign = torch.where(torch.as_tensor(crop["flip"]), -1.0, 1.0)
    cx = torch.as_tensor(crop["x"], dtype=torch.float32) * (1 - width)
    cy = torch.as_tensor(crop["y"], dtype=torch.float32) * (1 - height)
    zeros = torch.zeros_like(width)
    theta = torch.stack([torch.stack([sign * width, zeros, cx], 1), torch.stack([zeros, height, cy], 1)], 1)
    grid = F.affine_grid(theta.to(images.device, images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def jitter(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast, saturation by per-image factors (B, 3), in this order."""
    images = blend(images, torch.zeros_like(images[:, :1]), factors[:, 0])
    images = blend(images, grayscale(images).mean((-2, -1), keepdim=True), factors[:, 1])
    return blend(images, grayscale(images), factors[:, 2])


def grayscale(images: torch.Tensor) -> torch.Tensor:
    r, g, b = images.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """factor x images + (1 - factor) x other, per image, kept on the uint8 scale (truncated as torchvision's)."""
    factor = factor.to(images.dtype).view(-1, 1, 1, 1)
    return (factor * images + (1 - factor) * other).clamp_(0, 255).floor_()


def sharpness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    kernel = torch.ones(3, 3, dtype=images.dtype, device=images.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / kernel.sum()).expand(images.shape[1], 1, 3, 3)
    blurred = images.clone()
    blurred[..., 1:-1, 1:-1] = F.conv2d(images, kernel, groups=images.shape[1]).round_()
    return blend(images, blurred, factor)


def geometric(name: str, magnitude: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 2, 3) output-to-input maps of torchvision's geometric operations (shear about the
    top-left corner, translation in pixels, rotation counter-clockwise about the centre)."""
    if name == "Rotate":
        return affine_matrices(torch.zeros(len(magnitude), dtype=torch.bool), magnitude, torch.ones_like(magnitude))
    one, zero = torch.ones_like(magnitude), torch.zeros_like(magnitude)
    if name == "ShearX":
        rows = [[one, -magnitude, -magnitude], [zero, one, zero]]
    elif name == "ShearY":
        rows = [[one, zero, zero], [-magnitude, one, -magnitude]]
    else:
        shift = -2 * magnitude.trunc() / size  # torchvision translates by int(magnitude) pixels
        rows = [[one, zero, shift], [zero, one, zero]] if name == "TranslateX" else [[one, zero, zero], [zero, one, shift]]
    return torch.stack([torch.stack(row, 1) for row in rows], 1)


def apply_operation(name: str, images: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """One of torchvision's policy operations on a float batch, each image with its own magnitude."""
    if name in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"):
        return apply_affine(images, geometric(name, magnitude, images.shape[-1]).to(images.device, images.dtype))
    factor = (1 + magnitude).to(images.device)
    if name == "Brightness":
        return blend(images, torch.zeros_like(images[:, :1]), factor)
    if name == "Color":
        return blend(images, grayscale(images), factor)
    if name == "Contrast":
        return blend(images, grayscale(images).floor().mean((-2, -1), keepdim=True), factor)
    if name == "Sharpness":
        return sharpness(images, factor)
    if name == "Posterize":
        step = (2.0 ** (8 - magnitude.int())).to(images.device, images.dtype).view(-1, 1, 1, 1)
        return (images / step).floor_() * step
    if name == "Solarize":
        threshold = magnitude.to(images.device, images.dtype).view(-1, 1, 1, 1)
        return torch.where(images >= threshold, 255 - images, images)
    if name == "Invert":
        return 255 - images
    as_bytes = images.to(torch.uint8)
    if name == "AutoContrast":
        return v2.functional.autocontrast(as_bytes).to(images.dtype)
    if name == "Equalize":
        return v2.functional.equalize(as_bytes).to(images.dtype)
    return images  # Identity


def apply_policy(images: torch.Tensor, draws: dict) -> torch.Tensor:
    """Each slot's operations, grouped by operation: every image gets its own operation and magnitude."""
    images = images.clone()
    for slot in range(draws["op"].shape[1]):
        ops, active = draws["op"][:, slot], draws["active"][:, slot]
        for op in np.unique(ops[active]):
            if draws["names"][op] == "Identity":
                continue
            chosen = np.flatnonzero((ops == op) & active)
            index = torch.as_tensor(chosen, device=images.device)
            magnitude = torch.as_tensor(draws["magnitude"][chosen, slot], dtype=torch.float32)
            images[index] = apply_operation(draws["names"][op], images[index], magnitude)
    return images


def erase(images: torch.Tensor, draws: dict, positions: torch.Tensor) -> torch.Tensor:
    """Random erasing on normalized images: a box of each chosen image set to 0 (torchvision's value)."""
    box = _take(draws, positions)
    if not box["on"].any():
        return images
    size = images.shape[-1]
    height = np.maximum(1, np.round(box["height"] * size)).astype(int)
    width = np.maximum(1, np.round(box["width"] * size)).astype(int)
    top, left = (box["y"] * (size - height + 1)).astype(int), (box["x"] * (size - width + 1)).astype(int)
    coords = torch.arange(size, device=images.device)
    edges = {key: torch.as_tensor(value, device=images.device).view(-1, 1)
             for key, value in (("top", top), ("bottom", top + height), ("left", left), ("right", left + width))}
    rows = (coords >= edges["top"]) & (coords < edges["bottom"])
    cols = (coords >= edges["left"]) & (coords < edges["right"])
    mask = rows[:, :, None] & cols[:, None, :] & torch.as_tensor(box["on"], device=images.device).view(-1, 1, 1)
    return images.masked_fill(mask.unsqueeze(1), 0.0)


def mix(images: torch.Tensor, labels: torch.Tensor, draws: dict, batch: int, num_classes: int):
    """Mixup or cutmix of each image with a random partner from its batch (torchvision's v2
    MixUp/CutMix take the next image of a shuffled batch): the images and soft labels, weighted by
    the share each image keeps."""
    lam = float(draws["lam"][batch])
    order = partners(len(labels), draws["pairing"][batch]).to(images.device)
    targets = F.one_hot(labels, num_classes).to(images.dtype)
    if draws["cutmix"][batch]:
        size = images.shape[-1]
        side = int(size * math.sqrt(1 - lam))
        cy, cx = int(draws["y"][batch] * size), int(draws["x"][batch] * size)
        top, bottom = max(cy - side // 2, 0), min(cy + side // 2, size)
        left, right = max(cx - side // 2, 0), min(cx + side // 2, size)
        images = images.clone()
        images[..., top:bottom, left:right] = images[order][..., top:bottom, left:right]
        lam = 1 - (bottom - top) * (right - left) / size**2
    else:
        images = lam * images + (1 - lam) * images[order]
    return images, lam * targets + (1 - lam) * targets[order]
