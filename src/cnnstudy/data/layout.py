"""How an image folder is laid out, detected once and reported, never guessed silently.

Two layouts are understood:

- class folders: ``<root>/<class>/<image>``, split by the study;
- split folders: ``<root>/<split>/<class>/<image>``, where a split folder is named (in any case)
  train/training, val/valid/validation/dev or test/testing.

Anything passed over (a folder that is no split, a split folder without class folders, an image
lying outside a class folder) is recorded so that ``inspect`` and the study can say so.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import DataError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
SPLIT_ALIASES = {"train": ("train", "training"), "val": ("val", "valid", "validation", "dev"),
                 "test": ("test", "testing")}
_SPLIT_OF_ALIAS = {alias: split for split, aliases in SPLIT_ALIASES.items() for alias in aliases}


def split_of_folder(name: str) -> str | None:
    """The canonical split a folder name stands for (``Valid`` -> ``val``), or None."""
    return _SPLIT_OF_ALIAS.get(name.lower())


def visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


@dataclass
class Layout:
    kind: str  # "class folders" | "split folders" | "idx files"
    folders: dict[str, str]  # canonical split ("all" when unsplit) -> folder relative to the root
    passed_over: list[dict] = field(default_factory=list)  # {"folder", "reason"}

    def describe(self) -> str:
        if self.kind == "class folders":
            return "class folders (<class>/<image>), split by the study"
        slash = "/" if self.kind == "split folders" else ""
        parts = ", ".join(f"{split}: {folder}{slash}" for split, folder in self.folders.items())
        return f"{self.kind} ({parts})"

    def as_dict(self) -> dict:
        return {**asdict(self), "description": self.describe()}


def detect_layout(root: Path) -> Layout:
    """Class folders or split folders; ambiguous layouts stop with the fix."""
    by_split: dict[str, list[str]] = defaultdict(list)
    for folder in visible_dirs(root):
        if split_of_folder(folder.name):
            by_split[split_of_folder(folder.name)].append(folder.name)
    if not by_split:
        return Layout("class folders", {"all": ""})
    for split, names in by_split.items():
        if len(names) > 1:
            raise DataError(f"{root} has {len(names)} folders for the {split} split ({', '.join(names)}); "
                            "merge them into one or rename the others")
    if "train" not in by_split:
        found = ", ".join(f"{names[0]}/" for names in by_split.values())
        raise DataError(f"{root}: {found} look(s) like a split folder, but there is no train/ folder. Put the "
                        f"training images in {root}/train/<class>/, or rename {found} if it is a class")
    return _split_layout(root)


def _split_layout(root: Path) -> Layout:
    folders, passed_over = {}, []
    for folder in visible_dirs(root):
        split = split_of_folder(folder.name)
        if split is None:
            passed_over.append({"folder": folder.name, "reason": "not a split folder (train/val/test)"})
        elif not visible_dirs(folder):
            if split == "train":
                raise DataError(f"{folder} has no class sub-folders; lay it out as {folder}/<class>/<image>")
            passed_over.append({"folder": folder.name,
                                "reason": f"{split} folder without class sub-folders (unlabelled images?)"})
        else:
            folders[split] = folder.name
    order = {name: i for i, name in enumerate(SPLIT_ALIASES)}
    return Layout("split folders", dict(sorted(folders.items(), key=lambda kv: order[kv[0]])), passed_over)


def fix_for(key: str) -> str:
    """How a message asks for another folder: a setting is set, a command line's argument is given."""
    return f"give {key}" if key.startswith("--") or " " in key else f"set {key} to"


def check_class_folders(root: Path, layout: Layout, classes: list[str], key: str = "data.dataset") -> None:
    """A class named like a split means a layout one level off; fewer than two classes is no task.
    `key`: the setting or argument that named the folder, for the fix."""
    misnamed = [c for c in classes if split_of_folder(c)]
    if misnamed:
        where = "" if layout.kind == "class folders" else " inside a split folder"
        raise DataError(f"{root}: class folder(s) {', '.join(misnamed)}{where} are named like a split; "
                        "a split folder must hold class folders. Move the images up or down one level, "
                        "or rename the class")
    if len(classes) < 2:
        found = f"only {classes[0]!r}" if classes else "none"
        raise DataError(f"{root} needs at least 2 class folders to classify; found {found}. Lay it out as "
                        f"{root}/<class>/<image> with one folder per class, or {fix_for(key)} the folder that "
                        "holds the class folders")


def empty_classes_error(empty: list[str], root, why: str = "") -> DataError:
    """The one message for class folders without a readable image to train on (run, inspect, init)."""
    return DataError(f"class folder(s) {', '.join(empty)} in {root} have no readable training images{why}; add "
                     "images or remove the folder")
