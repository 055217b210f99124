"""Turning a downloaded archive into the folder layout cnnstudy reads: class folders, optionally
inside split folders. Extraction never writes outside the target folder."""
from __future__ import annotations

import pickle
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import DataError


def extract(archive: Path, target: Path) -> None:
    """Unpack a .tar(.gz) or .zip into `target`, refusing members that would land outside it."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as bundle:
            root = target.resolve()
            for member in bundle.namelist():
                if root not in (target / member).resolve().parents and (target / member).resolve() != root:
                    raise DataError(f"{archive} holds {member!r}, a path outside the folder; refusing it")
            bundle.extractall(target)
    else:
        with tarfile.open(archive) as bundle:
            bundle.extractall(target, filter="data")  # the "data" filter refuses links and paths outside


def only_child(folder: Path) -> Path:
    """The single folder an archive unpacked into (e.g. hymenoptera_data/)."""
    children = [p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    if len(children) != 1 or not children[0].is_dir():
        raise DataError(f"expected one folder inside the archive, found {[c.name for c in children]}")
    return children[0]


def move_contents(source: Path, target: Path) -> None:
    for entry in source.iterdir():
        shutil.move(str(entry), target / entry.name)


def cifar_batches_to_folders(extracted: Path, target: Path) -> None:
    """CIFAR-10's python pickles as PNG files: <target>/{train,test}/<class>/<index>.png."""
    folder = extracted / "cifar-10-batches-py"
    with open(folder / "batches.meta", "rb") as handle:
        classes = [name.decode() if isinstance(name, bytes) else name
                   for name in pickle.load(handle, encoding="bytes")[b"label_names"]]
    parts = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    for split, batches in parts.items():
        count = 0
        for batch in batches:
            with open(folder / batch, "rb") as handle:
                raw = pickle.load(handle, encoding="bytes")
            images = np.asarray(raw[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            for pixels, label in zip(images, raw[b"labels"]):
                out = target / split / classes[label] / f"{count:05d}.png"
                out.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(out)
                count += 1


def pets_to_folders(extracted: Path, target: Path) -> None:
    """Oxford-IIIT Pet: images/<Breed>_<n>.jpg listed in annotations/{trainval,test}.txt ->
    <target>/{train,test}/<Breed>/<Breed>_<n>.jpg. Images in neither list are left out."""
    for split, listing in (("train", "trainval.txt"), ("test", "test.txt")):
        for line in (extracted / "annotations" / listing).read_text().splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            name = line.split()[0]
            breed = name.rsplit("_", 1)[0]
            out = target / split / breed / f"{name}.jpg"
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(extracted / "images" / f"{name}.jpg"), out)


def flowers_to_folders(extracted: Path, target: Path) -> None:
    """Oxford Flowers-102: jpg/image_<n>.jpg with labels (1-102) in imagelabels.mat and the official
    split in setid.mat -> <target>/{train,val,test}/<label, 3 digits>/image_<n>.jpg."""
    from scipy.io import loadmat

    labels = loadmat(extracted / "imagelabels.mat", squeeze_me=True)["labels"]
    sets = loadmat(extracted / "setid.mat", squeeze_me=True)
    for split, key in (("train", "trnid"), ("val", "valid"), ("test", "tstid")):
        for image_id in np.atleast_1d(sets[key]).tolist():
            name = f"image_{image_id:05d}.jpg"
            out = target / split / f"{int(labels[image_id - 1]):03d}" / name
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(extracted / "jpg" / name), out)
