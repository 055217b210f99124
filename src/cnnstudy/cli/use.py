"""Commands that use a finished run: predict, explain, export. Inputs are checked before the model
loads (no images at all, a class the run does not have: exit 2); a file that cannot be read is
listed and the others still get their answer (exit 1)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .exits import DONE, SOME_FAILED, interruptible
from .study import positive


def check_run_folder(args: argparse.Namespace) -> None:
    """predict, explain, export: the run folder exists, said before torch loads."""
    from ..runner.planning.precheck import check_run_folder as check

    check(args.run_dir)


def input_files(paths: list[str]) -> list[Path]:
    """Every image file named or found under the folders named; stops (exit 2) when none of them exists."""
    from ..config import StudyError
    from ..use.inference import image_files

    files = image_files(paths)
    if not any(f.is_file() for f in files):
        what = "no image files found in" if any(Path(p).exists() for p in paths) else "none of these exist:"
        raise StudyError(f"{what} {', '.join(paths)}; name image files, or folders holding them")
    return files


def check_device(name: str) -> None:
    """--device: a device this machine has, checked before the model loads."""
    import torch

    from ..config import StudyError
    from ..training.devices import resolve_device

    try:
        device = resolve_device(name)
    except RuntimeError as err:
        raise StudyError(f"--device {name!r}: {str(err).splitlines()[0]}; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise StudyError(f"--device {name}: no such CUDA device on this machine; use cpu or auto")


def report_failures(rows: list[dict], what: str) -> int:
    bad = [r for r in rows if r["error"]]
    if bad:
        print(f"{len(bad)} of {len(rows)} file(s) have no {what}:" +
              "".join(f"\n  {r['file']}: {r['error']}" for r in bad), file=sys.stderr)
    return SOME_FAILED if bad else DONE


def prediction_table(rows: list[dict], top_k: int) -> str:
    """CSV: file, class, confidence, top1, p1, ..., error."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "class", "confidence"] + [f"{kind}{i}" for i in range(1, top_k + 1)
                                                       for kind in ("top", "p")] + ["error"])
    for row in rows:
        tops = [value for entry in row["top_k"] for value in (entry["class"], f"{entry['probability']:.6f}")]
        tops += [""] * (2 * top_k - len(tops))
        confidence = "" if row["confidence"] is None else f"{row['confidence']:.6f}"
        writer.writerow([row["file"], row["class"] or "", confidence, *tops, row["error"] or ""])
    return buffer.getvalue()


def say_fold(run_dir: Path, given: str) -> None:
    from ..use.inference import folded_choice

    if folded_choice(run_dir, given):
        print(folded_choice(run_dir, given), file=sys.stderr)


