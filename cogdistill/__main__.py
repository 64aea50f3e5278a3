"""`python -m cogdistill [overrides]` runs one job; `-m` runs a sweep (see README)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from cogdistill.config import CONF_DIR, register_schemas
from cogdistill.console import exit_with_error, quiet_third_party
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
        exit_with_error(exc)


if __name__ == "__main__":
    try:  # before Hydra: it would report these with exit code 1, no suggestion, and save them to .hydra/
        check_overrides(sys.argv[1:])
    except CogdistillError as exc:
        exit_with_error(exc)
    main()
