"""Independent random streams, one per purpose, all derived from a run's seed.

Shuffling, augmentation, Dropout and model initialisation each draw from their own stream, so that
turning augmentation on does not change the batch order, and epoch k draws the same numbers whether
or not the run was interrupted before it. numpy's SeedSequence mixes (seed, purpose, keys) into
statistically independent seeds.
"""
from __future__ import annotations

import numpy as np
import torch

PURPOSES = ("init", "shuffle", "augment", "dropout", "train_sample", "repeat", "sweep", "confirm")


def derive_seed(seed: int, purpose: str, *keys: int) -> int:
    """A 63-bit seed for `purpose` (one of PURPOSES), further keyed by e.g. the epoch."""
    entropy = [seed, PURPOSES.index(purpose) + 1, *keys]
    high, low = np.random.SeedSequence(entropy).generate_state(2, np.uint32).tolist()
    return ((high << 32) | low) & (2**63 - 1)


def seeded_generator(seed: int, purpose: str, *keys: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, purpose, *keys))


def confirm_seed(seed: int) -> int:
    """The seed of a sweep's confirmation (the best setting and the base setting, repeat r0), which no
    trial used: a retrain of the winning trial with its own seed would carry the luck that made it win."""
    return derive_seed(seed, "confirm") % 2**31


def repeat_seed(seed: int, repeat: int) -> int:
    """The seed of repeat `repeat` of a run: the run's own seed for r0, then seeds derived from it."""
    return seed if repeat == 0 else derive_seed(seed, "repeat", repeat) % 2**31
