"""`--force` that survives an interruption: the same command continues a forced study.

A forced start clears the runs it redoes before anything trains, marks each of their folders with
the start's id (`.forced`) and records the start in `<study>/.force.json` (which runs, its id). If
it is interrupted, the same command finds that record: a run already cleared under this id is not
cleared again (it resumes from its last epoch, or is reused once finished), and only the runs the
interrupted start had not reached are redone. A finished study forgets the record, so the next
`--force` redoes everything it names again.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from pathlib import Path

from ...config import RunConfig
from ...fileio import atomic_write_text, read_json, write_json
from .plan import Blocked, check_removable
from .repeats import group_dir

FORCE_FILE, MARK = ".force.json", ".forced"


def forced_key(runs: list[RunConfig], prepared: dict, forced: set[str]) -> str:
    """What the forced runs are made from (their configs and images): an interrupted start is continued
    only by the same command on the same inputs; anything changed starts the force afresh."""
    made_from = [(cfg.run_id, cfg.model_dump(mode="json"), prepared[cfg.run_id].split.digest,
                  prepared[cfg.run_id].data_digest) for cfg in runs if cfg.run_id in forced]
    return hashlib.sha256(json.dumps(made_from, sort_keys=True, default=str).encode()).hexdigest()


def force_id(study_dir: Path, forced: set[str], key: str, log) -> str:
    """The id of this forced start: the interrupted one's, when it forced the same runs made from the
    same settings and images (said); else a new one."""
    path = study_dir / FORCE_FILE
    try:
        record = read_json(path) if path.exists() else {}
    except ValueError:
        record = {}
    if forced and record.get("runs") == sorted(forced) and record.get("key") == key and record.get("id"):
        log(f"continuing the --force started {record.get('since', 'earlier')}: the runs it already redid are kept "
            f"(delete {path} to redo them all again)")
        return record["id"]
    return uuid.uuid4().hex


def carried_out(group: Path, start: str) -> bool:
    mark = group / MARK
    return mark.is_file() and mark.read_text(encoding="utf-8").strip() == start


def still_forced(runs: list[RunConfig], study_dir: Path, forced: set[str], start: str) -> set[str]:
    """The forced runs that this start has not cleared yet (all of them, for a new start)."""
    return {cfg.run_id for cfg in runs if cfg.run_id in forced and not carried_out(group_dir(study_dir, cfg), start)}


def begin_force(jobs: list, study_dir: Path, forced: set[str], redo: set[str], start: str, key: str) -> None:
    """Record the start (`forced`: every run it forces), then clear each run it still has to redo
    (`redo`) and mark its folder with the id: here, in the driver, before any unit runs, so that two
    workers never clear each other's repeats."""
    if not forced:
        return
    record = study_dir / FORCE_FILE
    since = read_json(record).get("since") if record.exists() and read_json(record).get("id") == start else None
    write_json(record, {"id": start, "runs": sorted(forced), "key": key,
                        "since": since or time.strftime("%Y-%m-%d %H:%M:%S %z")})
    for job in jobs:
        if isinstance(job, Blocked) or job.cfg.run_id not in redo:
            continue
        group = group_dir(study_dir, job.cfg)
        if job.clear is not None and job.clear.exists() and not carried_out(group, start):
            shutil.rmtree(check_removable(job.clear, study_dir))
        job.clear = None  # cleared here, once: a unit must not clear it again
        group.mkdir(parents=True, exist_ok=True)
        if not carried_out(group, start):
            atomic_write_text(group / MARK, start + "\n")


def end_force(study_dir: Path) -> None:
    """The study finished: the next --force starts afresh."""
    (study_dir / FORCE_FILE).unlink(missing_ok=True)
