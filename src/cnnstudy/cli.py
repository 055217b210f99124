"""Command line: cnnstudy run | report | inspect | predict | explain | export | models | data list | data fetch."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .models.checkpoint import CheckpointError
from .config import StudyError
from .data.errors import DataError
from .fileio import DiskFullError
from .training.engine import NonFiniteLossError
from .models.freeze import FreezeError

USER_ERRORS = (StudyError, DataError, CheckpointError, FreezeError, NonFiniteLossError, FileNotFoundError,
               DiskFullError)


def _write_report(study_dir) -> int:
    from .report.report import build_report

    md, html = build_report(study_dir)
    print(f"report: {md} and {html}")
    return 0


def study_name(path: str) -> str:
    """The study's name as its file gives it (for messages), or the file's stem if unreadable."""
    try:
        import yaml

        return str(yaml.safe_load(Path(path).read_text(encoding="utf-8"))["name"])
    except Exception:  # noqa: BLE001 - only a message depends on it
        return Path(path).stem


def cmd_run(args: argparse.Namespace) -> int:
    from .fileio import Terminated
    from .runner.executors import Parallel
    from .runner.study import run_study

    try:
        parallel = Parallel(args.jobs, args.threads, args.executor, args.ray_address)
        run_study(args.study, args.set, args.out, force=args.force or [], offline=args.offline, dist=args.dist,
                  parallel=parallel)
    except Terminated:
        print(f"\nterminated (SIGTERM): every file is whole and every finished epoch is saved; the same "
              f"command continues the study in {Path(args.out) / study_name(args.study)}.", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("\ninterrupted: every finished epoch is saved. Run the same command again to resume.",
              file=sys.stderr)
        return 130
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    return _write_report(args.study_dir)


def cmd_inspect(args: argparse.Namespace) -> int:
    import json

    from .data.inspection import format_report, inspect_dataset
    from .data.sources import open_source
    from .fileio import write_json

    from .data.catalogue import CATALOGUE, fetch_dataset
    from .data.sources import find_dataset
    from .runner.inputs import offline_from_env

    if find_dataset(args.data)[0] is None and args.data in CATALOGUE and not offline_from_env():
        fetch_dataset(args.data)
    from .data.state import files_table, table_digest

    source = open_source(args.data)
    report = inspect_dataset(source, args.min_size)
    items = [item for items in source.items.values() for item, _ in items]
    report["files_digest"] = table_digest(files_table(source, items))  # what a run's fingerprint records
    print(json.dumps(report, indent=2) if args.json else
          f"{format_report(report)}\nfiles digest (names, sizes, modification times): {report['files_digest']}")
    if args.out:
        write_json(args.out, report)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .models.registry import count_parameters, create_model, get_spec, list_models

    for name in list_models():
        params = count_parameters(create_model(name, args.num_classes))
        print(f"{name:20s} {params:>12,d}  {get_spec(name).description}")
    print("(and any torchvision classification model by name, e.g. resnet50, mobilenet_v2, efficientnet_b0)")
    return 0


def cmd_data_list(args: argparse.Namespace) -> int:
    from .data.catalogue import CATALOGUE, locate
    from .data.paths import data_home

    print(f"{'name':16s} {'classes':>7s} {'images':>8s} {'MB':>5s}  {'licence':28s} on disk")
    for entry in CATALOGUE.values():
        where = locate(entry.name)
        print(f"{entry.name:16s} {entry.classes:>7d} {entry.images:>8,d} {entry.approx_mb:>5d}  "
              f"{entry.licence[:28]:28s} {where or '-'}")
    print(f"\nfetched datasets go to {data_home()} ($CNNSTUDY_DATA, first folder)")
    return 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from .data.catalogue import CATALOGUE, fetch_dataset

    if args.study:
        from .runner.inputs import ensure_inputs
        from .runner.study import plan_study

        _, runs = plan_study(args.study, args.set)
        ensure_inputs(runs, Path(args.study).parent, offline=False)
        print(f"every dataset and pretrained weight file {args.study} needs is on this machine")
    for name in args.names:
        if name not in CATALOGUE:
            raise StudyError(f"{name!r} is not in the catalogue; choose one of {', '.join(CATALOGUE)}")
        print(f"{name}: {fetch_dataset(name)}")
    if not args.study and not args.names:
        raise StudyError("name a dataset (cnnstudy data list) or pass --study FILE")
    return 0


def prediction_table(rows: list[dict], top_k: int) -> str:
    """CSV: file, class, confidence, top1, p1, ..., error."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", "class", "confidence"] + [f"{kind}{i}" for i in range(1, top_k + 1)
                                                       for kind in ("top", "p")] + ["error"])
    for row in rows:
        tops = [value for entry in row["top_k"] for value in (entry["class"], f"{entry['probability']:.6f}")]
        tops += [""] * (2 * top_k - len(tops))
        confidence = "" if row["confidence"] is None else f"{row['confidence']:.6f}"
        writer.writerow([row["file"], row["class"] or "", confidence, *tops, row["error"] or ""])
    return buffer.getvalue()


