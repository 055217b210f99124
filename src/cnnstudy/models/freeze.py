"""Freezing policies with the same words for every model: none, head, last_conv, last:N, or module names."""
from __future__ import annotations

from torch import nn

from . import timm_zoo
from .registry import head_module_names, param_leaves


class FreezeError(ValueError):
    """A freeze policy that does not apply to the model."""


def last_conv_block(model: nn.Module) -> list[str]:
    """The last conv block: the block (parent module) holding the last Conv2d, or, for flat models
    such as our CNNs, that conv and the parameter layers after it up to the head (its BatchNorm)."""
    leaves = param_leaves(model)
    if getattr(model, "cnnstudy_spec", {}).get("name", "").startswith(timm_zoo.PREFIX):
        return timm_last_block(model, leaves)
    convs = [i for i, (_, m) in enumerate(leaves) if isinstance(m, nn.Conv2d)]
    if not convs:
        raise FreezeError(f"freeze: last_conv does not apply: {model._get_name()} has no Conv2d layer")
    conv_name = leaves[convs[-1]][0]
    parent = conv_name.rpartition(".")[0]
    if parent:
        return [parent]
    head = set(head_module_names(model))
    return [name for name, _ in leaves[convs[-1]:] if name not in head]


def timm_last_block(model: nn.Module, leaves: list[tuple[str, nn.Module]]) -> list[str]:
    """A timm model's last block (of its feature_info's last stage) and every layer after it, head included."""
    if timm_zoo.is_token_model(model):
        raise FreezeError(f"freeze: last_conv does not apply to {model._get_name()}, a vision transformer; use "
                          f"last:N or a list of module names (e.g. blocks.{len(model.blocks) - 1}, head)")
    block = timm_zoo.last_block(model)
    if block is None:
        raise FreezeError(f"freeze: last_conv does not apply to {model._get_name()}: its feature_info names no "
                          "last stage; use last:N or a list of module names")
    first = next(i for i, (name, _) in enumerate(leaves) if name == block or name.startswith(block + "."))
    return [name for name, _ in leaves[first:]]


def trainable_modules(model: nn.Module, policy: str | list[str]) -> list[str] | None:
    """Module names left trainable by `policy`; None means everything."""
    if isinstance(policy, list):
        known = dict(model.named_modules())
        unknown = [name for name in policy if name not in known]
        if unknown:
            sample = ", ".join(name for name, _ in param_leaves(model)[-6:])
            raise FreezeError(f"freeze: lists module(s) {', '.join(unknown)} that {model._get_name()} does "
                              f"not have; its last layers are: {sample}")
        return list(policy)
    if policy == "none":
        return None
    if policy == "head":
        return head_module_names(model)
    if policy == "last_conv":
        return last_conv_block(model) + head_module_names(model)
    if policy.startswith("last:") and policy[5:].isdigit() and int(policy[5:]) > 0:
        return [name for name, _ in param_leaves(model)[-int(policy[5:]):]]
    raise FreezeError(f"freeze: {policy!r} is not a policy; use none, head, last_conv, last:N "
                      "(N > 0) or a list of module names")


def _inside(name: str, prefixes: list[str]) -> bool:
    return any(p == "" or name == p or name.startswith(p + ".") for p in prefixes)


def apply_freeze(model: nn.Module, policy: str | list[str]) -> list[str]:
    """Set requires_grad by `policy`; returns the names of the trainable parameters."""
    keep = trainable_modules(model, policy)
    for name, param in model.named_parameters():
        param.requires_grad = keep is None or _inside(name.rpartition(".")[0], keep)
    trainable = [name for name, param in model.named_parameters() if param.requires_grad]
    if not trainable:
        sample = ", ".join(name for name, _ in param_leaves(model)[-6:])
        raise FreezeError(f"freeze: {policy!r} leaves no parameter of {model._get_name()} trainable (those "
                          f"modules hold none); name modules with weights, e.g. {sample}")
    return trainable


def set_train_mode(model: nn.Module) -> None:
    """model.train(), except that fully frozen BatchNorm layers stay in eval mode so their running
    statistics do not move. Dropout behaves as usual."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()
