"""timm's model zoo by name: `timm/<model>[.<tag>]`, e.g. `timm/convnext_nano.in12k_ft_in1k`.

Everything cnnstudy needs to know about a timm model comes from timm itself: its pretrained_cfg
(input size, resize filter, mean/std, classifier layer, licence, Hugging Face repo of the weights)
and its feature_info (the last stage, which Grad-CAM explains). Weights are fetched and verified
before a study trains (models/hub.py); building a model only ever reads the local file.
"""
from __future__ import annotations

import difflib
from functools import lru_cache

import torch
from torch import nn

PREFIX = "timm/"
HUB_FILE = "model.safetensors"  # what timm reads first from a Hub repo (then pytorch_model.bin)


def is_timm_name(name: str) -> bool:
    return name.startswith(PREFIX)


def split_name(name: str) -> tuple[str, str | None]:
    """"timm/convnext_nano.in12k_ft_in1k" -> ("convnext_nano", "in12k_ft_in1k")."""
    arch, _, tag = name[len(PREFIX):].partition(".")
    return arch, tag or None


@lru_cache(maxsize=None)
def _timm():
    import timm  # imported on first use: about 1 s, which studies without timm models never pay

    return timm


def name_problem(name: str) -> str | None:
    """None for a timm name that exists (and whose tag exists); else what is wrong and what is close."""
    timm = _timm()
    arch, tag = split_name(name)
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3)
        hint = f" (did you mean {', '.join(PREFIX + c for c in close)}?)" if close else ""
        return (f"unknown timm model {arch!r}{hint}; `cnnstudy models --timm 'PATTERN'` lists them, "
                "e.g. --timm 'convnext*'")
    if tag is not None and f"{arch}.{tag}" not in timm.list_pretrained(f"{arch}.*"):
        tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{arch}.*")]
        return (f"timm model {arch} has no pretrained tag {tag!r}; its tags: {', '.join(tags) or '(none)'}")
    return None


def pretrained_cfg(name: str) -> dict:
    """timm's pretrained_cfg of the name's tag (timm's default tag without one); {} if it has none."""
    arch, tag = split_name(name)
    cfg = _timm().models.get_pretrained_cfg(f"{arch}.{tag}" if tag else arch)
    return cfg.to_dict() if cfg is not None else {}


def hub_file(cfg: dict) -> tuple[str, str] | None:
    """(repo, file) of the weights on the Hugging Face Hub; None when timm knows of none there."""
    repo = cfg.get("hf_hub_id")
    return (repo, cfg.get("hf_hub_filename") or HUB_FILE) if repo else None


def build(name: str, num_classes: int, image_size: int, weights_file: str | None) -> nn.Module:
    """The timm model for `num_classes`, with its pretrained weights read from `weights_file` when given
    (timm drops the old classifier). Fixed-size models (ViTs) are built at `image_size`; timm resamples
    their position embeddings from the size the weights were trained at."""
    arch, tag = split_name(name)
    cfg = pretrained_cfg(name)
    kwargs = {"img_size": image_size} if cfg.get("fixed_input_size") else {}
    if weights_file is not None:
        kwargs["pretrained_cfg_overlay"] = {"file": weights_file}
    return _timm().create_model(f"{arch}.{tag}" if tag else arch, pretrained=weights_file is not None,
                                num_classes=num_classes, **kwargs)


def is_token_model(model: nn.Module) -> bool:
    """A vision transformer: its blocks output tokens (B, N, C), not maps."""
    return hasattr(model, "patch_embed") and hasattr(model, "blocks") and hasattr(model, "num_prefix_tokens")


def cam_layer(model: nn.Module) -> str | None:
    """Grad-CAM's layer: for a ViT the last block's first norm (its patch tokens still carry gradient
    from a class-token head); for a convnet the last stage of its feature_info."""
    if is_token_model(model):
        if not hasattr(model.patch_embed, "grid_size"):
            return None
        path = f"blocks.{len(model.blocks) - 1}.norm1"
    elif getattr(model, "output_fmt", "NCHW") != "NCHW":  # channels-last stages (Swin, ...): not maps as read here
        return None
    else:
        path = last_stage(model)
    try:  # feature_info of some families names modules the model does not have
        model.get_submodule(path) if path else None
    except AttributeError:
        return None
    return path


def last_stage(model: nn.Module) -> str | None:
    """The module of the last stage in the model's feature_info, where it names one."""
    info = getattr(model, "feature_info", None)
    modules = info.module_name() if hasattr(info, "module_name") else [d["module"] for d in info or []]
    return modules[-1] if modules else None


def last_block(model: nn.Module) -> str | None:
    """The last block of the last stage (`stages.3.blocks.1`, `layer4.1`, `s4.b7`): what `freeze: last_conv`
    trains, with everything after it. None where feature_info names no stage the model has."""
    stage = last_stage(model)
    try:
        module = model.get_submodule(stage) if stage else None
    except AttributeError:
        return None
    if module is None:
        return None
    holder, prefix = (module.blocks, f"{stage}.blocks") if isinstance(getattr(module, "blocks", None), nn.Module) \
        else (module, stage)
    children = [name for name, child in holder.named_children() if any(True for _ in child.parameters())]
    return f"{prefix}.{children[-1]}" if children else stage


def token_reshape(model: nn.Module):
    """For a ViT: tokens (B, N, C) -> maps (B, C, h, w), dropping the class/register tokens
    (pytorch-grad-cam's reshape_transform for ViTs); None for a model whose layer gives maps."""
    if not is_token_model(model):
        return None
    prefix = model.num_prefix_tokens
    height, width = model.patch_embed.grid_size

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 3 or tokens.shape[1] != prefix + height * width:
            raise ValueError(f"Grad-CAM is not supported for {model._get_name()}: its tokens "
                             f"{tuple(tokens.shape)} are not {prefix} + {height} x {width} patches")
        patches = tokens[:, prefix:, :]
        return patches.reshape(tokens.shape[0], height, width, tokens.shape[-1]).permute(0, 3, 1, 2)
    return reshape


def list_matching(pattern: str) -> list[tuple[str, int, list[str]]]:
    """(name, parameters, pretrained tags) of every timm model matching `pattern` (fnmatch, e.g.
    'convnext*'); parameters are counted on a weightless (meta) model."""
    timm = _timm()
    rows = []
    for arch in timm.list_models(pattern):
        tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{arch}.*")]
        try:
            with torch.device("meta"):
                params = sum(p.numel() for p in timm.create_model(arch).parameters())
        except Exception:  # noqa: BLE001 - a model that cannot be built weightless is listed without a count
            params = -1
        rows.append((arch, params, tags))
    return rows
