"""Commands about studies and datasets: run, report, inspect, models, data list, data fetch."""
from __future__ import annotations

import argparse
import shlex
import sys
import textwrap
from pathlib import Path

from .exits import BAD_USAGE, DONE, INTERRUPTED, SOME_FAILED, TERMINATED, interruptible


def study_name(path: str) -> str:
    """The study's name as its file gives it (for messages), or the file's stem if unreadable."""
    try:
        import yaml

        return str(yaml.safe_load(Path(path).read_text(encoding="utf-8"))["name"])
    except Exception:  # noqa: BLE001 - only a message depends on it
        return Path(path).stem


def precheck_study(args: argparse.Namespace) -> None:
    """`run` and `data fetch --study`: the study file, its --set and --dataset pairs, before torch."""
    from ..runner.planning.precheck import check_study
    from ..runner.planning.scopes import parse_roles

    if getattr(args, "study", None):
        check_study(args.study, args.set, parse_roles(args.dataset))


def check_study_folder(folder: str) -> None:
    from ..runner.planning.precheck import check_study_folder as check

    check(folder)


def check_dataset_argument(spec: str) -> None:
    from ..runner.planning.precheck import check_dataset_argument as check

    check(spec)


def precheck_init(args: argparse.Namespace) -> None:
    from ..runner.planning.precheck import check_init
    from ..runner.planning.scopes import parse_roles

    check_init(args.study, parse_roles(args.dataset))


def cmd_run(args: argparse.Namespace) -> int:
    from ..fileio import Terminated
    from ..runner.execution.executors import Parallel
    from ..runner.planning.scopes import parse_roles
    from ..runner.study import run_study

    interruptible()
    try:
        parallel = Parallel(args.jobs, args.threads, args.executor, args.ray_address)
        run_study(args.study, args.set, args.out, force=args.force or [], offline=args.offline, dist=args.dist,
                  parallel=parallel, datasets=parse_roles(args.dataset), only=args.only)
    except Terminated:
        print(f"\nterminated (SIGTERM): every file is whole and every finished epoch is saved; the same "
              f"command continues the study in {Path(args.out) / study_name(args.study)}.", file=sys.stderr)
        return TERMINATED
    except KeyboardInterrupt:
        print("\ninterrupted: every finished epoch is saved. Run the same command again to resume.",
              file=sys.stderr)
        return INTERRUPTED
    return DONE


def cmd_report(args: argparse.Namespace) -> int:
    from ..report.report import build_report
    from ..report.summary import write_summary

    interruptible()
    write_summary(Path(args.study_dir))  # the tables the report refers to, by the same code
    md, html = build_report(args.study_dir)
    print(f"report: {md} and {html}")
    return DONE


def model_minimums() -> dict[str, int]:
    """Each registered model's smallest input size, by model name."""
    from ..models.registry import get_spec, list_models

    return {name: get_spec(name).min_size for name in list_models()}


def cmd_inspect(args: argparse.Namespace) -> int:
    import json

    from ..data.catalogue import CATALOGUE, fetch_dataset
    from ..data.inspection import format_report, inspect_dataset
    from ..data.sources import find_dataset, open_source
    from ..data.state import files_table, table_digest
    from ..fileio import write_json
    from ..runner.planning.inputs import offline_from_env

    interruptible()
    if find_dataset(args.data)[0] is None and args.data in CATALOGUE and not offline_from_env():
        fetch_dataset(args.data)
    source = open_source(args.data)
    report = inspect_dataset(source, args.min_size, minimums=model_minimums(),
                             progress=None if args.json else "inspecting")
    items = [item for items in source.items.values() for item, _ in items]
    report["files_digest"] = table_digest(files_table(source, items))  # what a run's fingerprint records
    if args.labels or args.labels_csv:
        from ..use.labels import likely_mislabels

        report["label_check"] = likely_mislabels(source, report, progress=not args.json)
        if args.labels_csv:
            from ..data.labels import write_label_issues

            write_label_issues(Path(args.labels_csv), report["label_check"]["label_issues"])
    print(json.dumps(report, indent=2) if args.json else
          f"{format_report(report)}\nfiles digest (names, sizes, modification times): {report['files_digest']}")
    if args.out:
        write_json(args.out, report)
    if report["empty_classes"]:  # what `run` refuses, refused alike (exit 2)
        from ..data.layout import empty_classes_error

        raise empty_classes_error(report["empty_classes"], report["dataset"])
    if report["unreadable"]:
        print(f"{len(report['unreadable'])} unreadable image(s), listed above; they are left out of any split",
              file=sys.stderr)
        return SOME_FAILED
    return DONE


