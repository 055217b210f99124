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
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset, WeightedRandomSampler

from ..config import AugmentConfig, RunConfig, StudyError, augment_settings
from ..seeds import derive_seed, seeded_generator
from .cache import cached_images
from .policies import augment_pixels, draw_epoch, erase, mix, mix_draws
from .splits import PARTS, Items, Split
from .transforms import Stats, eval_transform, normalizer, train_transform

TRAIN_EVAL_MIN = 256


class CachedLoader:
    """Batches of (normalized images, labels, indices) read from a cached uint8 array.

    Images arrive NHWC from the cache; permuting them gives NCHW with channels_last strides for free.
    Under data parallelism (`world` > 1) every rank draws the same shuffled order; each global batch
    of `batch_size` images is split into `world` equal parts, one per rank, the epoch padded like
    DistributedSampler so that every rank gets as many batches. Evaluation loaders give each rank a
    disjoint shard (every `world`-th image), so that every image is scored exactly once.
    """

    def __init__(self, images: np.ndarray, labels: list[int], batch_size: int, stats: Stats,
                 device: torch.device, shuffle: bool = False, augment: AugmentConfig | None = None, seed: int = 0,
                 subset: torch.Tensor | None = None, rank: int = 0, world: int = 1, balanced: bool = False,
                 num_classes: int = 0) -> None:
        self.images, self.labels = images, torch.as_tensor(labels, dtype=torch.long)
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.balanced, self.num_classes = balanced, num_classes or int(self.labels.max()) + 1
        self.device, self.seed, self.epoch, self.rank, self.world = device, seed, 0, rank, world
        self.normalize = normalizer(stats, device)
        rows = torch.arange(len(self.labels)) if subset is None else subset  # which images it serves
        self.rows = rows if shuffle else rows[rank::world]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        count = len(self.rows) + ((-len(self.rows)) % self.world if self.shuffle else 0)
        return math.ceil(count / self.batch_size)

    def _order(self) -> torch.Tensor:
        if not self.shuffle:
            return self.rows
        generator = seeded_generator(self.seed, "shuffle", self.epoch)
        if self.balanced:  # each class equally likely per draw, the epoch as long as the set
            counts = torch.bincount(self.labels[self.rows], minlength=self.num_classes).float()
            weights = 1 / counts[self.labels[self.rows]]
            order = self.rows[torch.multinomial(weights, len(self.rows), replacement=True, generator=generator)]
        else:
            order = self.rows[torch.randperm(len(self.rows), generator=generator)]
        pad = (-len(order)) % self.world
        return torch.cat([order, order[:pad]]) if pad else order

    def __iter__(self):
        order = self._order()
        draws = draw_epoch(self.augment, self.seed, self.epoch, len(order), self.images.shape[1], len(self)) \
            if self.augment else {}
        for batch, start in enumerate(range(0, len(order), self.batch_size)):
            positions = torch.arange(start, min(start + self.batch_size, len(order)))
            if self.shuffle and self.world > 1:
                positions = torch.tensor_split(positions, self.world)[self.rank]
            # Sorted reads are sequential on the memory map; the batch order itself does not matter (nor
            # which of the batch's draws an image gets: they are independent).
            index = order[positions].sort().values
            pixels = torch.from_numpy(np.ascontiguousarray(self.images[index.numpy()]))
            if self.device.type == "cuda":
                pixels = pixels.pin_memory()  # lets the copy below overlap with compute
            images = pixels.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
            labels = self.labels[index].to(self.device, non_blocking=True)
            if draws:
                images = augment_pixels(images, draws, positions)
            images = self.normalize(images)
            if "erase" in draws:
                images = erase(images, draws["erase"], positions)
            if "mix" in draws:
                images, labels = mix(images, labels, draws["mix"], batch, self.num_classes)
            yield images, labels, index


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
    """A DataLoader whose shuffling and augmentation are re-seeded by `set_epoch`. Under data
    parallelism the training set goes through DistributedSampler (batch_size / world per rank),
    and evaluation sets are sharded without padding, so that every image is scored once."""

    def __init__(self, dataset: ImageListDataset, batch_size: int, shuffle: bool, num_workers: int,
                 seed: int, pin_memory: bool, rank: int = 0, world: int = 1, balanced: bool = False,
                 mixing: AugmentConfig | None = None, num_classes: int = 0) -> None:
        self.dataset, self.seed, self.generator, self.sampler = dataset, seed, torch.Generator(), None
        self.mixing, self.num_classes, self.epoch = mixing, num_classes, 0
        if balanced and world > 1:
            raise StudyError("train.sampler: balanced is not available with data.loader: torchvision under "
                             "torchrun; use data.loader: cached (the default)")
        if balanced:
            labels = torch.as_tensor([label for _, label in dataset.items])
            weights = 1 / torch.bincount(labels, minlength=num_classes).float().clamp(min=1)[labels]
            self.sampler = WeightedRandomSampler(weights, len(labels), replacement=True, generator=self.generator)
            source = dataset
        elif world > 1 and shuffle:
            self.sampler = DistributedSampler(dataset, world, rank, shuffle=True, seed=derive_seed(seed, "shuffle"))
            source, batch_size = dataset, batch_size // world
        else:
            source = dataset if world == 1 else Subset(dataset, range(rank, len(dataset), world))
        self.loader = DataLoader(source, batch_size=batch_size, shuffle=shuffle and self.sampler is None,
                                 sampler=self.sampler, num_workers=num_workers, generator=self.generator,
                                 pin_memory=pin_memory)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.epoch = self.epoch = epoch
        self.generator.manual_seed(derive_seed(self.seed, "shuffle", epoch))
        if isinstance(self.sampler, DistributedSampler):
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        if self.mixing is None:
            return iter(self.loader)
        return self._mixed()

    def _mixed(self):
        draws = mix_draws(self.mixing, self.seed, self.epoch, len(self))
        for batch, (images, labels, index) in enumerate(self.loader):
            yield *mix(images, labels, draws, batch, self.num_classes), index


