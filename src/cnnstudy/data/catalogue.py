"""Public image-classification datasets cnnstudy can fetch by name, with the checksums their
maintainers publish (torchvision's MD5s, fast.ai's size + MD5) and how each archive becomes a
class-folder layout. `cnnstudy data list` shows them; a study naming one that is not on disk
fetches it (fetch.py does the verified, resumable, locked download).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .archives import cifar_batches_to_folders, extract, flowers_to_folders, move_contents, only_child, \
    pets_to_folders
from .errors import DataError
from .fetch import RemoteFile, download, install_lock, staging
from .layout import IMAGE_EXTENSIONS
from .paths import data_home, data_roots

Arrange = Callable[[dict[str, Path], Path, Path], None]  # (downloaded files by name, scratch, target)


@dataclass(frozen=True)
class Entry:
    name: str
    files: tuple[RemoteFile, ...]
    classes: int
    images: int
    approx_mb: int
    licence: str
    citation: str
    homepage: str
    layout: str  # what the fetched folder looks like
    arrange: Arrange
    expected_counts: dict[str, int] | None = None  # images per split folder, checked where no checksum exists


def _copy_files(files: dict[str, Path], scratch: Path, target: Path) -> None:
    for name, path in files.items():
        shutil.copy(path, target / name)


def _unpack_single_folder(files: dict[str, Path], scratch: Path, target: Path) -> None:
    (archive,) = files.values()
    extract(archive, scratch)
    move_contents(only_child(scratch), target)


def _cifar(files: dict[str, Path], scratch: Path, target: Path) -> None:
    extract(files["cifar-10-python.tar.gz"], scratch)
    cifar_batches_to_folders(scratch, target)


def _pets(files: dict[str, Path], scratch: Path, target: Path) -> None:
    for archive in files.values():
        extract(archive, scratch)
    pets_to_folders(scratch, target)


def _flowers(files: dict[str, Path], scratch: Path, target: Path) -> None:
    extract(files["102flowers.tgz"], scratch)
    for name in ("imagelabels.mat", "setid.mat"):
        shutil.copy(files[name], scratch / name)
    flowers_to_folders(scratch, target)


ZALANDO = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASTAI = "https://s3.amazonaws.com/fast-ai-imageclas/"
VGG = "https://www.robots.ox.ac.uk/~vgg/data/"

CATALOGUE: dict[str, Entry] = {e.name: e for e in [
    Entry("fashion-mnist",
          tuple(RemoteFile(ZALANDO + name, md5=md5) for name, md5 in [
              ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
              ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
              ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
              ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310")]),
          10, 70_000, 30, "MIT", "Xiao, Rasul, Vollgraf: Fashion-MNIST (arXiv:1708.07747, 2017)",
          "https://github.com/zalandoresearch/fashion-mnist", "the four IDX .gz files (train 60000, test 10000)",
          _copy_files),
    Entry("cifar10", (RemoteFile("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                                 md5="c58f30108f718f92721af3b95e74349a"),),
          10, 60_000, 163, "none stated (cite the report)",
          "Krizhevsky: Learning Multiple Layers of Features from Tiny Images (tech report, 2009)",
          "https://www.cs.toronto.edu/~kriz/cifar.html",
          "train/<class>/<n>.png (50000), test/<class>/<n>.png (10000), decoded from the python batches", _cifar),
    Entry("hymenoptera", (RemoteFile("https://download.pytorch.org/tutorial/hymenoptera_data.zip"),),
          2, 398, 45, "none stated (ImageNet images)",
          "PyTorch tutorial 'Transfer Learning for Computer Vision' (images from ImageNet)",
          "https://pytorch.org/tutorials/beginner/transfer_learning_tutorial.html",
          "train/{ants,bees} (245), val/{ants,bees} (153)", _unpack_single_folder, {"train": 245, "val": 153}),
    Entry("imagenette-160", (RemoteFile(FASTAI + "imagenette2-160.tgz", md5="c475f8f7617a200ba35b9facc48443c3",
                                        size=99_003_388),),
          10, 13_394, 94, "Apache-2.0", "Howard: Imagenette (fast.ai, 2019), a subset of ImageNet",
          "https://github.com/fastai/imagenette", "train/<wnid>/*.JPEG (9469), val/<wnid>/*.JPEG (3925)",
          _unpack_single_folder),
    Entry("imagewoof-160", (RemoteFile(FASTAI + "imagewoof2-160.tgz", md5="3559b194123981a540b87132dbda412f",
                                       size=92_612_825),),
          10, 12_954, 88, "Apache-2.0", "Howard: Imagewoof (fast.ai, 2019), 10 dog breeds from ImageNet",
          "https://github.com/fastai/imagenette", "train/<wnid>/*.JPEG (9025), val/<wnid>/*.JPEG (3929)",
          _unpack_single_folder),
    Entry("oxford-pets", (RemoteFile(VGG + "pets/data/images.tar.gz", md5="5c4f3ee8e5d25df40f4fd59a7f44e54c"),
                          RemoteFile(VGG + "pets/data/annotations.tar.gz", md5="95a8c909bbe2e81eed6a22bccdf3f68f")),
          37, 7_349, 773, "CC BY-SA 4.0", "Parkhi, Vedaldi, Zisserman, Jawahar: Cats and Dogs (CVPR 2012)",
          "https://www.robots.ox.ac.uk/~vgg/data/pets/",
          "train/<breed>/ (the official trainval list, 3680), test/<breed>/ (3669)", _pets),
    Entry("flowers102", (RemoteFile(VGG + "flowers/102/102flowers.tgz", md5="52808999861908f626f3c1f4e79d11fa"),
                         RemoteFile(VGG + "flowers/102/imagelabels.mat", md5="e0620be6f572b9609742df49c70aed4d"),
                         RemoteFile(VGG + "flowers/102/setid.mat", md5="a5357ecc9cb78c4bef273ce3793fc85c")),
          102, 8_189, 330, "none stated", "Nilsback, Zisserman: Automated Flower Classification over a Large "
          "Number of Classes (ICVGIP 2008)", "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/",
          "train/<label 001-102>/ (1020), val/ (1020), test/ (6149): the official split", _flowers),
]}


def locate(name: str) -> Path | None:
    """The dataset folder `name` under the search roots, if there is one."""
    return next((root / name for root in data_roots() if (root / name).is_dir()), None)


def downloads_folder(name: str) -> Path:
    return data_home() / "downloads" / name


def manual_instructions(entry: Entry) -> list[str]:
    """One line per file: where it comes from and where to put it by hand."""
    return [f"{entry.name}: {f.name} from {f.url} -> put it in {downloads_folder(entry.name)}/ "
            f"(or the whole dataset, laid out as {entry.layout}, in {data_home() / entry.name}/)"
            for f in entry.files]


def fetch_dataset(name: str, offline: bool = False, log=print) -> Path:
    """The dataset's folder, fetched, verified and laid out first if it is not on disk."""
    entry = CATALOGUE[name]
    found = locate(name)
    if found:
        return found
    if offline and not _all_downloaded(entry):
        raise DataError("offline, and a dataset is missing:\n  " + "\n  ".join(manual_instructions(entry)))
    home = data_home()
    with install_lock(home, name):
        if (home / name).is_dir():  # another process finished it while this one waited
            return home / name
        log(f"fetching {name} ({entry.approx_mb} MB, {entry.licence}) into {home / name}")
        files = {f.name: download(f, downloads_folder(name) / f.name, name, downloads_folder(name))
                 for f in entry.files}
        scratch = home / f".{name}.scratch"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        try:
            with staging(home / name) as target:
                entry.arrange(files, scratch, target)
                check_counts(entry, target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(downloads_folder(name), ignore_errors=True)
    return home / name


def _all_downloaded(entry: Entry) -> bool:
    folder = downloads_folder(entry.name)
    return all((folder / f.name).exists() for f in entry.files)


def check_counts(entry: Entry, folder: Path) -> None:
    for split, expected in (entry.expected_counts or {}).items():
        found = sum(1 for p in (folder / split).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if found != expected:
            raise DataError(f"{entry.name}: the archive holds {found} images in {split}/ where {expected} are "
                            f"expected; it is not the archive this catalogue describes, so it was not installed")
