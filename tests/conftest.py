"""Fixtures shared by the tests."""
import os
from pathlib import Path

import pytest

from helpers import SHARED_DATA, make_image_folder


def pytest_report_header(config):
    """Which precision `auto` trains in here: tests that judge what a model learned must hold in both."""
    from cnnstudy.training.devices import choose_precision
    from cnnstudy.training.runtime import cpu_flags

    import torch

    forced = os.environ.get("CNNSTUDY_AUTO_PRECISION")
    return (f"cnnstudy: precision auto = {choose_precision(torch.device('cpu'), 'auto')} on this CPU "
            f"({cpu_flags()}){'; forced by CNNSTUDY_AUTO_PRECISION' if forced else ''}")


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "colors")


@pytest.fixture(autouse=True, scope="session")
def _private_environment(tmp_path_factory):
    """Tests never read or fill the user's caches, find datasets by name only in a private data home
    and ../shared/data (CNNSTUDY_DATA, as .ci/run sets it), and never reach the internet."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CNNSTUDY_CACHE", str(tmp_path_factory.mktemp("cache")))
    data = [str(tmp_path_factory.mktemp("data-home"))] + ([str(SHARED_DATA)] if SHARED_DATA.is_dir() else [])
    mp.setenv("CNNSTUDY_DATA", os.pathsep.join(data))
    mp.setenv("CNNSTUDY_OFFLINE", "1")
    mp.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch-home")))
    mp.delenv("CNNSTUDY_MIRROR", raising=False)
    mp.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf-home")))  # timm's weights: never the user's cache
    mp.setenv("HF_HUB_OFFLINE", "1")
    # No background report rebuilds (a child process loading torch per finished run): the summary is
    # rebuilt in the driver instead; tests/test_status.py turns them on where it checks them.
    mp.setenv("CNNSTUDY_LIVE_REPORT", "0")
    mp.delenv("HF_ENDPOINT", raising=False)
    yield
    mp.undo()
