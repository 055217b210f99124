"""Decode once: every image of a split, decoded, made RGB and resized a single time into a uint8 array
on disk (memory-mapped), reused by every epoch, phase, run and later study.

The cache file is keyed by the dataset, the image size, the resize filter (where it is not bilinear)
and each file's name, size and mtime, so a changed file gives a new key; a file that does not hold
the array it claims is rebuilt.
"""
from __future__ import annotations

import hashlib
import math
import json
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .errors import DataError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock, two builders at worst decode twice
    fcntl = None


def cache_root() -> Path:
    return Path(os.environ.get("CNNSTUDY_CACHE", Path.home() / ".cache" / "cnnstudy"))


# Resize filters by the names timm's pretrained_cfg uses; a model's weights say which they were trained with.
FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST,
           "lanczos": Image.LANCZOS, "box": Image.BOX, "hamming": Image.HAMMING}
DEFAULT_FILTER = "bilinear"


def cache_key(source, items: list[str], size: int, known: dict | None = None, resample: str = DEFAULT_FILTER,
              crop_pct: float | None = None) -> str:
    """`known`: each item's (size, mtime) where already read (the split's files table), else stat."""
    dataset = str(source.root)
    fingerprints = [(item, *(known[item] if known else source.fingerprint(item))) for item in items]
    # Bilinear without a crop adds nothing to the key, so caches built before filters and crops existed stay valid.
    sized = [size] if resample == DEFAULT_FILTER else [size, resample]
    sized += [] if crop_pct is None else [f"crop_pct {crop_pct:g}"]
    return hashlib.sha1(json.dumps([dataset, *sized, fingerprints]).encode()).hexdigest()


def resized_pixels(image: Image.Image, size: int, resample: str = DEFAULT_FILTER,
                   crop_pct: float | None = None) -> np.ndarray:
    """An RGB image as the cache stores it: (size, size, 3) uint8, resized with the PIL filter that
    torchvision's Resize((size, size), interpolation) applies, so the cached and the classic
    pipelines (and predict) see identical pixels. With `crop_pct` (a timm model's evaluation), as
    timm's eval transform: the shorter side resized to floor(size / crop_pct), then the centre crop."""
    if crop_pct is None:
        return np.asarray(image.resize((size, size), FILTERS[resample]), dtype=np.uint8)
    resized = np.asarray(image.resize(scaled_size(*image.size, size, crop_pct), FILTERS[resample]), dtype=np.uint8)
    (pad_top, pad_bottom), (pad_left, pad_right), top, left = _crop_geometry(*resized.shape[:2], size)
    padded = np.pad(resized, ((pad_top, pad_bottom), (pad_left, pad_right), (0, 0)))
    return padded[top:top + size, left:left + size]


def scaled_size(width: int, height: int, size: int, crop_pct: float) -> tuple[int, int]:
    """(width, height) before the centre crop: the shorter side floor(size / crop_pct), as timm's
    transforms_imagenet_eval, the longer in proportion, as torchvision's Resize(int)."""
    short = math.floor(size / crop_pct)
    long = int(short * max(width, height) / min(width, height))
    return (short, long) if width <= height else (long, short)


def _crop_geometry(height: int, width: int, size: int) -> tuple[tuple[int, int], tuple[int, int], int, int]:
    """torchvision's center_crop: zero padding (top/bottom, left/right) where a side is shorter than
    `size`, then the crop's top and left in the padded image."""
    pads = [(max(size - side, 0) // 2, (max(size - side, 0) + 1) // 2) for side in (height, width)]
    top, left = (int(round((side + sum(pad) - size) / 2.0)) for side, pad in zip((height, width), pads))
    return pads[0], pads[1], top, left


def crop_window(width: int, height: int, size: int, crop_pct: float) -> tuple[float, float, float, float]:
    """Where the model's size x size input lies on the original image: (left, top, right, bottom) in its
    pixels (beyond its edges where the crop was padded)."""
    scaled_w, scaled_h = scaled_size(width, height, size, crop_pct)
    (pad_top, _), (pad_left, _), top, left = _crop_geometry(scaled_h, scaled_w, size)
    x0, y0 = (left - pad_left) * width / scaled_w, (top - pad_top) * height / scaled_h
    return x0, y0, x0 + size * width / scaled_w, y0 + size * height / scaled_h


def decode_resized(source, item: str, size: int, resample: str = DEFAULT_FILTER,
                   crop_pct: float | None = None) -> np.ndarray:
    try:
        image = source.open(item)
    except Exception as err:  # noqa: BLE001 - name the file, whatever PIL raised
        raise DataError(f"cannot decode {source.root / item} ({err}); it changed after the "
                        "split was made: fix or delete it, then delete the study's splits/ folder") from err
    return resized_pixels(image, size, resample, crop_pct)


def _load_valid(path: Path, count: int, size: int) -> np.ndarray | None:
    try:
        array = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError):
        return None  # truncated or not an .npy file at all
    if array.shape != (count, size, size, 3) or array.dtype != np.uint8:
        return None
    return array


def cache_path(source, items: list[str], size: int, root: Path | None = None, known: dict | None = None,
               resample: str = DEFAULT_FILTER, crop_pct: float | None = None) -> Path:
    key = cache_key(source, items, size, known, resample, crop_pct)[:20]
    return (root or cache_root()) / f"{source.name}-{size}px-{key}.npy"


@contextmanager
def builder_lock(path: Path) -> Iterator[None]:
    """One builder per cache file across processes (--jobs, Ray workers on one machine): the others
    wait here, then find the file built. The kernel drops the lock if its holder dies."""
    if fcntl is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def cached_images(source, items: list[str], size: int, workers: int | None = None, root: Path | None = None,
                  progress: bool = True, resample: str = DEFAULT_FILTER, crop_pct: float | None = None) -> np.ndarray:
    """A read-only (N, size, size, 3) uint8 array of `items`, built on first use (by one process at a time)."""
    path = cache_path(source, items, size, root, resample=resample, crop_pct=crop_pct)
    array = _load_valid(path, len(items), size) if path.exists() else None
    if array is not None:
        return array
    with builder_lock(path):
        array = _load_valid(path, len(items), size) if path.exists() else None  # built while we waited
        if array is not None:
            return array
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        try:
            _fill(tmp, source, items, size, workers, progress, resample, crop_pct)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)  # an interrupted build leaves nothing behind
    return np.load(path, mmap_mode="r")


def _fill(tmp: Path, source, items: list[str], size: int, workers: int | None, progress: bool,
          resample: str, crop_pct: float | None = None) -> None:
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(items), size, size, 3))
    if hasattr(os, "posix_fallocate"):  # claim the space now: a full disk is an error here, not a SIGBUS later
        with open(tmp, "rb+") as handle:
            os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        decoded = pool.map(lambda item: decode_resized(source, item, size, resample, crop_pct), items)
        for i, pixels in enumerate(tqdm(decoded, total=len(items), desc=f"caching {source.name} at {size}px",
                                        leave=False, dynamic_ncols=True, disable=not progress)):
            out[i] = pixels
    out.flush()
    del out
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
