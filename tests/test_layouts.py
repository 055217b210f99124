"""Folder layouts: split folders are found under their usual names in any case, every image is
used or reported, and layouts that would train a meaningless classifier are refused."""
import pytest

from cnnstudy.data.errors import DataError
from cnnstudy.data.inspection import format_report, inspect_dataset
from cnnstudy.data.sources import scan_folder
from cnnstudy.data.splits import make_split

from helpers import make_image_folder

FRACTIONS = (0.7, 0.15, 0.15)


def presplit(root, folders, per_class=6):
    for i, folder in enumerate(folders):
        make_image_folder(root / folder, classes=("ant", "bee"), per_class=per_class, seed=i)
    return root


def ids(items):
    return {item for item, _ in items}


@pytest.mark.parametrize("folders, expected", [
    (("train", "valid"), {"train": "train", "val": "valid"}),
    (("TRAIN", "Val"), {"train": "TRAIN", "val": "Val"}),
    (("train", "validation", "test"), {"train": "train", "val": "validation", "test": "test"}),
    (("training", "dev", "testing"), {"train": "training", "val": "dev", "test": "testing"}),
    (("train", "valid", "test"), {"train": "train", "val": "valid", "test": "test"}),
])
def test_split_folders_are_recognised_with_their_real_classes_and_all_images(tmp_path, folders, expected):
    source = scan_folder(presplit(tmp_path / "d", folders))
    assert source.classes == ["ant", "bee"]
    assert source.layout.kind == "split folders" and source.layout.folders == expected
    assert {split: len(items) for split, items in source.items.items()} == {s: 12 for s in expected}
    split = make_split(source, FRACTIONS, seed=0, limit=None)
    assert len(split.train) + len(split.val) + len(split.test) == 12 * len(folders)
    assert ids(split.train) == {item for item, _ in source.items["train"]}


def test_a_train_val_dataset_gets_a_test_split_carved_from_val_disjoint_from_both(tmp_path):
    source = scan_folder(presplit(tmp_path / "d", ("train", "val"), per_class=10))
    split = make_split(source, FRACTIONS, seed=0, limit=None)
    train, val, test = ids(split.train), ids(split.val), ids(split.test)
    assert test and not (test & train) and not (test & val)
    assert all(item.startswith("val/") for item in test | val) and len(train) == 20
    assert split.counts()["test"] == [5, 5] and split.counts()["val"] == [5, 5]
    assert split.origin["test"] == "carved from val/: 50% of each class, seed 0"
    assert make_split(source, FRACTIONS, seed=0, limit=None).test == split.test  # seeded
    no_test = make_split(source, (0.85, 0.15, 0.0), seed=0, limit=None)
    assert no_test.test == [] and len(no_test.val) == 20  # split.test: 0 turns carving off


def test_one_class_is_refused(tmp_path):
    make_image_folder(tmp_path / "d", classes=("cats",), per_class=4)
    with pytest.raises(DataError, match="at least 2 class folders.*only 'cats'"):
        scan_folder(tmp_path / "d")


def test_a_class_named_like_a_split_is_refused(tmp_path):
    make_image_folder(tmp_path / "a" / "train", classes=("cats", "val"), per_class=3)
    with pytest.raises(DataError, match="class folder.*val inside a split folder are named like a split"):
        scan_folder(tmp_path / "a")
    make_image_folder(tmp_path / "b", classes=("cats", "dogs", "test"), per_class=3)
    with pytest.raises(DataError, match="test/ look.*like a split folder, but there is no train/ folder"):
        scan_folder(tmp_path / "b")


def test_two_folders_for_one_split_are_refused(tmp_path):
    with pytest.raises(DataError, match="2 folders for the val split \\(val, valid\\)"):
        scan_folder(presplit(tmp_path / "d", ("train", "val", "valid")))


def test_what_is_passed_over_is_reported_and_inspect_shows_the_layout(tmp_path):
    root = presplit(tmp_path / "d", ("train", "valid"))
    (root / "test").mkdir()  # an unlabelled test set: images without class folders
    (root / "train" / "ant" / "ant_000.png").rename(root / "test" / "x.png")
    (root / "train" / "bee" / "bee_000.png").rename(root / "train" / "loose.png")
    make_image_folder(root / "extras", classes=("misc",), per_class=1)
    source = scan_folder(root)
    assert source.layout.folders == {"train": "train", "val": "valid"}
    assert source.stray_images == ["train/loose.png"]
    reasons = {f["folder"]: f["reason"] for f in source.layout.passed_over}
    assert "not a split folder" in reasons["extras"] and "without class sub-folders" in reasons["test"]
    text = format_report(inspect_dataset(source))
    assert "layout: split folders (train: train/, val: valid/)" in text
    assert "folders passed over: 2" in text and "images outside a class folder (not used): 1" in text


def test_class_folders_layout_is_described(tmp_path):
    source = scan_folder(make_image_folder(tmp_path / "d", per_class=3))
    assert source.layout.kind == "class folders" and source.items.keys() == {"all"}
    assert "layout: class folders" in format_report(inspect_dataset(source))
