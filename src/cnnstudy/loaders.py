"""Transforms and DataLoaders: the seed's PIL augmentation for training, plain resize for evaluation."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from .models import Stats
from .splits import Items


def train_transform(size: int, augment: str, stats: Stats) -> T.Compose:
    """The seed's training pipeline: resize, flip, rotate ±20°, scale 0.8-1.2, normalize."""
    if augment == "none":
        return eval_transform(size, stats)
    return T.Compose([
        T.Resize((size, size)),
        T.RandomHorizontalFlip(),
        T.RandomRotation(20),
        T.RandomAffine(degrees=0, scale=(0.8, 1.2)),
        T.ToTensor(),
        T.Normalize(*stats),
    ])


def eval_transform(size: int, stats: Stats) -> T.Compose:
    return T.Compose([T.Resize((size, size)), T.ToTensor(), T.Normalize(*stats)])


class ImageListDataset(Dataset):
    """Items of a split as (image tensor, label, index); the index maps predictions back to files."""

    def __init__(self, items: Items, source, transform) -> None:
        self.items = items
        self.source = source
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        item_id, label = self.items[index]
        return self.transform(self.source.open(item_id)), label, index


def _seed_worker(worker_id: int) -> None:
    import random

    import numpy as np

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int,
                generator: torch.Generator | None = None) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      generator=generator, worker_init_fn=_seed_worker if num_workers else None,
                      pin_memory=torch.cuda.is_available(), persistent_workers=False)