def cmd_models(args: argparse.Namespace) -> int:
    from ..models.registry import count_parameters, create_model, get_spec, list_models

    interruptible()
    if args.timm:
        return timm_table(args.timm)
    for name in list_models():
        params = count_parameters(create_model(name, args.num_classes))
        print(f"{name:20s} {params:>12,d}  {get_spec(name).description}")
    print("(and any torchvision classification model by name, e.g. resnet50, mobilenet_v2, efficientnet_b0,\n"
          " or timm/<model>[.<tag>]: cnnstudy models --timm 'convnext*' lists them)")
    return DONE


def timm_table(pattern: str) -> int:
    """timm models matching `pattern`, with parameters (ImageNet head) and their pretrained tags."""
    from ..models.timm_zoo import PREFIX, list_matching

    rows = list_matching(pattern.removeprefix(PREFIX))
    if not rows:
        print(f"no timm model matches {pattern!r}; patterns are shell-style, e.g. 'convnext*', '*vit_small*'",
              file=sys.stderr)
        return BAD_USAGE
    print(f"{'model':40s} {'params':>12s}  pretrained tags (model.name: timm/<model>.<tag>)")
    for name, params, tags in rows:
        count = f"{params:>12,d}" if params >= 0 else f"{'?':>12s}"
        shown = ", ".join(tags[:4]) + (f" (+{len(tags) - 4})" if len(tags) > 4 else "") if tags else "(no weights)"
        print(f"{PREFIX + name:40s} {count}  {shown}")
    with_weights = sum(1 for _, _, tags in rows if tags)
    print(f"{len(rows)} model(s), {with_weights} with pretrained weights (fetched from the Hugging Face Hub)")
    return DONE


def catalogue_table(entries, locate) -> list[str]:
    """The catalogue as fixed-width lines; a long licence wraps within its own column."""
    lines = [f"{'name':16s} {'classes':>7s} {'images':>8s} {'MB':>5s}  {'licence':20s}  on disk"]
    for entry in entries:
        licence = textwrap.wrap(entry.licence, 20) or [""]
        lines.append(f"{entry.name:16s} {entry.classes:>7d} {entry.images:>8,d} {entry.approx_mb:>5d}  "
                     f"{licence[0]:20s}  {locate(entry.name) or '-'}")
        lines += [f"{'':41s}{part}" for part in licence[1:]]
    return lines


def cmd_data_list(args: argparse.Namespace) -> int:
    from ..data.catalogue import CATALOGUE, locate
    from ..data.paths import data_home

    interruptible()
    print("\n".join(catalogue_table(CATALOGUE.values(), locate)))
    print(f"\nfetched datasets go to {data_home()} ($CNNSTUDY_DATA, first folder)")
    return DONE


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from ..config import StudyError
    from ..data.catalogue import CATALOGUE, fetch_dataset

    interruptible()
    unknown = [name for name in args.names if name not in CATALOGUE]
    if unknown:
        raise StudyError(f"{', '.join(map(repr, unknown))} not in the catalogue; choose from {', '.join(CATALOGUE)}")
    if not args.study and not args.names:
        raise StudyError("name a dataset (cnnstudy data list) or pass --study FILE")
    if args.study:
        from ..runner.planning.inputs import ensure_inputs
        from ..runner.planning.scopes import parse_roles
        from ..runner.study import plan_study

        _, runs = plan_study(args.study, args.set, parse_roles(args.dataset))
        ensure_inputs(runs, Path(args.study).parent, offline=False,  # data fetch has no --only: run has
                      rerun=f"cnnstudy run {shlex.quote(args.study)} --only {{}} (with the same --set and --dataset)")
        print(f"every dataset and pretrained weight file {args.study} needs is on this machine")
    for name in args.names:
        print(f"{name}: {fetch_dataset(name)}")
    return DONE


