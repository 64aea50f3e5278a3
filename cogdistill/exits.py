"""How a cogdistill command ends: one owner for signals, exit codes and the one-line message.

- Bad input (a CogdistillError, a Hydra composition error, a full or read-only disk): one line
  naming the culprit and the fix, exit code 2.
- SIGINT (Ctrl-C) and SIGTERM: the job marks its MLflow run KILLED, stops its child processes and
  keeps every finished generation (they are cached as they finish); one line; exit 130 / 143.
- Anything else is a bug: one line saying so, exit 1. COGDISTILL_DEBUG=1 (or true, yes) prints the
  traceback too, before the same line and with the same exit code (2 stays 2).

SIGTERM is turned into a `Terminated` exception (a BaseException, like KeyboardInterrupt) so that
`finally` blocks and `except BaseException` clean-up run on it exactly as on Ctrl-C; Python's
default SIGTERM action kills the process with no clean-up at all, orphaning engine processes.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from contextlib import contextmanager
from typing import Callable, Iterator, NoReturn, Optional

EXIT_BAD_INPUT = 2
EXIT_BUG = 1


class Terminated(BaseException):
    """SIGTERM arrived (a scheduler's cancel, `kill PID`); raised wherever the main thread is."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(f"signal {signal.Signals(signum).name}")
        self.signum = signum

    def __reduce__(self):  # from a job process to the launcher (hydra/launcher=local): the signal, not the text
        return (Terminated, (self.signum,))


def interrupt_exit_code(exc: BaseException) -> Optional[int]:
    """130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP (128 + the signal number, as shells report
    them), else None."""
    if isinstance(exc, KeyboardInterrupt):
        return 128 + signal.SIGINT
    if isinstance(exc, Terminated):
        return 128 + exc.signum
    return None


def is_interrupt(exc: BaseException) -> bool:
    return interrupt_exit_code(exc) is not None


_stopping = False


def _on_signal(signum, _frame) -> None:
    global _stopping
    if _stopping and signum != signal.SIGINT:
        return  # already stopping: a SIGTERM (e.g. from a launcher after Ctrl-C) must not cut the clean-up short
    _stopping = True
    raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP (a closed terminal or ssh session) raise Terminated and SIGINT
    KeyboardInterrupt, in the main thread. A second Ctrl-C still interrupts (the user insists);
    any other signal after the first is ignored."""
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, _on_signal)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT/SIGTERM wait until the block ends: for the few calls that must not be cut in half
    (marking a run KILLED after an interrupt, writing a sweep's outcome)."""
    import threading

    if threading.current_thread() is not threading.main_thread():  # only the main thread handles signals
        yield
        return
    received = []
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    for sig in previous:
        signal.signal(sig, lambda signum, _frame: received.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            raise KeyboardInterrupt() if received[0] == signal.SIGINT else Terminated(received[0])


def debug() -> bool:
    """COGDISTILL_DEBUG=1, true or yes (any case); anything else (no, off, 0, unset) is off."""
    return os.environ.get("COGDISTILL_DEBUG", "").strip().lower() in ("1", "true", "yes")


def disk_problem(exc: BaseException) -> Optional[str]:
    """The one-line message for an OSError the user fixes on their side (full, read-only, denied)."""
    if not isinstance(exc, OSError) or exc.errno not in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM,
                                                           errno.EDQUOT):
        return None
    where = exc.filename or "a file cogdistill writes"
    what = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is exhausted",
            errno.EROFS: "the file system is read-only"}.get(exc.errno, "permission denied")
    return (f"cannot write {where}: {what}. Free space or fix the permissions there, or point cogdistill "
            "elsewhere: COGDISTILL_OUTPUT_DIR (Hydra's output folders), COGDISTILL_CACHE_DIR (the generation "
            "cache), MLFLOW_TRACKING_URI or tracking.uri (the MLflow store). Finished generations are kept; "
            "re-running resumes.")


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send `sig` to this process when its parent dies (no-op elsewhere)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(sig), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """One line, no traceback; escaped, or rich would eat `[multiplication]` as markup."""
    from rich.markup import escape

    from cogdistill.console import console

    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    sys.exit(code)


def report_and_exit(exc: BaseException) -> NoReturn:
    """The exit for an exception that reached the top of a command."""
    from cogdistill.errors import CogdistillError

    if debug() and not is_interrupt(exc):  # the traceback in addition: the exit code stays what it says
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    code = interrupt_exit_code(exc)
    if code is not None:
        from cogdistill.console import console

        name = signal.Signals(code - 128).name
        console.print(f"[bold yellow]stopped by {name}:[/] finished generations are cached and MLflow runs are "
                      "marked KILLED; run the same command again to resume.")
        sys.exit(code)
    if isinstance(exc, CogdistillError):
        fail(str(exc))
    from cogdistill.hydra_errors import hydra_problem  # hydra and yaml: imported only on this path

    message = disk_problem(exc) or hydra_problem(exc)
    if message:
        fail(message)
    fail(f"internal error: {type(exc).__name__}: {exc}. This is a bug in cogdistill: please report it with "
         "the command you ran (COGDISTILL_DEBUG=1 shows the traceback).", EXIT_BUG)


def run_command(fn: Callable[[], object]) -> None:
    """Run a command's body with the signal handlers installed and every ending mapped above."""
    install_signal_handlers()
    # Hydra prints its own errors with exit code 1 unless HYDRA_FULL_ERROR lets them through to us.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        fn()
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - this is the one place that decides how we end
        report_and_exit(exc)
