import os

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from cnnstudy.data.cache import cached_images, decode_resized
from cnnstudy.config import AugmentConfig
from cnnstudy.data.loaders import CachedLoader, ImageListDataset, TorchvisionLoader
from cnnstudy.data.sources import scan_folder
from cnnstudy.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform, sample_params, warp
from cnnstudy.training.engine import evaluate
from cnnstudy.models.registry import create_model

from helpers import make_image_folder

STATS = (IMAGENET_MEAN, IMAGENET_STD)


@pytest.fixture
def source(tmp_path):
    return scan_folder(make_image_folder(tmp_path / "d", per_class=6, size=70))


def items_of(source):
    return [item for item, _ in source.items["all"]]


def test_cache_round_trip_equals_direct_decoding(source, tmp_path):
    array = cached_images(source, items_of(source), 48, root=tmp_path / "c")
    assert array.shape == (18, 48, 48, 3) and array.dtype == np.uint8
    for i, item in enumerate(items_of(source)):
        np.testing.assert_array_equal(array[i], decode_resized(source, item, 48))
    assert len(list((tmp_path / "c").glob("*.npy"))) == 1
    again = cached_images(source, items_of(source), 48, root=tmp_path / "c")
    assert again.filename == array.filename  # reused, not rebuilt


def test_a_changed_file_gives_a_new_cache(source, tmp_path):
    first = cached_images(source, items_of(source), 48, root=tmp_path / "c")
    changed = source.root / items_of(source)[0]
    Image.new("RGB", (70, 70), (1, 2, 3)).save(changed)
    os.utime(changed, ns=(1, 1))  # a different mtime even on a coarse clock
    second = cached_images(source, items_of(source), 48, root=tmp_path / "c")
    assert second.filename != first.filename
    assert (second[0] == [1, 2, 3]).all()


def test_a_truncated_cache_file_is_detected_and_rebuilt(source, tmp_path):
    path = cached_images(source, items_of(source), 48, root=tmp_path / "c").filename
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) // 2)
    rebuilt = cached_images(source, items_of(source), 48, root=tmp_path / "c")
    assert os.path.getsize(path) > 48 * 48 * 3 * 18
    np.testing.assert_array_equal(rebuilt[-1], decode_resized(source, items_of(source)[-1], 48))


