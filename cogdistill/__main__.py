"""`cogdistill [overrides]` (or `python -m cogdistill`) runs one job; `-m` runs a sweep (docs: Getting started).

How the command ends (exit codes, signals, one-line errors) is cogdistill/exits.py's business;
a sweep's outcome is cogdistill/sweep/sweeper.py's.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from cogdistill.config.schema import CONF_DIR
from cogdistill.config.validate import register_schemas
from cogdistill.console import quiet_third_party
from cogdistill.exits import run_command

register_schemas()
quiet_third_party()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> dict:
    from cogdistill.sweep.sweeper import run_task

    return run_task(cfg)


def cli() -> None:
    from cogdistill.config.overrides import check_overrides, effort_budgets
    from cogdistill.config.validate import register_budgets

    args, budgets = effort_budgets(sys.argv[1:])
    sys.argv[1:] = args
    register_budgets(budgets)
    # before Hydra: it would report these with exit code 1, no suggestion, and save them to .hydra/
    check_overrides(sys.argv[1:])
    main()
    from cogdistill.sweep import sweeper

    if sweeper.PENDING_ERROR is not None:
        raise sweeper.PENDING_ERROR
    if sweeper.LAST_RESULT is not None and sweeper.LAST_RESULT.exit_code():
        sys.exit(sweeper.LAST_RESULT.exit_code())


def entry() -> None:
    """The installed command `cogdistill`."""
    run_command(cli)


if __name__ == "__main__":
    entry()
