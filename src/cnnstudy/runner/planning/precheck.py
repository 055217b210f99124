"""What a command line can be checked for before torch loads (about 7 s on 2 cores): the study
file's YAML, keys and values, the --set and --dataset pairs, model names and dataset folders. A
mistake there is answered in about a second; what needs the models themselves (an image size
below a model's minimum, layers to freeze, a sweep's values) is checked once the file reads
cleanly, by `plan_study`. Nothing here imports torch (tests/test_precheck.py holds it to that).
"""
from __future__ import annotations

from pathlib import Path

from ...config import RunConfig, StudyError
from ...data.catalogue import CATALOGUE
from ...data.errors import DataError
from .studyfile import load_study, merge_by_run, raise_problems


def dataset_problem(spec: str, base: Path, key: str = "data.dataset", opened: bool = True) -> str | None:
    """What is wrong with the dataset `spec` names, if anything: no such folder, or (`opened`) no class
    folders in it (a catalogue dataset not on disk yet is fetched before training: nothing). `key`:
    the setting or argument that named it, for the fix."""
    from ...data.sources import find_dataset, open_source, resolve_dataset

    if spec in CATALOGUE and find_dataset(spec, base)[0] is None:
        return None
    try:
        open_source(spec, base, key) if opened else resolve_dataset(spec, base, key)
    except DataError as err:
        return str(err)
    return None


def dataset_problems(runs: list[RunConfig], study_path: Path, datasets: dict[str, str] | None,
                     roles: set[str] | None = None, opened: bool = True) -> list[str]:
    """Every dataset that cannot be used: a --dataset pair's named by the pair (pairs naming no role
    of the study, `roles`, are reported as such elsewhere), a run's own by run. `opened` False: only
    found, not opened (where the split store opens each dataset next)."""
    given, base = datasets or {}, Path(study_path).parent
    problems = [f"--dataset {role}={value}: {problem}" for role, value in given.items()
                if (roles is None or role in roles)
                and (problem := dataset_problem(value, base, f"--dataset {role}=", opened))]
    found: dict[str, str | None] = {}  # each dataset opened once, however many runs use it
    for cfg in runs:
        if cfg.data.dataset not in given.values() and cfg.data.dataset not in found:
            found[cfg.data.dataset] = dataset_problem(cfg.data.dataset, base, opened=opened)
    return problems + [f"run {cfg.run_id}: data.dataset: {found[cfg.data.dataset]}" for cfg in runs
                       if found.get(cfg.data.dataset)]


def check_study(path: str | Path, pairs: list[str] | None = None, datasets: dict[str, str] | None = None) -> None:
    """The study file's own problems, and its datasets', in one message; nothing when it reads cleanly."""
    study, runs, problems, _ = load_study(path, pairs, datasets, deep=False)
    roles = set(study.datasets) if study is not None else set()
    raise_problems(str(path), merge_by_run(problems + dataset_problems(runs, Path(path), datasets, roles)))


def check_study_folder(folder: str | Path) -> None:
    if not (Path(folder) / "study.yaml").exists():
        raise StudyError(f"{folder} is not a study folder (no study.yaml); pass runs/<study>")


def check_run_folder(folder: str | Path) -> None:
    """A run or study folder that exists (what is in it is checked with the run's own files)."""
    if not Path(folder).is_dir():
        raise StudyError(f"{folder} does not exist; pass a run folder (runs/<study>/<phase>/<run>), or a study "
                         "folder with --run <phase>/<run>")


def check_dataset_argument(spec: str) -> None:
    """`cnnstudy inspect DATA`: a folder with class folders, or a catalogue name (fetched if missing)."""
    problem = dataset_problem(spec, Path.cwd(), "cnnstudy inspect")
    if problem is not None:
        raise StudyError(problem)


INIT_ROLES = ("main", "transfer", "transfer3")  # the seed study's datasets: phases 1-3, 4.1, 4.2


def check_init(study: str | Path, datasets: dict[str, str]) -> None:
    """`cnnstudy init`'s arguments: a file it may write, known roles, folders that exist."""
    if Path(study).exists():
        raise StudyError(f"{study} exists; cnnstudy init never overwrites a file: choose another name or move it")
    unknown = [role for role in datasets if role not in INIT_ROLES]
    if "main" not in datasets or unknown:
        raise StudyError(f"--dataset: give main=FOLDER (phases 1-3), and optionally transfer=FOLDER (4.1) and "
                         f"transfer3=FOLDER (4.2); {'unknown role ' + ', '.join(unknown) if unknown else 'no main'}")
    problems = [f"--dataset {role}={value}: {problem}" for role, value in datasets.items()
                if (problem := dataset_problem(value, Path.cwd(), f"--dataset {role}="))]
    raise_problems("cnnstudy init", problems)