def cmd_predict(args: argparse.Namespace) -> int:
    import json

    from .fileio import atomic_write_text
    from .use.inference import load_run

    run = load_run(args.run_dir, args.run, args.device)
    rows = run.predict(args.paths, top_k=args.top_k, batch_size=args.batch_size, progress=True)
    if not rows:
        raise StudyError(f"no image files found in {', '.join(args.paths)}")
    text = json.dumps([{k: v for k, v in r.items() if k != "probabilities"} for r in rows], indent=2) + "\n" \
        if args.json else prediction_table(rows, args.top_k)
    if args.out:
        atomic_write_text(args.out, text)
        print(f"{len(rows)} prediction(s) of {run.metrics['run']} written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    bad = [r for r in rows if r["error"]]
    if bad:
        print(f"{len(bad)} file(s) could not be read and have no prediction:" +
              "".join(f"\n  {r['file']}: {r['error']}" for r in bad), file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .use.export import export_run
    from .use.inference import load_run

    path = export_run(load_run(args.run_dir, args.run), args.format, Path(args.out) if args.out else None)
    print(f"{args.format}: {path} (verified on the run's test images; sidecar {path.name}.json)")
    return 0


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _add_study_commands(sub) -> None:
    run = sub.add_parser("run", help="run (or continue) a study from a YAML file")
    run.add_argument("study", help="study file, e.g. studies/quick.yaml")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a run setting for every run, e.g. --set train.epochs=2")
    run.add_argument("--out", default="runs", help="folder that receives runs/<study> (default: runs)")
    run.add_argument("--offline", action="store_true",
                     help="fetch nothing: stop at once if a dataset or pretrained weight file is missing")
    run.add_argument("--force", nargs="?", const="*", action="append", metavar="PHASE/RUN",
                     help="redo runs although results exist: alone, every run; with PHASE/RUN (repeatable), "
                          "that run and every run that starts from it")
    run.add_argument("--jobs", type=positive, metavar="N",
                     help="units (runs, repeats, sweep trials) at once, each in its own worker process "
                          "(default: 1 on CPU, one per visible GPU)")
    run.add_argument("--threads", type=positive, metavar="T",
                     help="torch threads per unit (default: all cores serially, cores / N with --jobs N; "
                          "1 on Ray, where it is also each task's CPUs)")
    run.add_argument("--executor", choices=["local", "ray"], default="local",
                     help="local: this machine; ray: tasks on a Ray cluster (pip install 'cnnstudy[ray]')")
    run.add_argument("--ray-address", metavar="ADDRESS",
                     help="with --executor ray: auto, or ray://HOST:10001 (default: start a local Ray instance)")
    run.set_defaults(func=cmd_run)
    report = sub.add_parser("report", help="rebuild report.md/report.html from a study folder")
    report.add_argument("study_dir", help="e.g. runs/quick")
    report.set_defaults(func=cmd_report)
    inspect = sub.add_parser("inspect", help="check a dataset: layout, counts, unreadable files, duplicates, sizes")
    inspect.add_argument("data", help="a dataset folder, or a name (on disk or in the catalogue)")
    inspect.add_argument("--min-size", type=int, default=46, help="flag images smaller than this (px)")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    inspect.add_argument("--out", help="also write the JSON report to this file")
    inspect.set_defaults(func=cmd_inspect)
    models = sub.add_parser("models", help="list registered models with their parameter counts")
    models.add_argument("--num-classes", type=int, default=10)
    models.set_defaults(func=cmd_models)


def cmd_explain(args: argparse.Namespace) -> int:
    from .use.explain import explain_images
    from .use.inference import load_run

    run = load_run(args.run_dir, args.run, args.device)
    out = Path(args.out) if args.out else run.run_dir / "explain"
    rows = explain_images(run, args.paths, out, args.method, args.target, args.save_maps, args.batch_size)
    if not rows:
        raise StudyError(f"no image files found in {', '.join(args.paths)}")
    bad = [r for r in rows if r["error"]]
    print(f"{len(rows) - len(bad)} explanation(s) of {run.metrics['run']} ({args.method}) in {out}, "
          f"listed in {out / 'explanations.csv'}", file=sys.stderr)
    if bad:
        print(f"{len(bad)} file(s) have no explanation:" + "".join(f"\n  {r['file']}: {r['error']}" for r in bad),
              file=sys.stderr)
    return 0


def _add_run_commands(sub) -> None:
    """Commands that use a finished run: predict, explain, export."""
    predict = sub.add_parser("predict", help="classify images or folders with a finished run")
    predict.add_argument("run_dir", help="a run folder (runs/<study>/<phase>/<run>), or a study folder with --run")
    predict.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    predict.add_argument("--top-k", type=int, default=3)
    predict.add_argument("--batch-size", type=int, help="default: the run's train.batch_size")
    predict.add_argument("--out", help="write here instead of standard output")
    predict.add_argument("--json", action="store_true", help="JSON instead of CSV")
    predict.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    predict.set_defaults(func=cmd_predict)
    explain = sub.add_parser("explain", help="Grad-CAM: where a finished run looks, as overlays (and maps)")
    explain.add_argument("run_dir", help="a run folder, or a study folder with --run")
    explain.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    explain.add_argument("--out", help="folder for the overlays (default: <run>/explain); folders are mirrored")
    explain.add_argument("--method", choices=["gradcam", "gradcam++", "scorecam"], default="gradcam")
    explain.add_argument("--target", default="predicted",
                         help="predicted (default), true (the image's folder names its class) or a class name")
    explain.add_argument("--save-maps", action="store_true",
                         help="also save each map as .npy: float32 in [0, 1], the image's own height x width")
    explain.add_argument("--batch-size", type=positive, default=16)
    explain.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    explain.set_defaults(func=cmd_explain)
    export = sub.add_parser("export", help="export a run's model to ONNX or TorchScript, verified")
    export.add_argument("run_dir", help="a run folder, or a study folder with --run")
    export.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    export.add_argument("--out", help="file to write (default: model.onnx / model.torchscript.pt in the run folder)")
    export.set_defaults(func=cmd_export)
    for command in (predict, explain, export):
        command.add_argument("--run", help="<phase>/<run> when run_dir is a study folder")


def _add_data_commands(sub) -> None:
    data = sub.add_parser("data", help="the catalogue of public datasets: list, fetch").add_subparsers(
        dest="data_command", required=True)
    data.add_parser("list", help="catalogue datasets, their licence and whether they are on disk").set_defaults(
        func=cmd_data_list)
    fetch = data.add_parser("fetch", help="fetch datasets by name, or everything a study needs (--study)")
    fetch.add_argument("names", nargs="*", help="catalogue names, e.g. cifar10 hymenoptera")
    fetch.add_argument("--study", help="fetch every dataset and pretrained weight file this study needs")
    fetch.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as for cnnstudy run")
    fetch.set_defaults(func=cmd_data_fetch)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnstudy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_study_commands(sub)
    _add_run_commands(sub)
    _add_data_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    import errno

    from .fileio import stop_on_sigterm
    from .training.distributed import init_from_env, shutdown
    from .training.runtime import tune_runtime

    args = build_parser().parse_args(argv)
    stop_on_sigterm()
    args.dist = init_from_env()  # torchrun: this process's rank; otherwise the single process
    tune_runtime(args.dist.local_world)
    try:
        return args.func(args)
    except USER_ERRORS as err:
        if args.dist.main or not str(err).startswith("rank 0 stopped"):  # rank 0 says it once
            print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        print(f"error: no space left on the device ({err}); free some space and run the same command again: "
              "it continues from the last finished epoch", file=sys.stderr)
        return 2
    finally:
        shutdown(args.dist)


if __name__ == "__main__":
    sys.exit(main())
