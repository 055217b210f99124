"""Class activation maps of a model on the layer its spec declares: the one place that computes them,
for `cnnstudy explain` and for the maps a run writes when it finishes, so both are the same arrays
for the same image.

Grad-CAM itself is computed here, step for step as the `grad-cam` package (pytorch-grad-cam)
computes it, and a test holds the two equal: importing that package costs every training process
about 5 s (it loads scikit-learn and OpenCV), which a run that only needs Grad-CAM should not pay.
Grad-CAM++ and Score-CAM come from the package."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..training.devices import autocast
from .registry import cam_reshape, cam_target

METHODS = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "scorecam": "ScoreCAM"}


def class_activation_maps(model: nn.Module, model_name: str, images: torch.Tensor, targets: list[int],
                          device: torch.device, precision: str = "fp32", method: str = "gradcam") -> np.ndarray:
    """(N, H, W) float32 maps in [0, 1] of normalized NCHW `images`, one per image for the class index in
    `targets`, computed as the model predicts: eval mode, the run's precision."""
    layer, reshape = cam_target(model, model_name), cam_reshape(model, model_name)
    model.eval()
    if method == "gradcam":
        with autocast(device, precision):
            return grad_cam(model, layer, images.to(device), targets, reshape)
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    # A frozen backbone gives its activations no gradient of their own; asking one for the input does.
    images = images.to(device).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    with getattr(pytorch_grad_cam, METHODS[method])(model=model, target_layers=[layer],
                                                    reshape_transform=reshape) as cam, \
            autocast(device, precision):
        maps = cam(input_tensor=images, targets=[ClassifierOutputTarget(int(k)) for k in targets])
    return np.clip(np.nan_to_num(maps.astype(np.float32)), 0.0, 1.0)


def _min_max(maps: np.ndarray) -> np.ndarray:
    maps = maps - maps.min(axis=(1, 2), keepdims=True)
    return maps / (1e-7 + maps.max(axis=(1, 2), keepdims=True))


def grad_cam(model: nn.Module, layer: nn.Module, images: torch.Tensor, targets: list[int],
             reshape=None) -> np.ndarray:
    """Grad-CAM (Selvaraju et al., 2017) as pytorch-grad-cam computes it: the layer's activations
    weighted by the spatial mean of the target logit's gradient, ReLU, scaled to [0, 1], resized
    (bilinear) to the input, and scaled again. `reshape`: tokens to maps (a ViT's), as
    pytorch-grad-cam's reshape_transform."""
    found: dict[str, torch.Tensor] = {}

    def keep(module, inputs, output):
        if not isinstance(output, torch.Tensor):
            raise ValueError(f"Grad-CAM is not supported for {model._get_name()}: its layer gives a "
                             f"{type(output).__name__}, not one tensor of maps")
        found["activations"] = output
        output.register_hook(lambda grad: found.__setitem__("gradients", grad))

    handle = layer.register_forward_hook(keep)
    try:
        # A frozen backbone gives its activations no gradient of their own; asking one for the input does.
        inputs = images.contiguous(memory_format=torch.channels_last).requires_grad_(True)
        logits = model(inputs)
        model.zero_grad()
        logits[torch.arange(len(targets)), torch.as_tensor(targets)].sum().backward()
    finally:
        handle.remove()
    as_maps = reshape or (lambda tensor: tensor)
    activations = as_maps(found["activations"].detach()).float().cpu()
    if activations.ndim != 4:
        raise ValueError(f"Grad-CAM is not supported for {model._get_name()}: its layer gives "
                         f"{tuple(activations.shape)} outputs, not (batch, channels, height, width) maps")
    weights = as_maps(found["gradients"]).float().cpu().mean(dim=(2, 3), keepdim=True)
    cams = _min_max(torch.relu((weights * activations).sum(dim=1)).numpy())
    resized = torch.nn.functional.interpolate(torch.from_numpy(cams)[:, None].float(), size=images.shape[-2:],
                                              mode="bilinear", align_corners=False)[:, 0].numpy()
    return np.clip(_min_max(np.maximum(resized, 0)), 0.0, 1.0).astype(np.float32)
