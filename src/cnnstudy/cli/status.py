"""`cnnstudy status RUNS_DIR/STUDY [--watch]`: every unit of a study as done, running (epoch k of n),
queued or failed, the time it has run and an estimate of what is left, from any terminal, also while
the study runs (under `--jobs` and Ray too: the driver records every unit in progress.json).
`--watch` redraws in place (rich's Live) until the study ends. Only files are read: no torch loads.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from .exits import DONE, INTERRUPTED, interruptible

STYLES = {"done": "green", "skipped": "green", "pruned": "cyan", "running": "bold yellow", "queued": "dim",
          "failed": "bold red", "not run": "red", "interrupted": "magenta"}
FINISHED = ("done", "skipped", "pruned")


def check_status_folder(args: argparse.Namespace) -> None:
    """A study folder (what `cnnstudy run` made): exit 2 with the fix, before anything is shown."""
    from ..config import StudyError
    from ..runner.planning.lock import LOCK_FILE
    from ..runner.results.progress import PROGRESS_FILE

    folder = Path(args.study_dir)
    if any((folder / name).exists() for name in ("study.yaml", PROGRESS_FILE, LOCK_FILE)):
        return
    inside = sorted(str(p.parent) for p in folder.glob("*/study.yaml")) if folder.is_dir() else []
    hint = f"; the studies in it: {', '.join(inside)}" if inside else ""
    raise StudyError(f"{folder} is not a study folder (no study.yaml, progress.json or .lock); pass the folder "
                     f"`cnnstudy run` made, <--out>/<study name>, e.g. runs/quick{hint}")


def clock(seconds: float) -> str:
    """A duration as h:mm:ss (m:ss under an hour), for the table's time column."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(stamp))


def state_words(view) -> str:
    """What the study as a whole is doing, and for a study that stopped, how to continue it."""
    again = "the same `cnnstudy run` command continues it"
    words = {
        "preparing": f"preparing (pid {view.pid} on {view.host}): checking data and making splits, nothing trains yet",
        "running": f"running (pid {view.pid} on {view.host}), {view.slots} unit(s) at once ({view.executor})",
        "finished": "finished",
        "failed": f"failed: {view.note or 'a run failed'}; fix it, then {again}",
        "interrupted": f"interrupted (Ctrl-C or SIGTERM); {again}",
        "stopped": f"stopped (not running): its process (pid {view.pid}) ended without finishing it; {again}",
        "unrecorded": "progress is not recorded in this folder (an older cnnstudy, or torchrun made it): "
                      "its run folders show what is done; queued units and an estimate need a run by this version",
    }
    return words.get(view.state, view.state)


def summary_lines(view) -> list[str]:
    from ..runner.results.progress import left_words

    lines = [f"{view.name}: {state_words(view)}"]
    if view.started is not None:
        ran = f"ran {clock(view.elapsed)}" if view.ended else f"{clock(view.elapsed)} elapsed"
        lines.append(f"started {when(view.started)}, {ran}")
    parts = [f"{view.count(*FINISHED)} of {view.total} units done"]
    parts += [f"{n} {state}" for state in ("running", "queued", "interrupted", "failed", "not run")
              if (n := view.count(state))]
    left = left_words(view) if view.state != "unrecorded" else ""
    if left and view.state != "finished":
        parts.append(left if view.live else f"{left} when continued")
    lines.append("; ".join(parts))
    if view.left and view.state != "finished":
        lines.append(f"the estimate: {basis(view)}")
    return lines


def basis(view) -> str:
    """What the estimate rests on, and where it is rough."""
    from ..runner.results.estimate import UNFINISHED, measured_rates, run_of

    _, rates = measured_rates(view.units)
    words = [f"from {sum(u.trained for u in view.units if u.seconds > 0)} measured epoch(s), {view.slots} at once"]
    if not view.count("done", "pruned"):
        words.append("rough until a unit has finished")
    unmeasured = sum(u.count for u in view.units if u.state in UNFINISHED and run_of(u) not in rates)
    if unmeasured:
        words.append(f"{unmeasured} unit(s) of runs not measured yet counted at the study's mean epoch")
    return "; ".join(words)


