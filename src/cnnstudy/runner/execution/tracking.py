"""Experiment tracking, optional: TensorBoard event files and MLflow runs, fed from the rows and
files a run writes anyway (the training loop only calls one `on_epoch` hook).

- `tracking.tensorboard: true`: `<run>/tensorboard/` gets every epoch's scalars (train_loss,
  train_acc, train_eval_acc, val_loss, val_acc, ...), the run's plots as images and its hparams.
- `tracking.mlflow: true` (a SQLite store `<study>/mlflow.db`) or a tracking URI: one MLflow run
  per cnnstudy run (per repeat), in an experiment named after the study, with the run's config as
  params, every epoch's metrics, the final scores, and plots/metrics.json as artefacts; the study's
  report goes to one more run, "<study> report".

The packages are imported only when asked for (`pip install 'cnnstudy[tracking]'`; missing ones
stop the study before training). An error while tracking is a warning: it turns that tracker off
for the run and never fails the run.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from ...config import StudyError, TrackingConfig
from ...fileio import read_json, read_jsonl, write_json
from ..planning.fingerprint import flatten

EPOCH_KEYS = ("train_loss", "train_acc", "train_eval_loss", "train_eval_acc", "val_loss", "val_acc", "seconds")
FINAL_KEYS = {"test_acc": ("test", "accuracy"), "test_f1_macro": ("test", "f1_macro"),
              "test_auc_macro": ("test", "auc_macro")}  # plus best_val_acc; never an epoch key's name
STATE_FILE = "tracking.json"


def check_tracking(cfg: TrackingConfig) -> None:
    """Before anything trains: the packages a study's tracking needs must import."""
    wanted = [("tensorboard", "tensorboard")] if cfg.tensorboard else []
    wanted += [("mlflow", "mlflow")] if cfg.mlflow else []
    for key, module in wanted:
        try:
            __import__(module)
        except ImportError:
            raise StudyError(f"tracking.{key} needs the {module} package: pip install 'cnnstudy[tracking]', "
                             f"or set tracking.{key}: false") from None


def final_scores(metrics: dict) -> dict[str, float]:
    scores = {name: metrics.get(part, {}).get(key) for name, (part, key) in FINAL_KEYS.items()}
    scores["best_val_acc"] = metrics["best_val_acc"]
    return {k: float(v) for k, v in scores.items() if v is not None}


class TensorBoardRun:
    def __init__(self, run_dir: Path, label: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def epoch(self, row: dict) -> None:
        for key in EPOCH_KEYS:
            if key in row:
                self.writer.add_scalar(key, row[key], row["epoch"])
        self.writer.flush()

    def finish(self, metrics: dict, config: dict, run_dir: Path) -> None:
        for png in sorted((run_dir / "plots").glob("*.png")):
            pixels = np.asarray(Image.open(png).convert("RGB"))
            self.writer.add_image(f"plots/{png.stem}", pixels, dataformats="HWC")
        params = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in flatten(config).items()}
        scores = {f"hparam/{k}": v for k, v in final_scores(metrics).items()}
        self.writer.add_hparams(params, scores, run_name="hparams")
        self.writer.close()


def quick_failing_mlflow() -> None:
    """A tracking server that is down should cost seconds, not MLflow's default minutes of retries
    (which would happen once per run before the tracker turns itself off). The user's settings win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")


def mlflow_experiment(client, name: str, artifacts: Path | None) -> str:
    """The experiment's id, created on first use (with its artefacts in `artifacts` for the local store)."""
    found = client.get_experiment_by_name(name)
    if found:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=artifacts.resolve().as_uri() if artifacts else None)


class MlflowRun:
    def __init__(self, run_dir: Path, label: str, uri: str, experiment: str, config: dict,
                 artifacts: Path | None) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Param

        quick_failing_mlflow()
        self.client = MlflowClient(tracking_uri=uri)
        experiment_id = mlflow_experiment(self.client, experiment, artifacts)
        state = read_json(run_dir / STATE_FILE) if (run_dir / STATE_FILE).exists() else {}
        self.run_id = state.get("mlflow_run_id")
        if self.run_id is None:  # a resumed run keeps logging into its MLflow run
            created = self.client.create_run(experiment_id, run_name=label, tags={"cnnstudy.run": label})
            self.run_id = created.info.run_id
            write_json(run_dir / STATE_FILE, {**state, "mlflow_run_id": self.run_id, "mlflow_uri": uri})
            params = [Param(k, str(v)[:6000]) for k, v in flatten(config).items()]
            for start in range(0, len(params), 100):
                self.client.log_batch(self.run_id, params=params[start:start + 100])

    def epoch(self, row: dict) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(row[k]), now, row["epoch"])
                                                    for k in EPOCH_KEYS if k in row])

    def finish(self, metrics: dict, config: dict, run_dir: Path) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, 0) for k, v in final_scores(metrics).items()])
        self.client.log_artifacts(self.run_id, str(run_dir / "plots"), "plots")
        self.client.log_artifact(self.run_id, str(run_dir / "metrics.json"))
        self.client.set_terminated(self.run_id, "FINISHED")


