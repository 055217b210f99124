"""Copies: the perceptual hash, the grouping, and splits that keep each group in one part or fold."""
import io
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image

from cnnstudy.data.copies import NEAR_BITS, copy_groups, group_indices, image_hash, near_pairs
from cnnstudy.data.inspection import ImageCheck
from cnnstudy.data.splits import Split, deal_folds, stratified_split


def photo(seed: int, size: int = 160) -> Image.Image:
    """A smooth random 'photo': low-frequency structure, as natural images have."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
    pixels = np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float64)
    return Image.fromarray(np.clip(pixels + rng.normal(0, 6, pixels.shape), 0, 255).astype(np.uint8))


def resaved(image: Image.Image) -> Image.Image:
    """The issue's planted copy: 75 % size, 3 % of each border cropped, JPEG quality 60."""
    w, h = image.size
    small = image.resize((int(w * 0.75), int(h * 0.75)), Image.Resampling.BILINEAR)
    w, h = small.size
    cropped = small.crop((int(w * 0.03), int(h * 0.03), w - int(w * 0.03), h - int(h * 0.03)))
    buffer = io.BytesIO()
    cropped.save(buffer, "JPEG", quality=60)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def bits_apart(a: str, b: str) -> int:
    return int(bin(int(a, 16) ^ int(b, 16)).count("1"))


def test_a_resaved_copy_is_near_and_another_photo_is_not():
    for seed in range(20):
        original = photo(seed)
        assert bits_apart(image_hash(original), image_hash(resaved(original))) <= NEAR_BITS
        assert bits_apart(image_hash(original), image_hash(photo(seed + 100))) > NEAR_BITS


def test_grey_cmyk_and_palette_images_hash_as_their_rgb_self():
    rgb = photo(3)
    for mode in ("L", "CMYK", "P"):
        assert bits_apart(image_hash(rgb.convert(mode).convert("RGB")), image_hash(rgb)) <= NEAR_BITS


def test_the_range_search_keeps_a_pair_exactly_at_the_threshold_and_drops_one_past_it():
    base = "0" * 32
    at = f"{(1 << NEAR_BITS) - 1:032x}"  # NEAR_BITS bits set
    past = f"{(1 << (NEAR_BITS + 1)) - 1:032x}"
    assert near_pairs([base, at]).tolist() == [[0, 1]]
    assert near_pairs([base, past]).tolist() == []
    assert near_pairs([base]).shape == (0, 2)


def test_copies_group_transitively():
    assert sorted(map(sorted, group_indices(5, np.array([[0, 1], [1, 3]])))) == [[0, 1, 3]]
    assert group_indices(3, np.zeros((0, 2), dtype=np.int64)) == []


def test_a_group_names_its_files_classes_kind_and_parts():
    a, b = photo(1), photo(2)
    checks = [ImageCheck("x/1.png", None, 1, 1, "s1", image_hash(a)), ImageCheck("y/1.png", None, 1, 1, "s1", image_hash(a)),
              ImageCheck("x/2.png", None, 1, 1, "s2", image_hash(b)), ImageCheck("x/3.jpg", None, 1, 1, "s3", image_hash(resaved(b))),
              ImageCheck("x/bad.png", "zero bytes")]
    groups = copy_groups(checks, {"x/1.png": 0, "y/1.png": 1, "x/2.png": 0, "x/3.jpg": 0}, ["x", "y"],
                         {"x/1.png": "train", "y/1.png": "test", "x/2.png": "train", "x/3.jpg": "train"})
    assert groups == [{"files": ["x/1.png", "y/1.png"], "classes": ["x", "y"], "kind": "exact", "parts": ["test", "train"]},
                      {"files": ["x/2.png", "x/3.jpg"], "classes": ["x"], "kind": "near", "parts": ["train"]}]


# The splitters as they were before groups: without copies a split must stay exactly what it was.
def _reference_stratified(items, fractions, rng):
    by_class = defaultdict(list)
    for item, label in items:
        by_class[label].append(item)
    parts = [[] for _ in fractions]
    for label, ids in sorted(by_class.items()):
        order = rng.permutation(len(ids))
        sizes = [int(round(len(ids) * f)) for f in fractions[1:]]
        sizes = [max(1, s) if f > 0 and len(ids) >= len(fractions) else s for s, f in zip(sizes, fractions[1:])]
        while sum(sizes) >= len(ids) and any(sizes):
            sizes[sizes.index(max(sizes))] -= 1
        bounds = np.cumsum([len(ids) - sum(sizes)] + sizes)
        for part, chunk in zip(parts, np.split(order, bounds[:-1])):
            part += [(ids[i], label) for i in sorted(chunk)]
    return parts


def _reference_folds(items, k, rng):
    by_class = defaultdict(list)
    for item, label in items:
        by_class[label].append(item)
    folds, start = [[] for _ in range(k)], 0
    for label, ids in sorted(by_class.items()):
        for position, i in enumerate(rng.permutation(len(ids))):
            folds[(start + position) % k].append((ids[i], label))
        start = (start + len(ids)) % k
    return [sorted(fold) for fold in folds]