def test_two_builders_of_one_cache_file_decode_it_once(source, tmp_path, monkeypatch):
    """--jobs 2 with two runs on one split: the second waits for the first's file and reads it."""
    import threading
    import time

    from cnnstudy.data import cache

    builds, real = [], cache._fill

    def slow_fill(*args, **kwargs):
        builds.append(threading.get_ident())
        time.sleep(0.5)  # long enough for the other builder to arrive while this one works
        return real(*args, **kwargs)

    monkeypatch.setattr(cache, "_fill", slow_fill)
    arrays = [None, None]

    def build(k):
        arrays[k] = cached_images(source, items_of(source), 48, root=tmp_path / "c", progress=False)

    threads = [threading.Thread(target=build, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and arrays[0].filename == arrays[1].filename
    np.testing.assert_array_equal(arrays[0], arrays[1])


def pil_reference(image: Image.Image, flip: bool, angle: float, scale: float) -> np.ndarray:
    if flip:
        image = TF.hflip(image)
    image = TF.rotate(image, angle)
    return np.asarray(TF.affine(image, angle=0, translate=[0, 0], scale=scale, shear=[0.0]), dtype=float)


def batched(pixels: np.ndarray, flip: bool, angle: float, scale: float) -> np.ndarray:
    batch = torch.from_numpy(pixels).permute(2, 0, 1)[None].float()
    params = {"flip": torch.tensor([flip]), "angle": torch.tensor([angle]), "scale": torch.tensor([scale])}
    return warp(batch, params)[0].permute(1, 2, 0).numpy()


PATCHES = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)


@pytest.mark.parametrize("flip, angle, scale", [
    (True, 0.0, 1.0), (False, 17.0, 1.0), (True, -12.0, 1.0), (False, 0.0, 1.15), (False, 0.0, 0.85)])
def test_one_transform_matches_the_pil_pipeline_pixel_for_pixel(flip, angle, scale):
    reference = pil_reference(Image.fromarray(PATCHES), flip, angle, scale)
    np.testing.assert_array_equal(batched(PATCHES, flip, angle, scale), reference)


@pytest.mark.parametrize("flip, angle, scale", [(True, 18.0, 0.85), (False, -20.0, 1.2), (True, 5.0, 0.9)])
def test_combined_transforms_match_pil_near_identically(flip, angle, scale):
    ours = batched(PATCHES, flip, angle, scale)
    image = TF.hflip(Image.fromarray(PATCHES)) if flip else Image.fromarray(PATCHES)
    # torchvision's own single warp (its affine angle turns clockwise): the same pixels exactly.
    one_warp = TF.affine(image, angle=-angle, translate=[0, 0], scale=scale, shear=[0.0])
    np.testing.assert_array_equal(ours, np.asarray(one_warp, dtype=float))
    # The seed's pipeline resamples twice (rotate, then scale): most pixels identical, the rest at edges.
    two_steps = pil_reference(Image.fromarray(PATCHES), flip, angle, scale)
    assert (ours == two_steps).all(-1).mean() >= 0.85


def test_augmentation_parameters_have_the_seed_ranges():
    params = sample_params(20000, torch.Generator().manual_seed(0))
    assert params["flip"].float().mean() == pytest.approx(0.5, abs=0.02)
    assert -20 <= params["angle"].min() < -19.5 and 19.5 < params["angle"].max() <= 20
    assert 0.8 <= params["scale"].min() < 0.81 and 1.19 < params["scale"].max() <= 1.2
    assert params["angle"].std() == pytest.approx(40 / 12 ** 0.5, rel=0.03)  # uniform, not normal


def test_cached_and_torchvision_loaders_give_the_same_eval_predictions(source, tmp_path):
    torch.manual_seed(0)
    model = create_model("cnn_regularized", num_classes=3)
    items = source.items["all"]
    classic = TorchvisionLoader(ImageListDataset(items, source, eval_transform(48, STATS)), 5, False, 0, 0, False)
    array = cached_images(source, [item for item, _ in items], 48, root=tmp_path / "c")
    cached = CachedLoader(array, [label for _, label in items], 5, STATS, torch.device("cpu"))
    a, b = evaluate(model, classic, torch.device("cpu")), evaluate(model, cached, torch.device("cpu"))
    np.testing.assert_allclose(a["probs"], b["probs"], atol=1e-5)
    np.testing.assert_array_equal(a["targets"], b["targets"])


def batches_of(loader, epoch):
    loader.set_epoch(epoch)
    return [(images.clone(), index.clone()) for images, _, index in loader]


@pytest.mark.parametrize("policy", [
    AugmentConfig(policy="seed"), AugmentConfig(policy="trivialaugment"),
    AugmentConfig(policy="autoaugment", crop="random-resized", color=0.4, erase=0.5)], ids=["seed", "trivial", "parts"])
def test_shuffling_augmentation_and_dropout_draw_from_independent_streams(source, tmp_path, policy):
    from cnnstudy.seeds import PURPOSES, derive_seed

    assert len({derive_seed(0, purpose, 1) for purpose in PURPOSES}) == len(PURPOSES)
    items = source.items["all"]
    array = cached_images(source, [item for item, _ in items], 48, root=tmp_path / "c")
    labels = [label for _, label in items]

    def loader(augment):
        return CachedLoader(array, labels, 4, STATS, torch.device("cpu"), shuffle=True,
                            augment=policy if augment else None, seed=7)

    torch.manual_seed(123)
    global_state = torch.get_rng_state()
    plain, augmented = batches_of(loader(False), 1), batches_of(loader(True), 1)
    assert torch.equal(torch.get_rng_state(), global_state)  # Dropout's stream is left alone
    assert [i.tolist() for _, i in plain] == [i.tolist() for _, i in augmented]  # same order either way
    assert any(not torch.equal(a, b) for (a, _), (b, _) in zip(plain, augmented))
    again = batches_of(loader(True), 1)
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(augmented, again))
    assert [i.tolist() for _, i in batches_of(loader(True), 2)] != [i.tolist() for _, i in plain]


def test_torchvision_augmentation_does_not_depend_on_the_workers_or_global_seed(source):
    from cnnstudy.data.transforms import train_transform

    items = source.items["all"][:6]
    dataset = ImageListDataset(items, source, train_transform(48, "seed", STATS), augment_seed=3)
    torch.manual_seed(1)
    first = [dataset[i][0] for i in range(len(items))]
    torch.manual_seed(2)
    second = [dataset[i][0] for i in reversed(range(len(items)))][::-1]
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    dataset.epoch = 1
    assert not all(torch.equal(a, dataset[i][0]) for i, a in enumerate(first))


def test_random_resized_crop_boxes_are_drawn_as_torchvision_draws_them():
    """torchvision's RandomResizedCrop.get_params: up to 10 tries, then the centre crop (the whole
    of a square image). Clipping oversized boxes instead gave a mean area of 0.533 against 0.478."""
    from torchvision import transforms as T

    from cnnstudy.data.policies import draw_epoch

    size, count = 64, 20000
    crop = draw_epoch(AugmentConfig(policy="none", crop="random-resized"), 0, 1, count, size, 1)["crop"]
    ours = crop["width"] * crop["height"]
    torch.manual_seed(0)
    image = torch.zeros(3, size, size)
    boxes = [T.RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(count)]
    theirs = np.array([h * w for _, _, h, w in boxes]) / size**2
    assert abs(ours.mean() - theirs.mean()) < 0.01, (ours.mean(), theirs.mean())
    assert abs((ours == 1).mean() - (theirs == 1).mean()) < 0.01  # the share that fell back to the whole image
    assert np.all(crop["width"] <= 1) and np.all(crop["height"] <= 1)
