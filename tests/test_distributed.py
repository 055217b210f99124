"""Data-parallel training under torchrun (gloo on CPU): the same artefacts, written once, metrics
over every image exactly once, and resume after a kill."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cnnstudy.data.loaders import CachedLoader
from cnnstudy.data.splits import Split
from cnnstudy.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from cnnstudy.fileio import read_json, read_jsonl

from helpers import make_image_folder, write_study

PHASES = """
  - name: p1
    runs:
      - {name: reg, model: cnn_regularized, augment: seed, train: {epochs: 3}}
"""
STATS = (IMAGENET_MEAN, IMAGENET_STD)


def torchrun(study, out, processes=2, **kwargs):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", "cnnstudy", "run", str(study), "--out", str(out)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def test_two_processes_train_once_and_score_every_image_once(tmp_path):
    data = make_image_folder(tmp_path / "colors", per_class=30, size=48)
    study = write_study(tmp_path / "s.yaml", data, PHASES)
    process = torchrun(study, tmp_path / "ddp")
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    run_dir = tmp_path / "ddp" / "tiny" / "p1" / "reg"
    for epoch in (1, 2, 3):  # printed by rank 0 alone
        assert output.count(f"Epoch [{epoch}/3], Loss:") == 1, output[-2000:]
    assert output.count("study finished") == 1 and "2 processes (DistributedDataParallel), global batch 8" in output
    assert [row["epoch"] for row in read_jsonl(run_dir / "history.jsonl")] == [1, 2, 3]
    metrics, split = read_json(run_dir / "metrics.json"), Split.load(run_dir / "split.json")
    assert metrics["processes"] == 2
    assert (metrics["val"]["n"], metrics["test"]["n"]) == (len(split.val), len(split.test))
    predictions = np.load(run_dir / "predictions.npz")
    assert sorted(predictions["test_ids"].tolist()) == sorted(item for item, _ in split.test)
    assert metrics["best_val_acc"] >= 0.9  # the same band as one process reaches on this easy task
    assert not list(run_dir.glob(".*.tmp"))


def test_a_killed_two_process_run_resumes(tmp_path):
    data = make_image_folder(tmp_path / "colors", per_class=40, size=64)
    study = write_study(tmp_path / "s.yaml", data, PHASES.replace("epochs: 3", "epochs: 4"))
    history = tmp_path / "ddp" / "tiny" / "p1" / "reg" / "history.jsonl"
    process = torchrun(study, tmp_path / "ddp")
    deadline = time.monotonic() + 240
    while not (history.exists() and len(read_jsonl(history)) >= 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in [process.pid, *descendants(process.pid)]:  # torchrun and both workers (their own sessions)
        os.kill(pid, signal.SIGKILL)
    process.wait()
    time.sleep(0.5)
    assert not (history.parent / "metrics.json").exists(), "finished before it could be killed"
    again = torchrun(study, tmp_path / "ddp")
    output, _ = again.communicate(timeout=300)
    assert again.returncode == 0, output[-3000:]
    assert "resuming" in output, output[-3000:]
    assert [row["epoch"] for row in read_jsonl(history)] == [1, 2, 3, 4]
    assert read_json(history.parent / "metrics.json")["epochs"] == 4


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, read from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def test_the_cached_loader_shards_batches_and_evaluation_sets(tmp_path):
    images = np.zeros((10, 4, 4, 3), np.uint8)
    labels = list(range(10))
    cpu = torch.device("cpu")

    def indices(loader):
        loader.set_epoch(1)
        return [index.tolist() for _, _, index in loader]

    single = indices(CachedLoader(images, labels, 4, STATS, cpu, shuffle=True, seed=3))
    ranks = [indices(CachedLoader(images, labels, 4, STATS, cpu, shuffle=True, seed=3, rank=r, world=2))
             for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 3  # equal step counts, or DDP would hang
    for step, batch in enumerate(single):  # each global batch is the single process's batch, split in two
        assert sorted(ranks[0][step] + ranks[1][step]) == sorted(batch)
    shards = [indices(CachedLoader(images, labels, 3, STATS, cpu, rank=r, world=2)) for r in (0, 1)]
    flat = [i for shard in shards for batch in shard for i in batch]
    assert sorted(flat) == list(range(10))  # evaluation: every image exactly once
