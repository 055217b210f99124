"""Command line: cnnstudy run | report | inspect | models."""
from __future__ import annotations

import argparse
import sys

from .checkpoint import CheckpointError
from .config import StudyError
from .data.errors import DataError
from .engine import NonFiniteLossError
from .freeze import FreezeError

USER_ERRORS = (StudyError, DataError, CheckpointError, FreezeError, NonFiniteLossError, FileNotFoundError)


def _write_report(study_dir) -> int:
    from .report import build_report

    md, html = build_report(study_dir)
    print(f"report: {md} and {html}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .study import run_study

    try:
        study_dir = run_study(args.study, args.set, args.out, force=args.force or [])
    except KeyboardInterrupt:
        print("\ninterrupted: every finished epoch is saved. Run the same command again to resume.",
              file=sys.stderr)
        return 130
    return _write_report(study_dir)


def cmd_report(args: argparse.Namespace) -> int:
    return _write_report(args.study_dir)


def cmd_inspect(args: argparse.Namespace) -> int:
    import json

    from .data.inspection import format_report, inspect_dataset
    from .data.sources import open_source
    from .fileio import write_json

    report = inspect_dataset(open_source(args.data), args.min_size)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    if args.out:
        write_json(args.out, report)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .models import count_parameters, create_model, get_spec, list_models

    for name in list_models():
        params = count_parameters(create_model(name, args.num_classes))
        print(f"{name:20s} {params:>12,d}  {get_spec(name).description}")
    print("(and any torchvision classification model by name, e.g. resnet50, mobilenet_v2, efficientnet_b0)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnstudy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run (or continue) a study from a YAML file")
    run.add_argument("study", help="study file, e.g. studies/quick.yaml")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a run setting for every run, e.g. --set train.epochs=2")
    run.add_argument("--out", default="runs", help="folder that receives runs/<study> (default: runs)")
    run.add_argument("--force", nargs="?", const="*", action="append", metavar="PHASE/RUN",
                     help="redo runs although results exist: alone, every run; with PHASE/RUN (repeatable), "
                          "that run and every run that starts from it")
    run.set_defaults(func=cmd_run)
    report = sub.add_parser("report", help="rebuild report.md/report.html from a study folder")
    report.add_argument("study_dir", help="e.g. runs/quick")
    report.set_defaults(func=cmd_report)
    inspect = sub.add_parser("inspect", help="check a dataset: counts, unreadable files, duplicates, sizes")
    inspect.add_argument("data", help="a folder of class sub-folders, a dataset name, or fashion-mnist")
    inspect.add_argument("--min-size", type=int, default=46, help="flag images smaller than this (px)")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    inspect.add_argument("--out", help="also write the JSON report to this file")
    inspect.set_defaults(func=cmd_inspect)
    models = sub.add_parser("models", help="list registered models with their parameter counts")
    models.add_argument("--num-classes", type=int, default=10)
    models.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .runtime import tune_runtime

    args = build_parser().parse_args(argv)
    tune_runtime()
    try:
        return args.func(args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
