"""Exit codes, a contract for scripts (README, "Exit codes"), and how a signal ends a command: at
once while it starts, after the write in progress once it works."""
from __future__ import annotations

import os
import signal

DONE = 0  # everything asked for was done
SOME_FAILED = 1  # some inputs failed: each is listed on stderr, the rest was still done and written
BAD_USAGE = 2  # bad usage or configuration, found before any work
INTERRUPTED = 130  # Ctrl-C
TERMINATED = 143  # SIGTERM


def stop_now(signum, frame) -> None:
    """Ctrl-C or SIGTERM while the command starts (imports, parsing): nothing is done yet, so stop at
    once with one line. Raising there instead could leave a half-imported module (numpy, torch) that
    fails later with a traceback of its own."""
    terminated = signum == signal.SIGTERM
    os.write(2, f"\n{'terminated' if terminated else 'interrupted'} while starting: nothing was done\n".encode())
    os._exit(TERMINATED if terminated else INTERRUPTED)


def interruptible() -> None:
    """Called by each command once its imports are done, before any work: from here Ctrl-C raises
    KeyboardInterrupt (every finished epoch is kept) and SIGTERM finishes the write in progress first."""
    from ..fileio import stop_on_sigterm

    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:
        stop_on_sigterm()
