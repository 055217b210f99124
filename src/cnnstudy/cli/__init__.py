"""Command line: cnnstudy run | report | status | inspect | predict | explain | export | models | data
list | data fetch.

Exit codes, a contract for scripts: 0 everything done; 1 some inputs failed (predict, explain and
inspect list each on stderr and still write the rest); 2 bad usage or configuration, found before
any work; 130 interrupted (Ctrl-C); 143 terminated (SIGTERM). A failure is one message on stderr
(a study file's every problem in one), never a traceback. This module imports nothing heavy, so that
`--version`, `--help` and a Ctrl-C while torch loads answer at once.
"""
from __future__ import annotations

import argparse
import gc
import os
import signal
import sys

from .._version import __version__
from .exits import BAD_USAGE, INTERRUPTED, TERMINATED, stop_now


def build_parser() -> argparse.ArgumentParser:
    from .status import add_status_command
    from .study import add_data_commands, add_study_commands
    from .use import add_run_commands

    parser = argparse.ArgumentParser(prog="cnnstudy", description=__doc__.split("\n\n")[0],
                                     epilog="exit codes: 0 done, 1 some inputs failed, 2 bad usage or config, "
                                            "130 interrupted, 143 terminated")
    parser.add_argument("--version", action="version", version=f"cnnstudy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_study_commands(sub)
    add_status_command(sub)
    add_run_commands(sub)
    add_data_commands(sub)
    return parser


def user_errors() -> tuple[type[BaseException], ...]:
    """The failures that are the user's to fix: one line each, exit 2."""
    from ..config import StudyError
    from ..data.errors import DataError
    from ..fileio import DiskFullError
    from ..models.checkpoint import CheckpointError
    from ..models.freeze import FreezeError
    from ..training.engine import NonFiniteLossError

    return StudyError, DataError, CheckpointError, FreezeError, NonFiniteLossError, FileNotFoundError, DiskFullError


def console() -> None:
    """The `cnnstudy` command (and `python -m cnnstudy`): `main`, then a quick exit."""
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # a torchrun rank: no interpreter teardown (end_rank)
        from ..training.distributed import end_rank

        end_rank(code)
    # The interpreter's last collections walk every object torch, torchvision and torchmetrics made
    # (about 2 s on 2 cores); frozen, they are skipped, while atexit handlers and finalizers still run.
    gc.freeze()
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig, handler in before.items():
        if handler is not signal.SIG_IGN:  # started with it ignored (nohup, a script's background job): keep so
            signal.signal(sig, stop_now)
    try:
        return _main(argv)
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (fileio.Terminated), while a command works
        terminated = type(stop).__name__ == "Terminated"
        print(f"\n{'terminated' if terminated else 'interrupted'}: every file is whole; run the same command "
              "again", file=sys.stderr)
        return TERMINATED if terminated else INTERRUPTED
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def checked_first(args: argparse.Namespace) -> int | None:
    """The command's own quick check (its `precheck`), before torch loads: a mistake in a study file
    or a path is answered in about a second. BAD_USAGE if it failed, else None."""
    from ..config import StudyError

    try:
        if getattr(args, "precheck", None) is not None:
            args.precheck(args)
    except StudyError as err:
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or os.environ.get("RANK", "0") == "0":  # under torchrun
            # every rank checks and rank 0 says it
            print(f"error: {err}", file=sys.stderr)
        return BAD_USAGE
    return None


def start_processes(args: argparse.Namespace):
    """This process's place in a torchrun job (the single process otherwise), with the runtime tuned;
    None for a command that loads torch only when it needs it (`init`)."""
    if not getattr(args, "torch_at_start", True):
        return None
    from ..training.distributed import init_from_env
    from ..training.runtime import tune_runtime

    dist = init_from_env()  # torchrun: this process's rank; otherwise the single process
    tune_runtime(dist.local_world)
    return dist


def _main(argv: list[str] | None) -> int:
    import errno

    args = build_parser().parse_args(argv)
    if (failed := checked_first(args)) is not None:
        return failed
    args.dist = start_processes(args)
    try:
        code = args.func(args)
        if args.dist is not None:
            from ..training.distributed import leave_together

            leave_together(args.dist)
        return code
    except user_errors() as err:
        if args.dist is None or args.dist.main or not str(err).startswith("rank 0 stopped"):  # rank 0 says it once
            print(f"error: {err}", file=sys.stderr)
        return BAD_USAGE
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        print(f"error: no space left on the device ({err}); free some space and run the same command again: "
              "it continues from the last finished epoch", file=sys.stderr)
        return BAD_USAGE
    finally:
        if args.dist is not None:
            from ..training.distributed import shutdown

            shutdown(args.dist)