def train_eval_rows(train_count: int, val_count: int, seed: int) -> torch.Tensor:
    """A fixed, seeded sample of training images, as many as validation has (at least
    TRAIN_EVAL_MIN), on which the verdict measures train accuracy like validation accuracy."""
    size = min(train_count, max(val_count, TRAIN_EVAL_MIN))
    return torch.randperm(train_count, generator=seeded_generator(seed, "train_sample"))[:size].sort().values


def train_eval_items(split: Split, seed: int) -> list:
    """The training images the verdict measures train accuracy on, as (item, label)."""
    return [split.train[i] for i in train_eval_rows(len(split.train), len(split.val), seed).tolist()]


def build_loaders(cfg: RunConfig, split: Split, source, device: torch.device, stats: Stats,
                  rank: int = 0, world: int = 1, parts: tuple[str, ...] = PARTS, progress: bool = True,
                  resample: str = "bilinear", crop_pct: float | None = None) -> dict:
    """Loaders of train (shuffled, augmented as configured), of val/test where the split has them,
    and "train_eval": un-augmented training images in a fixed order, for the verdict. With
    `world` > 1, each rank's share (train.batch_size stays the global batch). `parts`: which of
    train/val/test to load (a sweep's trials never load the test split); `progress`: a bar while
    the cache is built (off in parallel workers); `resample`: the resize filter the model expects;
    `crop_pct`: evaluation's centre crop (a timm model's), for val, test and train_eval."""
    size, batch, classes = cfg.data.image_size, cfg.train.batch_size, len(split.classes)
    parts = {name: getattr(split, name) for name in PARTS if name in parts and getattr(split, name)}
    settings = augment_settings(cfg.augment)
    balanced = cfg.train.sampler == "balanced"
    if cfg.data.loader == "cached":
        def cached(items: list, crop: float | None):
            return cached_images(source, [item for item, _ in items], size, progress=progress, resample=resample,
                                 crop_pct=crop)
        arrays = {name: cached(items, None if name == "train" else crop_pct) for name, items in parts.items()}
        loaders = {name: CachedLoader(arrays[name], [label for _, label in items], batch, stats, device,
                                      shuffle=name == "train", augment=settings if name == "train" else None,
                                      seed=cfg.seed, rank=rank, world=world, balanced=balanced and name == "train",
                                      num_classes=classes)
                   for name, items in parts.items()}
        if crop_pct is None:  # rows of the training array already cached
            sample = train_eval_rows(len(split.train), len(split.val), cfg.seed)
            loaders["train_eval"] = CachedLoader(arrays["train"], [label for _, label in split.train], batch, stats,
                                                 device, subset=sample, rank=rank, world=world, num_classes=classes)
        else:  # the sample alone, at evaluation's crop, as val is seen
            sampled = train_eval_items(split, cfg.seed)
            loaders["train_eval"] = CachedLoader(cached(sampled, crop_pct), [label for _, label in sampled], batch,
                                                 stats, device, rank=rank, world=world, num_classes=classes)
        return loaders
    parts["train_eval"] = train_eval_items(split, cfg.seed)
    augmented = settings.changes_pixels
    return {name: TorchvisionLoader(
                ImageListDataset(items, source, train_transform(size, cfg.augment, stats, resample) if name == "train"
                                 else eval_transform(size, stats, resample, crop_pct),
                                 cfg.seed if name == "train" and augmented else None),
                batch, name == "train", cfg.data.num_workers, cfg.seed, device.type == "cuda", rank, world,
                balanced=balanced and name == "train", mixing=settings if name == "train" and settings.mixes else None,
                num_classes=classes)
            for name, items in parts.items()}
