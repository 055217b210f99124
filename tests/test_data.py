from collections import Counter

import numpy as np
import pytest
from PIL import Image

from cnnstudy.data.sources import DataError, open_source, read_idx, scan_folder, to_rgb
from cnnstudy.data.splits import make_split

from helpers import make_image_folder, shared_dataset


def test_split_is_deterministic_stratified_and_disjoint(tmp_path):
    source = scan_folder(make_image_folder(tmp_path / "d", per_class=20))
    a = make_split(source, (0.7, 0.15, 0.15), seed=3, limit=None)
    b = make_split(source, (0.7, 0.15, 0.15), seed=3, limit=None)
    c = make_split(source, (0.7, 0.15, 0.15), seed=4, limit=None)
    assert (a.train, a.val, a.test) == (b.train, b.val, b.test)
    assert a.train != c.train
    ids = [set(i for i, _ in part) for part in (a.train, a.val, a.test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert sum(map(len, ids)) == 60
    assert a.counts() == {"train": [14, 14, 14], "val": [3, 3, 3], "test": [3, 3, 3]}


def test_limit_per_class_and_round_trip(tmp_path):
    source = scan_folder(make_image_folder(tmp_path / "d", per_class=20))
    split = make_split(source, (0.5, 0.25, 0.25), seed=0, limit=8)
    assert split.counts() == {"train": [4, 4, 4], "val": [2, 2, 2], "test": [2, 2, 2]}
    split.save(tmp_path / "s.json")
    from cnnstudy.data.splits import Split
    assert Split.load(tmp_path / "s.json") == split


def test_presplit_folder_keeps_its_splits_and_carves_val_from_train(tmp_path):
    for part in ("train", "test"):
        make_image_folder(tmp_path / "d" / part, classes=("a", "b"), per_class=10)
    (tmp_path / "d" / "train" / ".ipynb_checkpoints").mkdir()
    source = scan_folder(tmp_path / "d")
    assert source.classes == ["a", "b"]
    split = make_split(source, (0.7, 0.15, 0.15), seed=0, limit=None)
    assert all(item.startswith("test/") for item, _ in split.test) and len(split.test) == 20
    assert all(item.startswith("train/") for item, _ in split.train + split.val)
    assert len(split.val) == 2 * round(10 * 0.15 / 0.85)


def test_empty_class_and_missing_folder_are_named(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), per_class=5)
    (root / "empty").mkdir()
    with pytest.raises(DataError, match="empty.*no readable training images"):
        make_split(scan_folder(root), (0.7, 0.15, 0.15), 0, None)
    with pytest.raises(DataError, match="nope.*not found"):
        open_source(str(tmp_path / "nope"))


def test_idx_reader_on_shared_fashion_mnist():
    root = shared_dataset("fashion-mnist")
    images = read_idx(root / "train-images-idx3-ubyte.gz")
    labels = read_idx(root / "train-labels-idx1-ubyte.gz")
    assert images.shape == (60000, 28, 28) and labels.shape == (60000,)
    assert read_idx(root / "t10k-images-idx3-ubyte.gz").shape == (10000, 28, 28)
    assert set(Counter(labels.tolist()).values()) == {6000}
    source = open_source(str(root))
    assert source.open("train/0").mode == "RGB" and source.open("train/0").size == (28, 28)


def test_truncated_idx_is_refused(tmp_path):
    header = bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    (tmp_path / "x.idx").write_bytes(header + bytes(100))
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "x.idx")


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16", "LA"])
def test_every_mode_becomes_rgb(mode):
    base = Image.fromarray(np.full((4, 4, 3), 200, np.uint8))
    image = base.convert(mode) if mode != "I;16" else Image.fromarray(np.full((4, 4), 65535, np.uint16))
    rgb = to_rgb(image)
    assert rgb.mode == "RGB" and rgb.size == (4, 4)
    assert np.asarray(rgb).min() > 150  # nothing went black: 16-bit is scaled, alpha is put on white


def test_data_classes_picks_classes_by_name_in_the_order_named(tmp_path):
    from cnnstudy.fileio import read_json
    from cnnstudy.runner.study import run_study

    from helpers import write_study

    data = make_image_folder(tmp_path / "colors", classes=("red", "green", "blue", "grey"), per_class=8)
    phases = """
  - name: p1
    runs:
      - {name: all, model: cnn_slim}
      - {name: two, model: cnn_slim, data: {classes: [blue, red]}}
"""
    study_dir = run_study(write_study(tmp_path / "s.yaml", data, phases), ["train.epochs=1"],
                          out_dir=tmp_path / "runs", log=lambda _: None)
    whole, two = (read_json(study_dir / "p1" / name / "split.json") for name in ("all", "two"))
    assert whole["classes"] == ["blue", "green", "grey", "red"] and two["classes"] == ["blue", "red"]
    assert whole["digest"] != two["digest"]
    labels = {path.split("/")[0]: label for part in ("train", "val", "test") for path, label in two[part]}
    assert labels == {"blue": 0, "red": 1}
    assert read_json(study_dir / "p1" / "two" / "metrics.json")["test"]["n"] == len(two["test"])
    bad = tmp_path / "bad.yaml"
    bad.write_text((tmp_path / "s.yaml").read_text().replace("[blue, red]", "[blue, purple]"))
    with pytest.raises(DataError, match="data.classes: 'purple' not among the 4 classes of .*: blue, green, grey, red"):
        run_study(bad, ["train.epochs=1"], out_dir=tmp_path / "runs2", log=lambda _: None)
