"""Where datasets are looked for, and where fetched ones go.

Search order for a dataset given by name: each folder in `$CNNSTUDY_DATA` (separated by `:`), then
the data home, then `/usr/share/datasets` (Debian's dataset packages). Fetched datasets go to the
data home: the first folder of `$CNNSTUDY_DATA`, or `$XDG_CACHE_HOME/cnnstudy/datasets`
(`~/.cache/cnnstudy/datasets`) when it is unset.
"""
from __future__ import annotations

import os
from pathlib import Path

SYSTEM_DATASETS = Path("/usr/share/datasets")


def _configured() -> list[Path]:
    return [Path(p).expanduser() for p in os.environ.get("CNNSTUDY_DATA", "").split(os.pathsep) if p.strip()]


def data_home() -> Path:
    configured = _configured()
    if configured:
        return configured[0]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "cnnstudy" / "datasets"


def data_roots() -> list[Path]:
    """Folders searched for a dataset given by name, first match wins."""
    return list(dict.fromkeys([*_configured(), data_home(), SYSTEM_DATASETS]))
