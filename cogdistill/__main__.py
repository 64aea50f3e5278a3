"""`python -m cogdistill [overrides]` runs one job; `-m` runs a sweep (see README)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from cogdistill.config import CONF_DIR, register_schemas
from cogdistill.console import quiet_third_party
from cogdistill.errors import CogdistillError
from cogdistill.overrides import check_overrides

register_schemas()
quiet_third_party()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    from cogdistill.pipeline import run_job

    try:
        run_job(cfg)
    except CogdistillError as exc:
        report(exc)


def report(exc: CogdistillError) -> None:
    """One line, no traceback, exit code 2; escaped, or rich would eat `[multiplication]` as markup."""
    from rich.markup import escape

    from cogdistill.console import console

    console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
    sys.exit(2)


if __name__ == "__main__":
    try:  # before Hydra: it would report these with exit code 1, no suggestion, and save them to .hydra/
        check_overrides(sys.argv[1:])
    except CogdistillError as exc:
        report(exc)
    main()
