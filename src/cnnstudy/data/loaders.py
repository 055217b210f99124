"""Loaders of a split's parts, both yielding (images, labels, indices) and re-seeded per epoch:

- `CachedLoader` (data.loader: cached): batches straight from the decode-once cache, augmented on
  the training device;
- `TorchvisionLoader` (data.loader: torchvision): the classic DataLoader over PIL images.

Shuffling and augmentation draw from separate streams derived from the run's seed (seeds.py), and
neither touches torch's global generator, which belongs to Dropout.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..config import RunConfig
from ..seeds import derive_seed, seeded_generator
from .cache import cached_images
from .splits import PARTS, Items, Split
from .transforms import Stats, eval_transform, normalize, sample_params, train_transform, warp

TRAIN_EVAL_MIN = 256


class CachedLoader:
    """Batches of (normalized images, labels, indices) read from a cached uint8 array.

    Images arrive NHWC from the cache; permuting them gives NCHW with channels_last strides for free.
    """

    def __init__(self, images: np.ndarray, labels: list[int], batch_size: int, stats: Stats,
                 device: torch.device, shuffle: bool = False, augment: bool = False, seed: int = 0,
                 subset: torch.Tensor | None = None) -> None:
        self.images, self.labels = images, torch.as_tensor(labels, dtype=torch.long)
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.stats, self.device, self.seed, self.epoch = stats, device, seed, 0
        self.rows = torch.arange(len(self.labels)) if subset is None else subset  # which images it serves

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.rows) / self.batch_size)

    def __iter__(self):
        count = len(self.rows)
        order = (self.rows[torch.randperm(count, generator=seeded_generator(self.seed, "shuffle", self.epoch))]
                 if self.shuffle else self.rows)
        augment = seeded_generator(self.seed, "augment", self.epoch) if self.augment else None
        for start in range(0, count, self.batch_size):
            # Sorted reads are sequential on the memory map; the batch order itself does not matter.
            index = order[start:start + self.batch_size].sort().values
            pixels = torch.from_numpy(np.ascontiguousarray(self.images[index.numpy()]))
            if self.device.type == "cuda":
                pixels = pixels.pin_memory()  # lets the copy below overlap with compute
            images = pixels.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
            if augment is not None:
                images = warp(images, sample_params(len(index), augment))
            yield normalize(images, self.stats), self.labels[index].to(self.device, non_blocking=True), index


class ImageListDataset(Dataset):
    """Items of a split as (image tensor, label, index); the index maps predictions back to files."""

    def __init__(self, items: Items, source, transform, augment_seed: int | None = None) -> None:
        self.items, self.source, self.transform = items, source, transform
        self.augment_seed, self.epoch = augment_seed, 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        item_id, label = self.items[index]
        image = self.source.open(item_id)
        if self.augment_seed is None:
            return self.transform(image), label, index
        # Each sample draws from its own seed, so the result does not depend on which worker loads it.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.augment_seed, "augment", self.epoch, index))
            return self.transform(image), label, index


class TorchvisionLoader:
    """A DataLoader whose shuffling and augmentation are re-seeded by `set_epoch`."""

    def __init__(self, dataset: ImageListDataset, batch_size: int, shuffle: bool, num_workers: int,
                 seed: int, pin_memory: bool) -> None:
        self.dataset, self.seed, self.generator = dataset, seed, torch.Generator()
        self.loader = DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                                 generator=self.generator, pin_memory=pin_memory)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.epoch = epoch
        self.generator.manual_seed(derive_seed(self.seed, "shuffle", epoch))

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        return iter(self.loader)


def train_eval_rows(train_count: int, val_count: int, seed: int) -> torch.Tensor:
    """A fixed, seeded sample of training images, as many as validation has (at least
    TRAIN_EVAL_MIN), on which the verdict measures train accuracy like validation accuracy."""
    size = min(train_count, max(val_count, TRAIN_EVAL_MIN))
    return torch.randperm(train_count, generator=seeded_generator(seed, "train_sample"))[:size].sort().values


def build_loaders(cfg: RunConfig, split: Split, source, device: torch.device, stats: Stats) -> dict:
    """Loaders of train (shuffled, augmented as configured), of val/test where the split has them,
    and "train_eval": un-augmented training images in a fixed order, for the verdict."""
    size, batch = cfg.data.image_size, cfg.train.batch_size
    parts = {name: getattr(split, name) for name in PARTS if getattr(split, name)}
    augmented = {name: name == "train" and cfg.augment == "seed" for name in parts}
    sample = train_eval_rows(len(split.train), len(split.val), cfg.seed)
    if cfg.data.loader == "cached":
        arrays = {name: cached_images(source, [item for item, _ in items], size) for name, items in parts.items()}
        loaders = {name: CachedLoader(arrays[name], [label for _, label in items], batch, stats, device,
                                      shuffle=name == "train", augment=augmented[name], seed=cfg.seed)
                   for name, items in parts.items()}
        loaders["train_eval"] = CachedLoader(arrays["train"], [label for _, label in split.train], batch,
                                             stats, device, subset=sample)
        return loaders
    parts["train_eval"] = [split.train[i] for i in sample.tolist()]
    return {name: TorchvisionLoader(
                ImageListDataset(items, source, train_transform(size, cfg.augment, stats) if name == "train"
                                 else eval_transform(size, stats), cfg.seed if augmented.get(name) else None),
                batch, name == "train", cfg.data.num_workers, cfg.seed, pin_memory=device.type == "cuda")
            for name, items in parts.items()}
