"""The data check end to end: copies kept together, label conflicts left out, data.exclude, leakage in
given split folders scored without the leaked images, likely mislabels, and what inspect and the report say."""
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from cnnstudy.cli import main
from cnnstudy.data.errors import DataError
from cnnstudy.data.splits import PARTS, Split, split_key
from cnnstudy.fileio import read_json
from cnnstudy.runner.study import run_study
from helpers import make_image_folder, write_study


def planted(root: Path) -> Path:
    """Three colour classes, with a resized JPEG copy, an exact copy, and one photo filed under two classes."""
    make_image_folder(root, per_class=12, size=64)
    with Image.open(root / "red" / "red_000.png") as image:
        image.resize((48, 48)).save(root / "red" / "red_000_small.jpg", quality=60)
    shutil.copy(root / "green" / "green_001.png", root / "green" / "green_001_copy.png")
    shutil.copy(root / "blue" / "blue_002.png", root / "red" / "blue_002_as_red.png")
    return root


def leaky_split_folders(root: Path) -> Path:
    for part, seed in (("train", 0), ("test", 5)):
        make_image_folder(root / part, classes=("a", "b"), per_class=8, size=64, seed=seed)
    for i in range(3):
        shutil.copy(root / "train" / "a" / f"a_00{i}.png", root / "test" / "a" / f"leak_{i}.png")
    return root


