"""Test helpers: the shared datasets (skipped when absent), tiny synthetic image folders, study files."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnstudy.runner.study import run_study

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CNNSTUDY_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()


def shared_dataset(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"shared dataset {name!r} not found at {path} (set CNNSTUDY_SHARED_DATA to the folder "
                    "holding fashion-mnist, animals3, hymenoptera)")
    return path


def make_image_folder(root: Path, classes=("red", "green", "blue"), per_class: int = 12, size: int = 50,
                      seed: int = 0) -> Path:
    """Learnable synthetic images: class k has a bright channel k (plus noise), so a CNN can tell them apart."""
    rng = np.random.default_rng(seed)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 90, size=(size, size, 3))
            pixels[..., k % 3] += 150
            if k >= 3:  # more classes than channels: a stripe pattern tells them apart
                pixels[:: (k - 1), :, :] = 255
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / name / f"{name}_{i:03d}.png")
    return root



def write_study(path: Path, dataset: Path, runs_yaml: str, extra_defaults: str = "") -> Path:
    path.write_text(f"""
name: tiny
defaults:
  data: {{dataset: {dataset}, image_size: 48}}
  train: {{epochs: 2, batch_size: 8, lr: 0.002}}
{extra_defaults}
phases:
{runs_yaml}
""")
    return path


def run_quiet_study(tmp: Path, phases: str, overrides: list[str], seed: int) -> tuple[Path, Path]:
    """`phases` on 10 synthetic images per class with `seed`, run without printing: (study file, study folder)."""
    data = make_image_folder(tmp / "colors", per_class=10)
    study = write_study(tmp / "s.yaml", data, phases, extra_defaults=f"  seed: {seed}")
    return study, run_study(study, overrides, out_dir=tmp / "runs", log=lambda _: None)


def chromium() -> str:
    import shutil

    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not found:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium); .ci/run installs it")
    return found


def page_overflow(html: Path, width: int, profile: Path) -> tuple[int, int]:
    """(the document's scrollWidth, its viewport width) of `html` laid out `width` CSS px wide in headless
    Chromium. The page sits in an iframe of that width: a headless window is at least 500 px wide."""
    import re
    import subprocess

    probe = html.parent / f"probe-{width}.html"
    probe.write_text(f'<!doctype html><html><body style="margin:0"><iframe id="f" src="{html.name}" '
                     f'style="width:{width}px;height:900px;border:0"></iframe><script>document.getElementById("f")'
                     '.onload=function(){var d=this.contentDocument.documentElement;'
                     'document.title=d.scrollWidth+"x"+d.clientWidth;}</script></body></html>')
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
             "--disable-component-update", "--disable-sync", "--allow-file-access-from-files",
             f"--user-data-dir={profile}", "--window-size=1600,1000"]
    try:
        dom = subprocess.run([chromium(), *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True,
                             timeout=120).stdout
    finally:
        probe.unlink()
    found = re.search(r"<title>(\d+)x(\d+)</title>", dom)
    assert found, dom[-500:]
    return int(found.group(1)), int(found.group(2))
