"""Where images come from: an image folder (class folders, optionally inside split folders) or
Fashion-MNIST's IDX files.

A source lists labelled item ids per source split and opens any item as an RGB PIL image.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .catalogue import CATALOGUE
from .errors import DataError
from .layout import IMAGE_EXTENSIONS, Layout, check_class_folders, detect_layout, fix_for, visible_dirs
from .paths import data_roots

FASHION_MNIST = "fashion-mnist"
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FASHION_MNIST_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                       "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def find_dataset(spec: str, base: Path | None = None) -> tuple[Path | None, list[Path]]:
    """The folder `spec` names (a path as written, relative to `base` too, or a name under the
    search roots), and every place looked at."""
    candidates = [Path(spec).expanduser()]
    if base is not None and not Path(spec).is_absolute():
        candidates.append(base / spec)
    candidates += [root / spec for root in data_roots()]
    found = next((c for c in candidates if c.is_dir()), None)
    return (found.resolve() if found else None), list(dict.fromkeys(candidates))


def resolve_dataset(spec: str, base: Path | None = None, key: str = "data.dataset") -> Path:
    """The folder of dataset `spec`; where there is none, an error whose fix names `key`, the setting
    that named it (data.dataset, or a command line's --dataset ROLE=)."""
    found, searched = find_dataset(spec, base)
    if found is None and spec in CATALOGUE:
        raise DataError(f"dataset {spec!r} is in the catalogue but not on disk yet (looked in "
                        f"{', '.join(map(str, searched))}); fetch it with: cnnstudy data fetch {spec}")
    if found is None:
        raise DataError(f"dataset {spec!r} not found (looked in {', '.join(map(str, searched))}); {fix_for(key)} "
                        "an existing folder, put it under $CNNSTUDY_DATA, or name a dataset of the catalogue "
                        "(cnnstudy data list)")
    return found


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image as upright 8-bit RGB: EXIF rotation applied, 16-bit scaled, alpha on white."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or wide.max() > 255 else 255.0
        image = Image.fromarray(np.clip(wide / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")


def open_image_file(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return to_rgb(image)


@dataclass
class FolderSource:
    """Images in class folders, possibly inside split folders (see layout.py)."""
    root: Path
    classes: list[str]
    items: dict[str, list[tuple[str, int]]]  # source split ("all" when unsplit) -> [(path under root, label)]
    layout: Layout
    ignored: list[str] = field(default_factory=list)  # hidden entries and files that are not images
    stray_images: list[str] = field(default_factory=list)  # images outside any class folder

    @property
    def name(self) -> str:
        return self.root.name

    def open(self, item_id: str) -> Image.Image:
        return open_image_file(self.root / item_id)

    def fingerprint(self, item_id: str) -> tuple[int, int]:
        stat = (self.root / item_id).stat()
        return stat.st_size, stat.st_mtime_ns

    def file_of(self, item_id: str) -> Path:
        """The file whose bytes an item is."""
        return self.root / item_id


def _hidden(folder: Path, root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in sorted(folder.iterdir()) if p.name.startswith(".")]


def _loose_images(folder: Path, root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")]


def _walk_class(class_dir: Path, root: Path) -> tuple[list[str], list[str]]:
    """Image files under a class folder, and what was passed over: hidden entries (once each, not
    their contents) and files that are not images."""
    images, ignored = [], []
    for path in sorted(class_dir.rglob("*")):
        rel = path.relative_to(root).as_posix()
        inside = path.relative_to(class_dir).parts
        hidden_at = [i for i, part in enumerate(inside) if part.startswith(".")]
        if hidden_at:
            if hidden_at[0] == len(inside) - 1:  # the hidden entry itself, not what lies inside it
                ignored.append(rel)
        elif path.is_file():
            (images if path.suffix.lower() in IMAGE_EXTENSIONS else ignored).append(rel)
    return images, ignored


def scan_folder(root: Path, key: str = "data.dataset") -> FolderSource:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; {fix_for(key)} a folder of class sub-folders")
    layout = detect_layout(root)
    split_dirs = {split: root / folder for split, folder in layout.folders.items()}
    classes = sorted({p.name for d in split_dirs.values() for p in visible_dirs(d)})
    check_class_folders(root, layout, classes, key)
    items: dict[str, list[tuple[str, int]]] = {}
    ignored, stray = _hidden(root, root), []
    for split, folder in split_dirs.items():
        items[split] = []
        ignored += _hidden(folder, root) if folder != root else []
        stray += _loose_images(folder, root)
        for label, cls in enumerate(classes):
            if (folder / cls).is_dir():
                images, passed_over = _walk_class(folder / cls, root)
                items[split] += [(rel, label) for rel in images]
                ignored += passed_over
    if layout.kind == "split folders":
        stray += _loose_images(root, root)
    return FolderSource(root, classes, items, layout, ignored, stray)


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzip-compressed) IDX file of unsigned bytes: images (N, H, W) or labels (N,)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file; re-download it")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {data.size}")
    return data.reshape(dims)


@dataclass
class FashionMnistSource:
    """The Fashion-MNIST IDX files as two source splits, train (60000) and test (10000)."""
    root: Path
    classes: list[str] = field(default_factory=lambda: list(FASHION_MNIST_CLASSES))
    ignored: list[str] = field(default_factory=list)
    stray_images: list[str] = field(default_factory=list)
    name: str = FASHION_MNIST
    layout: Layout = field(default_factory=lambda: Layout(
        "idx files", {split: files[0] for split, files in FASHION_MNIST_FILES.items()}))

    @cached_property
    def arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {split: (read_idx(self.root / images), read_idx(self.root / labels))
                for split, (images, labels) in FASHION_MNIST_FILES.items()}

    @cached_property
    def items(self) -> dict[str, list[tuple[str, int]]]:
        return {split: [(f"{split}/{i}", int(label)) for i, label in enumerate(labels)]
                for split, (_, labels) in self.arrays.items()}

    def open(self, item_id: str) -> Image.Image:
        split, index = item_id.split("/")
        return Image.fromarray(self.arrays[split][0][int(index)], mode="L").convert("RGB")

    @cached_property
    def _file_stats(self) -> dict[str, tuple[int, int]]:
        return {split: ((stat := (self.root / images).stat()).st_size, stat.st_mtime_ns)
                for split, (images, _) in FASHION_MNIST_FILES.items()}

    def fingerprint(self, item_id: str) -> tuple[int, int]:
        return self._file_stats[item_id.split("/")[0]]  # an item changes with its IDX file

    def file_of(self, item_id: str) -> Path:
        return self.root / FASHION_MNIST_FILES[item_id.split("/")[0]][0]

    def __getstate__(self) -> dict:
        # Sent to worker processes: they read the files again rather than receive 50 MB of pixels.
        return {key: value for key, value in self.__dict__.items() if key != "arrays"}


def open_source(spec: str, base: Path | None = None, key: str = "data.dataset") -> FolderSource | FashionMnistSource:
    """The dataset `spec` names, opened; `key`: the setting that named it, for the fix of an error."""
    path = resolve_dataset(spec, base, key)
    if (path / FASHION_MNIST_FILES["train"][0]).exists():
        return FashionMnistSource(path)
    return scan_folder(path, key)


class ClassSubset:
    """A source seen through `data.classes`: only the named classes, labelled in the order named.
    Everything else (root, layout, opening files) is the full source's."""

    def __init__(self, source, classes: list[str]) -> None:
        unknown = [name for name in classes if name not in source.classes]
        if unknown:
            raise DataError(f"data.classes: {', '.join(map(repr, unknown))} not among the {len(source.classes)} "
                            f"classes of {source.root}: {', '.join(source.classes)}")
        label_of = {source.classes.index(name): new for new, name in enumerate(classes)}
        self.base, self.classes = source, list(classes)
        self.items = {part: [(item, label_of[label]) for item, label in items if label in label_of]
                      for part, items in source.items.items()}

    def __getattr__(self, name: str):
        if name == "base":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.base, name)


def select_classes(source, classes: list[str] | None):
    return source if classes is None else ClassSubset(source, classes)