labels_strategy = st.lists(st.integers(0, 4), min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(labels_strategy, st.integers(0, 999), st.integers(2, 6), st.randoms(use_true_random=False))
def test_without_copies_the_splits_are_what_they_were(labels, seed, k, shuffler):
    items = [(f"f{i:03d}", label) for i, label in enumerate(labels)]
    shuffler.shuffle(items)
    for fractions in ((0.7, 0.15, 0.15), (0.8, 0.2)):
        assert stratified_split(items, fractions, np.random.default_rng(seed)) == \
            _reference_stratified(items, fractions, np.random.default_rng(seed))
    assert deal_folds(items, k, np.random.default_rng(seed)) == _reference_folds(items, k, np.random.default_rng(seed))


@settings(max_examples=150, deadline=None)
@given(labels_strategy, st.integers(0, 999), st.integers(2, 6), st.data())
def test_every_group_of_copies_lands_whole_in_one_part_and_one_fold(labels, seed, k, data):
    items = [(f"f{i:03d}", label) for i, label in enumerate(labels)]
    group_ids = data.draw(st.lists(st.integers(0, 8), min_size=len(items), max_size=len(items)))
    together = {item: g for (item, _), g in zip(items, group_ids) if group_ids.count(g) > 1 and g < 6}
    parts = stratified_split(items, (0.7, 0.15, 0.15), np.random.default_rng(seed), together)
    folds = deal_folds(items, k, np.random.default_rng(seed), together)
    for dealt in (parts, folds):
        assert sorted(item for part in dealt for item in part) == sorted(items)  # each image exactly once
        where = {item: j for j, part in enumerate(dealt) for item, _ in part}
        for group in set(together.values()):
            assert len({where[item] for item, g in together.items() if g == group}) == 1
    label_of = dict(items)
    if all(len({label_of[i] for i, g in together.items() if g == group}) == 1 for group in set(together.values())):
        assert {label for _, label in parts[0]} == set(labels)  # every class keeps an image for training


def test_a_folds_validation_carve_keeps_copies_together_too():
    items = [(f"a{i}", 0) for i in range(12)] + [(f"b{i}", 1) for i in range(12)]
    groups = [["a0", "a1", "a2"], ["b3", "b4"]]
    together = {item: n for n, group in enumerate(groups) for item in group}
    folds = deal_folds(items, 3, np.random.default_rng(0), together)
    split = Split("d", ["a", "b"], sorted(items), [], [], folds=folds, fold_val=0.5, fold_seed=0, groups=groups)
    for j in range(3):
        fold = split.fold(j)
        for group in groups:
            sides = {part for part in ("train", "val", "test") for item, _ in getattr(fold, part) if item in group}
            assert len(sides) == 1, (j, group, sides)


def test_a_split_without_copies_or_exclusions_is_saved_as_before(tmp_path):
    from cnnstudy.fileio import read_json

    split = Split("d", ["a"], [("x", 0)], [("y", 0)], [("z", 0)])
    split.save(tmp_path / "s.json")
    assert set(read_json(tmp_path / "s.json")) == {"dataset", "classes", "train", "val", "test", "skipped",
                                                   "origin", "digest"}
    grouped = Split("d", ["a"], [("x", 0), ("w", 0)], [("y", 0)], [("z", 0)], groups=[["x", "w"]])
    grouped.save(tmp_path / "g.json")
    assert Split.load(tmp_path / "g.json").groups == [["x", "w"]]
    assert Split.load(tmp_path / "g.json").digest == Split("d", ["a"], [("x", 0), ("w", 0)], [("y", 0)], [("z", 0)]).digest


@pytest.mark.parametrize("count", [1, 2])
def test_a_tiny_dataset_hashes_and_groups(count):
    checks = [ImageCheck(f"c/{i}.png", None, 1, 1, f"s{i}", image_hash(photo(i))) for i in range(count)]
    assert copy_groups(checks, {c.item: 0 for c in checks}, ["c"]) == []


def test_a_split_is_checked_only_for_its_own_images():
    """Copies among images the split did not draw (limit_per_class) are not the split's concern."""
    from cnnstudy.data.datacheck import split_check

    same, other = image_hash(photo(7)), image_hash(photo(8))
    checks = [ImageCheck("a/in.png", None, 1, 1, "x", other), ImageCheck("a/out1.png", None, 1, 1, "y", same),
              ImageCheck("a/out2.png", None, 1, 1, "y", same), ImageCheck("b/in.png", None, 1, 1, "z", image_hash(photo(9)))]
    split = Split("d", ["a", "b"], [("a/in.png", 0)], [("b/in.png", 1)], [])
    check = split_check(split, checks, {"a/in.png": 0, "a/out1.png": 0, "a/out2.png": 0, "b/in.png": 1})
    assert check["copies"] == [] and check["images"] == 2 and check["summary"] == "no copies found"
