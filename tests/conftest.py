"""Fixtures shared by the tests."""
from pathlib import Path

import pytest

from helpers import make_image_folder


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "colors")



@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Tests never read or fill the user's decode cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CNNSTUDY_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()
