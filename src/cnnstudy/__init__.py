"""cnnstudy: run whole image-classification studies from a YAML file.

In a notebook::

    import cnnstudy
    study_dir = cnnstudy.run_study("studies/quick.yaml", overrides={"train.epochs": 2})
    run = cnnstudy.load_run(study_dir / "phase3" / "regularized")
    run.metrics["test"]["accuracy"], run.history[-1]["val_acc"], run.config["train"]["lr"]
    run.predict(["cat.jpg", "photos/"])      # [{"file", "class", "confidence", "top_k", ...}, ...]
    model = cnnstudy.create_model("cnn_regularized", num_classes=3)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._version import __version__

__all__ = ["create_model", "list_models", "load_run", "run_study", "__version__"]


def __getattr__(name: str):
    """create_model and list_models, imported (with torch) when first used: `cnnstudy --version` and a
    Ctrl-C while the command line starts need no torch."""
    if name in ("create_model", "list_models"):
        from .models import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'cnnstudy' has no attribute {name!r}")


def run_study(path: str | Path, overrides: dict[str, Any] | list[str] | None = None, out_dir: str | Path = "runs",
              force: bool | list[str] = False, offline: bool = False, log=print, jobs: int | None = None,
              threads: int | None = None, executor: str = "local", ray_address: str | None = None,
              datasets: dict[str, str | Path] | None = None, only: list[str] | str | None = None) -> Path:
    """Run (or continue) a study file; returns its folder. `overrides` as {"train.epochs": 2} or
    ["train.epochs=2"], like `--set` (scoped keys too: {"phase4.train.lr": 0.01},
    {"phase4/cnn_head:train.lr": 0.01}); `datasets` as {"main": "/photos/food"}, like `--dataset`;
    `only` as "phase1/baseline,phase4" or a list; `force`, `offline`, `jobs`, `threads`, `executor`
    and `ray_address` as on the command line."""
    from .runner.execution.executors import Parallel
    from .runner.study import run_study as run

    pairs = [f"{key}={json.dumps(value)}" for key, value in overrides.items()] if isinstance(overrides, dict) \
        else list(overrides or [])
    return run(path, pairs, out_dir, force=force, log=log, offline=offline,
               parallel=Parallel(jobs, threads, executor, ray_address),
               datasets={role: str(value) for role, value in (datasets or {}).items()} or None,
               only=[only] if isinstance(only, str) else only)


def load_run(path: str | Path, run: str | None = None, device: str = "cpu"):
    """A finished run (`.predict`, `.metrics`, `.history`, `.config`, `.model`, `.classes`): a run
    folder, a repeated run's folder (its best repeat), or a study folder with `run="phase/run"`."""
    from .use.inference import load_run as load

    return load(path, run, device)
