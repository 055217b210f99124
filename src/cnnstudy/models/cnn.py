"""The seed study's CNN family, built from scratch: four 3x3 convs, each ReLU + 2x2 max-pool, global
pooling, two fully connected layers (BatchNorm and Dropout in the regularized variant)."""
from __future__ import annotations

import torch
from torch import nn

# Four (3x3 valid conv + 2x2 pool) stages need 46 px to leave a 1x1 map: 46-2=44, 22-2=20, 10-2=8, 4-2=2 -> 1.
FOUR_CONV_MIN_SIZE = 46


class FourConvCNN(nn.Module):
    """`seed_name` is the class name the seed gave each variant, kept so `print(model)` matches it.

    Each stage is conv -> (BatchNorm) -> ReLU -> 2x2 max-pool, as the seed wrote it; `fused` (the
    default) computes the same numbers in a cheaper order, and False keeps the seed's order as the
    reference the tests and benchmarks compare with.
    """

    fused: bool = True

    def __init__(self, widths: tuple[int, int, int, int], hidden: int, num_classes: int = 10,
                 batchnorm: bool = False, dropout: float = 0.0, seed_name: str = "FourConvCNN") -> None:
        super().__init__()
        self.seed_name = seed_name
        in_channels = 3
        for i, width in enumerate(widths, start=1):
            setattr(self, f"conv{i}", nn.Conv2d(in_channels, width, kernel_size=3, stride=1))
            if batchnorm:
                setattr(self, f"batchnorm{i}", nn.BatchNorm2d(width))
            setattr(self, f"maxpool{i}", nn.MaxPool2d(kernel_size=2, stride=2))
            in_channels = width
        self.global_avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(in_channels, hidden)
        if dropout:
            self.dropout1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)

    def _get_name(self) -> str:
        return self.seed_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if min(height, width) < FOUR_CONV_MIN_SIZE:
            raise ValueError(
                f"input of {height}x{width} px is smaller than this model's minimum of "
                f"{FOUR_CONV_MIN_SIZE} px; set data.image_size to {FOUR_CONV_MIN_SIZE} or more")
        for i in range(1, 5):
            x = self._stage(i, x)
        x = torch.flatten(self.global_avg_pool(x), 1)
        x = torch.relu(self.fc1(x))
        if hasattr(self, "dropout1"):
            x = self.dropout1(x)
        return self.fc2(x)

    def _stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        x = getattr(self, f"conv{i}")(x)
        if hasattr(self, f"batchnorm{i}"):
            x = getattr(self, f"batchnorm{i}")(x)
        if not self.fused:
            return getattr(self, f"maxpool{i}")(torch.relu(x))
        # ReLU and a max-pool commute exactly (max is monotone and ReLU is max(x, 0)): the same outputs
        # and gradients, ties included, with ReLU on a quarter of the elements. (In place measured no
        # faster, so a hook on maxpool{i} keeps its own tensor: here the map before ReLU.)
        return torch.relu(getattr(self, f"maxpool{i}")(x))
