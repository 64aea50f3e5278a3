"""One rich console for the whole package, so progress bars and tables never interleave.

`console` is made on first use (rich costs a tenth of `--cfg job`'s start-up, which prints no table)."""

import sys
from typing import Any


def _make_console():
    from rich.console import Console

    # Logs and CI have no terminal width; rich would wrap every table at 80 columns there.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 140)


def __getattr__(name: str) -> Any:
    if name == "console":
        made = globals()["console"] = _make_console()  # later lookups find it without this hook
        return made
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def quiet_third_party() -> None:
    """Silence the progress bars and INFO chatter of libraries; our own output is rich."""
    import logging
    import os

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' tqdm bars follow it
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per downloaded run
    for name in ("transformers", "mlflow", "matplotlib", "alembic", "urllib3", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # huggingface_hub prints through its own handler and also passes each line up to the root
    # logger (Hydra's handler): every hub retry appeared twice
    logging.getLogger("huggingface_hub").propagate = False
