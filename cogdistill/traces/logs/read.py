"""One harness log read by its format's reader (cogdistill.registry.LOG_FORMATS), imported on first use."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from cogdistill.registry import LOG_FORMATS
from cogdistill.traces.logs.base import HarnessLog, LogFormatError


def read_log(path: Path, fmt: str) -> HarnessLog:
    spec = LOG_FORMATS.spec(fmt)
    if spec.package and importlib.util.find_spec(spec.package) is None:
        raise LogFormatError(f"{path}: reading {spec.what} needs the Python package '{spec.package}': "
                             "pip install 'cogdistill[interop]' (or the package itself).")
    log = LOG_FORMATS.load(fmt)(path)
    if not isinstance(log, HarnessLog):  # a reader's contract, not the user's input
        raise TypeError(f"the {fmt} reader returned {type(log).__name__}, not a HarnessLog")
    return log