def unit_cells(unit, now: float) -> tuple[str, str, str, str]:
    """(state, epochs done/planned, time, note) of one unit's row."""
    state, epochs, spent = unit.state, f"{unit.trained}/{unit.epochs}", ""
    if unit.state == "running":
        state = f"running: epoch {unit.trained + 1} of {unit.epochs}" if unit.trained < unit.epochs else \
            "running: scoring"
        spent = clock(now - unit.started) if unit.started else ""
    elif unit.state in FINISHED + ("failed",) and unit.started and unit.finished:
        spent = clock(unit.finished - unit.started)
    if unit.count > 1:
        epochs = f"{unit.count} × 0/{unit.epochs}"
    return state, epochs, spent, unit.note or ""


def shown_units(units: list, room: int | None) -> tuple[list, int]:
    """The units that fit in `room` rows: finished ones are left out first (counted)."""
    if room is None or len(units) <= room:
        return units, 0
    left_out = len(units) - room
    finished = [u for u in units if u.state in FINISHED]
    drop = {id(u) for u in finished[:left_out]}
    return [u for u in units if id(u) not in drop], len(drop)


def render(view, room: int | None = None):
    """The whole display: the study's lines, then a table of its units."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    for name, justify in (("unit", "left"), ("state", "left"), ("epochs", "right"), ("time", "right"),
                          ("note", "left")):
        table.add_column(name, justify=justify, overflow="fold")
    units, hidden = shown_units(view.units, room)
    for unit in units:
        state, epochs, spent, note = unit_cells(unit, view.now)
        table.add_row(unit.label, Text(state, style=STYLES.get(unit.state, "")), epochs, spent, note)
    parts = [Text(line) for line in summary_lines(view)]
    parts.append(table if view.units else Text("no units yet"))
    if hidden:
        parts.append(Text(f"({hidden} finished unit(s) not shown; `cnnstudy status` without --watch lists every unit)",
                          style="dim"))
    return Group(*parts)


def make_console():
    from rich.console import Console

    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=max(console.width, 120))


def watch(folder: Path, interval: float, console) -> None:
    """Redraw in place every `interval` seconds until the study ends (finished, failed, stopped)."""
    from rich.live import Live

    from ..runner.results.progress import read_study

    def room() -> int | None:
        return max(5, console.size.height - 8) if console.is_terminal else None

    view = read_study(folder)
    with Live(render(view, room()), console=console, auto_refresh=False) as live:
        while view.live:
            time.sleep(interval)
            view = read_study(folder)
            live.update(render(view, room()), refresh=True)
    if not console.is_terminal:  # Live leaves a redirected display without its last newline
        console.line()


def cmd_status(args: argparse.Namespace) -> int:
    from ..runner.results.progress import read_study

    interruptible()
    console = make_console()
    try:
        if args.watch:
            watch(Path(args.study_dir), args.interval, console)
        else:
            console.print(render(read_study(args.study_dir)))
    except KeyboardInterrupt:  # stops the watching, never the study
        return INTERRUPTED
    return DONE


def seconds(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value}")
    return value


def add_status_command(sub) -> None:
    status = sub.add_parser("status", help="every unit of a study: done, running (epoch k of n), queued, failed; "
                                           "time elapsed and left (also while it runs)")
    status.add_argument("study_dir", help="the study folder, e.g. runs/quick")
    status.add_argument("--watch", action="store_true", help="redraw in place until the study ends (Ctrl-C stops "
                                                             "watching, not the study)")
    status.add_argument("--interval", type=seconds, default=2.0, metavar="S",
                        help="with --watch: seconds between redraws (default: 2)")
    status.set_defaults(func=cmd_status, precheck=check_status_folder, torch_at_start=False)
