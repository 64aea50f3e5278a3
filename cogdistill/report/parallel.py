"""Two cores for the report's independent numpy work: a forked child computes half of a list while
this process computes the other half. Each item's result depends on the item alone (its own seed),
so the output is the same as a plain loop's, item for item; where fork is missing or the child
fails, the loop runs here. Only numpy work belongs here: polars' thread pool does not survive a fork."""

from __future__ import annotations

import os
import pickle
import sys
from typing import Callable, List, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")
MIN_ITEMS = 8  # below this a fork (~10 ms) costs more than it saves


def fork() -> int:
    """os.fork with the standard streams flushed first: text buffered before the fork is written once,
    by this process, and the child's own output (flushed by leave()) is not lost to os._exit."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    return os.fork()


def leave(code: int) -> None:
    """End a forked child: flush what it printed, then os._exit (no atexit handlers, no traceback)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    os._exit(code)


def split_map(fn: Callable[[T], R], items: Sequence[T]) -> List[R]:
    """[fn(item) for item in items], the second half computed in a forked child."""
    items = list(items)
    if len(items) < MIN_ITEMS or not hasattr(os, "fork"):
        return [fn(item) for item in items]
    half = len(items) // 2
    read_end, write_end = os.pipe()
    try:
        pid = fork()
    except OSError:
        os.close(read_end), os.close(write_end)
        return [fn(item) for item in items]
    if pid == 0:  # the child: compute, send, leave without atexit handlers or tracebacks
        code = 1
        try:
            os.close(read_end)
            with os.fdopen(write_end, "wb") as pipe:
                pickle.dump([fn(item) for item in items[half:]], pipe, protocol=pickle.HIGHEST_PROTOCOL)
            code = 0
        finally:
            leave(code)
    os.close(write_end)
    try:
        mine = [fn(item) for item in items[:half]]
    finally:
        with os.fdopen(read_end, "rb") as pipe:
            data = pipe.read()  # before waitpid: a full pipe would block the child forever
        _, status = os.waitpid(pid, 0)
    theirs = None
    if os.waitstatus_to_exitcode(status) == 0:
        try:
            theirs = pickle.loads(data)
        except Exception:  # a truncated message: the child's share is computed here instead
            theirs = None
    if theirs is None or len(theirs) != len(items) - half:
        theirs = [fn(item) for item in items[half:]]
    return mine + theirs


def in_background(fn: Callable[..., R], *args) -> Callable[[], R]:
    """Start fn(*args) in a forked child; the returned call waits and gives its result (an exception
    fn raised is raised there). Where fork is missing or the child dies, fn runs in the call instead."""
    if not hasattr(os, "fork"):
        return lambda: fn(*args)
    read_end, write_end = os.pipe()
    try:
        pid = fork()
    except OSError:
        os.close(read_end), os.close(write_end)
        return lambda: fn(*args)
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            try:
                message = ("ok", fn(*args))
            except Exception as exc:  # sent back: the parent raises it where it waits
                message = ("raised", exc)
            with os.fdopen(write_end, "wb") as pipe:
                pickle.dump(message, pipe, protocol=pickle.HIGHEST_PROTOCOL)
            code = 0
        finally:
            leave(code)
    os.close(write_end)

    def wait() -> R:
        with os.fdopen(read_end, "rb") as pipe:
            try:  # straight from the pipe: a large result (a study's traces) is never held twice as bytes
                kind, value = pickle.load(pipe)
            except Exception:  # the child died before sending all of it
                kind, value = None, None
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            kind = None
        if kind == "ok":
            return value
        if kind == "raised":
            raise value
        return fn(*args)  # the child died: compute here

    return wait