class RunTrackers:
    """The trackers of one run. Whatever fails is switched off with one warning; the run goes on."""

    def __init__(self, makers: list[tuple[str, Callable[[], Any]]], log: Callable[[str], None]) -> None:
        self.log, self.active = log, []
        for name, make in makers:
            self._safely(name, lambda: self.active.append((name, make())))

    def _safely(self, name: str, action: Callable[[], Any]) -> None:
        try:
            action()
        except Exception as err:  # noqa: BLE001 - tracking must never fail a run
            self.log(f"warning: {name} tracking failed and is off for this run ({type(err).__name__}: {err})")
            self.active = [(n, t) for n, t in self.active if n != name]

    def epoch(self, row: dict) -> None:
        for name, tracker in list(self.active):
            self._safely(name, lambda: tracker.epoch(row))

    def finish(self, metrics: dict, config: dict, run_dir: Path, history: list[dict] | None = None) -> None:
        for name, tracker in list(self.active):
            for row in history or []:  # a run finished before tracking was on: its epochs first
                self._safely(name, lambda: tracker.epoch(row))
            self._safely(name, lambda: tracker.finish(metrics, config, run_dir))


class Tracking:
    """A study's tracking settings, opening trackers run by run."""

    def __init__(self, cfg: TrackingConfig, study_dir: Path, study_name: str, log: Callable[[str], None]) -> None:
        self.cfg, self.study_dir, self.study_name, self.log = cfg, study_dir, study_name, log

    @property
    def enabled(self) -> bool:
        return bool(self.cfg.tensorboard or self.cfg.mlflow)

    @property
    def mlflow_uri(self) -> str:
        return self.cfg.mlflow if isinstance(self.cfg.mlflow, str) else \
            f"sqlite:///{(self.study_dir / 'mlflow.db').resolve()}"

    @property
    def mlflow_artifacts(self) -> Path | None:
        """The local store keeps its artefacts in the study folder (MLflow's default is ./mlruns)."""
        return None if isinstance(self.cfg.mlflow, str) else self.study_dir / "mlflow-artifacts"

    def open(self, run_dir: Path, label: str, config: dict) -> RunTrackers:
        makers: list[tuple[str, Callable[[], Any]]] = []
        if self.cfg.tensorboard:
            makers.append(("tensorboard", lambda: TensorBoardRun(run_dir, label)))
        if self.cfg.mlflow:
            makers.append(("mlflow", lambda: MlflowRun(run_dir, label, self.mlflow_uri, self.study_name, config,
                                                       self.mlflow_artifacts)))
        return RunTrackers(makers, self.log)

    def untracked(self, run_dir: Path) -> bool:
        """A finished run that has never been tracked (tracking was turned on after it ran)."""
        state = read_json(run_dir / STATE_FILE) if (run_dir / STATE_FILE).exists() else {}
        return (self.cfg.tensorboard and not (run_dir / "tensorboard").exists()) or \
            (bool(self.cfg.mlflow) and "mlflow_run_id" not in state)

    def track_finished(self, run_dir: Path, label: str, config: dict, metrics: dict) -> None:
        self.open(run_dir, label, config).finish(metrics, config, run_dir, read_jsonl(run_dir / "history.jsonl"))

    def log_report(self, paths: list[Path]) -> None:
        if not self.cfg.mlflow:
            return
        try:
            from mlflow import MlflowClient

            quick_failing_mlflow()
            client = MlflowClient(tracking_uri=self.mlflow_uri)
            experiment_id = mlflow_experiment(client, self.study_name, self.mlflow_artifacts)
            run_id = client.create_run(experiment_id, run_name=f"{self.study_name} report",
                                       tags={"cnnstudy.kind": "report"}).info.run_id
            for path in paths:
                client.log_artifact(run_id, str(path))
            client.set_terminated(run_id, "FINISHED")
        except Exception as err:  # noqa: BLE001 - tracking must never fail a study
            self.log(f"warning: logging the report to MLflow failed ({type(err).__name__}: {err})")