PHASES = """
  - name: p
    runs:
      - {name: single, model: cnn_slim}
      - {name: folded, model: cnn_slim, data: {split: {folds: 3}}}
      - {name: trimmed, model: cnn_slim, data: {exclude: drop.txt}}
      - {name: given, model: cnn_slim, data: {dataset: %s}}
      - {name: subset, model: cnn_slim, data: {classes: [red, blue], exclude: other_class.txt}}
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("datacheck")
    data, given = planted(tmp / "colors"), leaky_split_folders(tmp / "given")
    (tmp / "drop.txt").write_text("# checked by hand\nred/red_005.png\ngreen/green_007.png  # blurry\n")
    (tmp / "other_class.txt").write_text("green/green_003.png\n")  # a class the run does not use: no typo
    study_file = write_study(tmp / "s.yaml", data, PHASES % given, "  train: {epochs: 1, batch_size: 8}")
    lines = []
    return tmp, run_study(study_file, [], out_dir=tmp / "runs", log=lines.append), lines


def split_files(study_dir: Path) -> list[Path]:
    return [path for path in (study_dir / "splits").glob("*.json") if path.name.count(".") == 1
            and not path.name.startswith(("content-", "files-"))]


def split_of(study_dir: Path, run: str) -> Split:
    digest = read_json(study_dir / "p" / run / "fingerprint.json")["split"]["digest"]
    return next(s for s in map(Split.load, split_files(study_dir)) if s.digest == digest)


def test_copies_stay_in_one_part_and_conflicts_are_left_out(study):
    _, study_dir, lines = study
    split = split_of(study_dir, "single")
    where = {item: part for part in PARTS for item, _ in getattr(split, part)}
    assert where["red/red_000.png"] == where["red/red_000_small.jpg"]
    assert where["green/green_001.png"] == where["green/green_001_copy.png"]
    assert "blue/blue_002.png" not in where and "red/blue_002_as_red.png" not in where
    assert {e["file"] for e in split.excluded} == {"blue/blue_002.png", "red/blue_002_as_red.png"}
    assert any("2 photo(s) under two classes left out" in line for line in lines), lines


def test_folds_keep_copies_together_and_write_ranked_label_issues(study):
    _, study_dir, _ = study
    metrics = read_json(study_dir / "p" / "folded" / "f0" / "metrics.json")
    folds = Split.load(next(p for p in split_files(study_dir) if "folds" in read_json(p)))
    fold_of = {item: j for j, fold in enumerate(folds.folds) for item, _ in fold}
    assert fold_of["red/red_000.png"] == fold_of["red/red_000_small.jpg"] and metrics["split"]["sizes"]["test"] > 0
    rows = (study_dir / "p" / "folded" / "label_issues.csv").read_text().splitlines()
    assert rows[0] == "file,given_label,suggested_label,score"
    scores = [float(row.split(",")[3]) for row in rows[1:]]
    assert scores == sorted(scores)  # the most likely mislabel (lowest probability of its label) first
    assert all((tmp_of(study_dir) / "colors" / row.split(",")[0]).exists() for row in rows[1:])
    pooled = read_json(study_dir / "p" / "folded" / "fingerprint.json")["config"]["data"]
    assert "conflicts" not in pooled and "exclude" not in pooled  # at their defaults: as before they existed


def tmp_of(study_dir: Path) -> Path:
    return study_dir.parents[1]


def test_a_class_subset_is_checked_too_and_ignores_exclusions_of_other_classes(study):
    _, study_dir, _ = study
    split = split_of(study_dir, "subset")
    where = {item: part for part in PARTS for item, _ in getattr(split, part)}
    assert where["red/red_000.png"] == where["red/red_000_small.jpg"]
    assert "red/blue_002_as_red.png" not in where and "blue/blue_002.png" not in where


def test_data_exclude_leaves_files_out_and_makes_its_own_split(study):
    tmp, study_dir, _ = study
    trimmed, single = split_of(study_dir, "trimmed"), split_of(study_dir, "single")
    used = {item for part in PARTS for item, _ in getattr(trimmed, part)}
    assert not {"red/red_005.png", "green/green_007.png"} & used
    assert {"red/red_005.png", "green/green_007.png"} <= {e["file"] for e in trimmed.excluded}
    assert trimmed.digest != single.digest
    assert read_json(study_dir / "p" / "trimmed" / "fingerprint.json")["config"]["data"]["exclude"] == "drop.txt"
    assert "exclude" not in read_json(study_dir / "p" / "single" / "fingerprint.json")["config"]["data"]
    assert split_key("d", None, (0.7, 0.15, 0.15), 0, chosen={"exclude": "a"}) != \
        split_key("d", None, (0.7, 0.15, 0.15), 0, chosen={"exclude": "b"})


def test_leaked_test_images_of_given_folders_are_scored_without_them(study):
    _, study_dir, lines = study
    check = next(read_json(p) for p in (study_dir / "splits").glob("*.check.json") if read_json(p)["dataset"].endswith("given"))
    assert check["leaked_test"] == ["test/a/leak_0.png", "test/a/leak_1.png", "test/a/leak_2.png"]
    assert any("dataset's own split folders" in line for line in lines), lines
    report = (study_dir / "report.md").read_text()
    first = report.split("## The answer")[0]
    assert "**Data check.**" in first and "3 scored image(s) have a copy on the training side" in first
    assert "without the 3 leaked" in report.split("### Every run")[1].split("###")[0]
    assert "| p/given |" in report.split("## Data check")[1].split("## p")[0]
    assert "without copies of training images %" in report


def test_the_report_opens_with_what_the_check_found(study):
    _, study_dir, _ = study
    first = (study_dir / "report.md").read_text().split("## The answer")[0]
    assert "colors" in first and "3 group(s) of copies" in first and "kept together" in first
    assert any((study_dir / "plots").glob("data-copies-*.png"))


def test_a_bad_exclude_file_is_named(tmp_path, image_folder):
    study = write_study(tmp_path / "s.yaml", image_folder, """
  - name: p
    runs:
      - {name: a, model: cnn_slim, data: {exclude: nothere.txt}}