def cmd_predict(args: argparse.Namespace) -> int:
    import json

    from ..fileio import atomic_write_text
    from ..use.inference import load_run

    interruptible()
    files = input_files(args.paths)
    check_device(args.device)
    run = load_run(args.run_dir, args.run, args.device, flag="--run")
    say_fold(run.run_dir, args.run_dir)
    rows = run.predict(files, top_k=args.top_k, batch_size=args.batch_size, progress=True)
    text = json.dumps([{k: v for k, v in r.items() if k != "probabilities"} for r in rows], indent=2) + "\n" \
        if args.json else prediction_table(rows, args.top_k)
    done = sum(not r["error"] for r in rows)
    if args.out:
        atomic_write_text(args.out, text)
        print(f"{done} prediction(s) of {run.metrics['run']} written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return report_failures(rows, "prediction")


def check_target(target: str, classes: list[str]) -> None:
    """--target: predicted, true, or one of the run's classes (a close one suggested)."""
    import difflib

    from ..config import StudyError

    if target in ("predicted", "true") or target in classes:
        return
    close = difflib.get_close_matches(target, classes, n=1)
    raise StudyError(f"--target {target!r} is not one of the run's classes" +
                     (f" (did you mean {close[0]}?)" if close else "") +
                     f": use predicted, true, or one of {', '.join(classes)}")


def cmd_explain(args: argparse.Namespace) -> int:
    from ..fileio import read_json
    from ..use.explain import explain_images
    from ..use.inference import LoadedRun, resolve_run_dir

    interruptible()
    run_dir = resolve_run_dir(args.run_dir, args.run, flag="--run")
    check_target(args.target, read_json(run_dir / "metrics.json")["classes"])
    input_files(args.paths)  # no image at all: stop before the model loads
    check_device(args.device)
    run = LoadedRun(run_dir, args.device)
    say_fold(run_dir, args.run_dir)
    out = Path(args.out) if args.out else run.run_dir / "explain"
    rows = explain_images(run, args.paths, out, args.method, args.target, args.save_maps, args.batch_size)
    done = sum(not r["error"] for r in rows)
    print(f"{done} explanation(s) of {run.metrics['run']} ({args.method}) in {out}, listed in "
          f"{out / 'explanations.csv'}", file=sys.stderr)
    return report_failures(rows, "explanation")


def cmd_export(args: argparse.Namespace) -> int:
    from ..use.export import export_run
    from ..use.inference import load_run

    interruptible()
    run = load_run(args.run_dir, args.run, flag="--run")
    say_fold(run.run_dir, args.run_dir)
    path = export_run(run, args.format, Path(args.out) if args.out else None)
    print(f"{args.format}: {path} (verified on the run's test images; sidecar {path.name}.json)")
    return DONE


def add_run_commands(sub) -> None:
    """Commands that use a finished run: predict, explain, export."""
    predict = sub.add_parser("predict", help="classify images or folders with a finished run")
    predict.add_argument("run_dir", help="a run folder (runs/<study>/<phase>/<run>), or a study folder with --run")
    predict.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    predict.add_argument("--top-k", type=positive, default=3, help="classes listed per image, most likely first "
                                                                   "(default: 3)")
    predict.add_argument("--batch-size", type=positive, help="images per forward pass (default: the run's "
                                                             "train.batch_size)")
    predict.add_argument("--out", help="write here instead of standard output")
    predict.add_argument("--json", action="store_true", help="JSON instead of CSV")
    predict.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    predict.set_defaults(func=cmd_predict, precheck=check_run_folder)
    explain = sub.add_parser("explain", help="Grad-CAM: where a finished run looks, as overlays (and maps)")
    explain.add_argument("run_dir", help="a run folder, or a study folder with --run")
    explain.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    explain.add_argument("--out", help="folder for the overlays (default: <run>/explain); input paths are mirrored")
    explain.add_argument("--method", choices=["gradcam", "gradcam++", "scorecam"], default="gradcam",
                         help="gradcam (default, cnnstudy's own), gradcam++ or scorecam (the grad-cam package)")
    explain.add_argument("--target", default="predicted",
                         help="predicted (default), true (the image's folder names its class) or a class name")
    explain.add_argument("--save-maps", action="store_true",
                         help="also save each map as .npy: float32 in [0, 1], the image's own height x width")
    explain.add_argument("--batch-size", type=positive, default=16, help="images per batch (default: 16)")
    explain.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    explain.set_defaults(func=cmd_explain, precheck=check_run_folder)
    export = sub.add_parser("export", help="export a run's model to ONNX or TorchScript, verified")
    export.add_argument("run_dir", help="a run folder, or a study folder with --run")
    export.add_argument("--format", choices=["onnx", "torchscript"], default="onnx",
                        help="onnx (default; needs pip install 'cnnstudy[export]') or torchscript")
    export.add_argument("--out", help="file to write (default: model.onnx / model.torchscript.pt in the run folder)")
    export.set_defaults(func=cmd_export, precheck=check_run_folder)
    for command in (predict, explain, export):
        command.add_argument("--run", help="<phase>/<run> when run_dir is a study folder")