def cmd_init(args: argparse.Namespace) -> int:
    from ..use.scaffold import init_study
    from ..runner.planning.scopes import parse_roles

    interruptible()
    init_study(Path(args.study), parse_roles(args.dataset), args.hours, lambda line: print(line, flush=True))
    return DONE


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def add_study_commands(sub) -> None:
    run = sub.add_parser("run", help="run (or continue) a study from a YAML file")
    run.add_argument("study", help="study file, e.g. studies/quick.yaml")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a run setting: for every run (train.epochs=2), one phase's runs "
                          "(phase4.train.lr=0.01) or one run (phase4/cnn_head:train.lr=0.01)")
    run.add_argument("--dataset", action="append", default=[], metavar="ROLE=PATH",
                     help="replace one of the study's dataset roles, classes and all, with a folder or a "
                          "dataset name, e.g. --dataset main=/photos/food (repeatable)")
    run.add_argument("--only", action="append", metavar="RUNS",
                     help="run only these runs or phases, comma-separated (and the runs they start from), "
                          "e.g. --only phase1/baseline,phase4")
    run.add_argument("--out", default="runs", help="folder that receives runs/<study> (default: runs)")
    run.add_argument("--offline", action="store_true",
                     help="fetch nothing: stop at once if a dataset or pretrained weight file is missing")
    run.add_argument("--force", nargs="?", const="*", action="append", metavar="PHASE/RUN",
                     help="redo runs although results exist: alone, every run; with PHASE/RUN (repeatable), "
                          "that run and every run that starts from it. Interrupted, the same command continues")
    run.add_argument("--jobs", type=positive, metavar="N",
                     help="units (runs, repeats, sweep trials) at once, each in its own worker process "
                          "(default: 1 on CPU, one per visible GPU)")
    run.add_argument("--threads", type=positive, metavar="T",
                     help="torch threads per unit (default: all cores serially, cores / N with --jobs N; "
                          "1 on Ray, where it is also each task's CPUs)")
    run.add_argument("--executor", choices=["local", "ray"], default="local",
                     help="local: this machine; ray: tasks on a Ray cluster (pip install 'cnnstudy[ray]')")
    run.add_argument("--ray-address", metavar="ADDRESS",
                     help="with --executor ray: auto, HOST:6379 or ray://HOST:10001 (default: a fresh local "
                          "Ray instance, never one left running)")
    run.set_defaults(func=cmd_run, precheck=precheck_study)
    init = sub.add_parser("init", help="write the seed study for your own image folders")
    init.add_argument("study", help="the study file to write, e.g. my_study.yaml (never overwritten)")
    init.add_argument("--dataset", action="append", default=[], metavar="ROLE=PATH", required=True,
                      help="main=FOLDER (phases 1-3), and optionally transfer=FOLDER (4.1: the best phase-3 "
                           "CNN on new classes) and transfer3=FOLDER (4.2: a new head, pretrained backbones)")
    init.add_argument("--hours", type=float, metavar="H",
                      help="fit the study into about H hours on this machine (fewer images per class in "
                           "phases 1-3); default: every image")
    init.set_defaults(func=cmd_init, precheck=precheck_init, torch_at_start=False)
    report = sub.add_parser("report", help="rebuild report.md/report.html from a study folder")
    report.add_argument("study_dir", help="e.g. runs/quick")
    report.set_defaults(func=cmd_report, precheck=lambda args: check_study_folder(args.study_dir))
    inspect = sub.add_parser("inspect", help="check a dataset: layout, counts, unreadable files, copies, sizes "
                                                        "(--labels: likely mislabels)")
    inspect.add_argument("data", help="a dataset folder, or a name (on disk or in the catalogue)")
    inspect.add_argument("--min-size", type=int, default=46,
                         help="also flag images smaller than this (px); every model's own minimum is reported too")
    inspect.add_argument("--labels", action="store_true",
                         help="also rank likely mislabels (cleanlab, on a probe of pretrained EfficientNet-Lite0 "
                              "features; about 75 s per thousand images on 2 cores)")
    inspect.add_argument("--labels-csv", metavar="FILE", help="with --labels: also write the ranked list as CSV "
                         "(file, given_label, suggested_label, score); keep the rows you judge wrong and name the "
                         "file in data.exclude")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    inspect.add_argument("--out", help="also write the JSON report to this file")
    inspect.set_defaults(func=cmd_inspect, precheck=lambda args: check_dataset_argument(args.data))
    models = sub.add_parser("models", help="list registered models with their parameter counts")
    models.add_argument("--num-classes", type=positive, default=10,
                        help="classes of the head the parameters are counted with (default: 10)")
    models.add_argument("--timm", metavar="PATTERN", help="list timm models matching PATTERN (e.g. 'convnext*') "
                        "with parameter counts and pretrained tags")
    models.set_defaults(func=cmd_models)


def add_data_commands(sub) -> None:
    data = sub.add_parser("data", help="the catalogue of public datasets: list, fetch").add_subparsers(
        dest="data_command", required=True, metavar="ACTION")
    data.add_parser("list", help="catalogue datasets, their licence and whether they are on disk").set_defaults(
        func=cmd_data_list)
    fetch = data.add_parser("fetch", help="fetch datasets by name, or everything a study needs (--study)")
    fetch.add_argument("names", nargs="*", help="catalogue names, e.g. cifar10 hymenoptera")
    fetch.add_argument("--study", help="fetch every dataset and pretrained weight file this study needs")
    fetch.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as for cnnstudy run")
    fetch.add_argument("--dataset", action="append", default=[], metavar="ROLE=PATH", help="as for cnnstudy run")
    fetch.set_defaults(func=cmd_data_fetch, precheck=precheck_study)