""", "  train: {epochs: 1}")
    with pytest.raises(DataError, match="nothere.txt"):
        run_study(study, [], out_dir=tmp_path / "runs", log=lambda _: None)
    (tmp_path / "typo.txt").write_text("red/does_not_exist.png\n")
    study.write_text(study.read_text().replace("nothere.txt", "typo.txt"))
    with pytest.raises(DataError, match="none of its 1 file"):
        run_study(study, [], out_dir=tmp_path / "runs", log=lambda _: None)


def test_inspect_json_lists_groups_and_says_when_there_are_none(tmp_path, image_folder, capsys):
    data = planted(tmp_path / "p")
    assert main(["inspect", str(data), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    conflict = next(g for g in report["copies"] if len(g["classes"]) > 1)
    assert conflict["files"] == ["blue/blue_002.png", "red/blue_002_as_red.png"] and conflict["classes"] == ["blue", "red"]
    assert main(["inspect", str(image_folder)]) == 0
    assert "copies: no copies found" in capsys.readouterr().out


def test_inspect_labels_ranks_a_moved_image_first(tmp_path, capsys):
    data = make_image_folder(tmp_path / "d", per_class=10, size=64)
    shutil.move(data / "red" / "red_004.png", data / "blue" / "red_004.png")
    Image.open(data / "green" / "green_000.png").convert("CMYK").save(data / "green" / "cmyk.jpg")
    Image.open(data / "green" / "green_001.png").convert("L").save(data / "green" / "grey.png")
    (data / "lonely").mkdir()
    Image.open(data / "green" / "green_002.png").save(data / "lonely" / "only.png")
    assert main(["inspect", str(data), "--labels-csv", str(tmp_path / "issues.csv"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    check = report["label_check"]
    assert report["unreadable"] == []  # CMYK and greyscale decode, hash and are probed as RGB
    ranked = [row["file"] for row in check["label_issues"]]
    # The grey image has lost the colour its class is told by, so it may rightly rank too.
    assert "blue/red_004.png" in ranked[:2], ranked
    assert next(r for r in check["label_issues"] if r["file"] == "blue/red_004.png")["suggested_label"] == "red"
    assert check["not_checked"] == ["lonely/only.png"]
    rows = (tmp_path / "issues.csv").read_text().splitlines()
    assert rows[0] == "file,given_label,suggested_label,score" and len(rows) == len(ranked) + 1


def test_a_second_run_reuses_every_run_and_its_check(study):
    tmp, study_dir, _ = study
    # (a folded run's pooled metrics.json is pooled again on each run: only the units themselves count)
    before = {p: p.stat().st_mtime_ns for p in study_dir.rglob("metrics.json") if not (p.parent / "f0").is_dir()}
    lines = []
    run_study(tmp / "s.yaml", [], out_dir=tmp / "runs", log=lines.append)
    assert {p: p.stat().st_mtime_ns for p in before} == before  # nothing trained again
    assert not [line for line in lines if "newer than the study's split" in line or line.startswith("data check")]


def test_folds_refuse_a_class_with_fewer_distinct_photos_than_folds(tmp_path):
    from cnnstudy.data.sources import scan_folder
    from cnnstudy.data.splits import make_split

    data = make_image_folder(tmp_path / "d", per_class=6, size=64)
    for i in range(1, 6):  # every blue image is a copy of one photo
        shutil.copy(data / "blue" / "blue_000.png", data / "blue" / f"blue_00{i}.png")
    with pytest.raises(DataError, match=r"blue \(6 images, 1 distinct\)"):
        make_split(scan_folder(data), (0.7, 0.15, 0.15), 0, None, folds=3)


def test_an_exclude_csv_saved_by_a_spreadsheet_is_read(tmp_path):
    from cnnstudy.data.datacheck import read_exclude

    (tmp_path / "x.csv").write_text("\ufefffile,given_label,suggested_label,score\nred/red_005.png,red,blue,0.1\n",
                                    encoding="utf-8")
    assert list(read_exclude(tmp_path / "x.csv")) == ["red/red_005.png"]


def test_a_saved_split_that_kept_a_conflict_says_so_without_blaming_the_setting(tmp_path):
    from cnnstudy.data.datacheck import check_sentence, split_check
    from cnnstudy.data.inspection import check_images
    from cnnstudy.data.sources import scan_folder

    data = planted(tmp_path / "d")
    source = scan_folder(data)
    items = sorted(source.items["all"])
    old = Split(str(data), source.classes, items[:-6], items[-6:-3], items[-3:])  # as made before the check
    check = split_check(old, check_images(source, [i for i, _ in items]), dict(items))
    assert "2 photo(s) under two classes kept (a saved split, made before conflicts were left out)" in \
        check_sentence(check)
