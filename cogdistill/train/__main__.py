"""`python -m cogdistill.train mode=sft|rl base=<model> [teacher=<model>] tasks=[...] [key=value ...]`

Training keys are the fields of cogdistill.train.settings.TrainConfig (steps=, lr=, lora.r=, ...);
any other key=value overrides the main config as for `python -m cogdistill` (study=,
data.mirror=, sampling.max_tokens=, task.<name>.max_items=, hydra.searchpath=[...]).
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import fields
from typing import List, Tuple

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cogdistill.config.schema import ConfigError
from cogdistill.console import exit_with_error, quiet_third_party
from cogdistill.errors import CogdistillError
from cogdistill.train.settings import TrainConfig

TRAIN_KEYS = {f.name for f in fields(TrainConfig)}


def split_args(argv: List[str]) -> Tuple[List[str], List[str]]:
    """(training keys, main-config overrides)."""
    train, main = [], []
    for arg in argv:
        head = arg.split("=", 1)[0].split(".", 1)[0]
        (train if head in TRAIN_KEYS and "=" in arg else main).append(arg)
    return train, main


def parse(argv: List[str]) -> Tuple[TrainConfig, List[str]]:
    train, main = split_args(argv)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.from_dotlist(train))
        return OmegaConf.to_object(merged), main  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise ConfigError(f"training settings {train}: {str(exc).splitlines()[0]} "
                          "(required: mode=sft|rl base=<model>; see cogdistill/train/config.py).") from None


def main(argv: List[str]) -> None:

    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return
    quiet_third_party()
    warnings.filterwarnings("ignore", message="TRL currently supports vLLM")  # vLLM here is the engine's, not TRL's
    try:
        cfg, overrides = parse(argv)
        from cogdistill.train.run import run_training

        run_training(cfg, overrides)
    except CogdistillError as exc:
        exit_with_error(exc)
    except Exception as exc:  # Hydra's own composition errors (unknown model, bad override)
        if type(exc).__module__.startswith("hydra"):
            exit_with_error(ConfigError(str(exc)))
        raise


def entry() -> None:
    """The installed command `cogdistill-train` (also `python -m cogdistill.train`)."""
    from cogdistill.exits import run_command

    run_command(lambda: main(sys.argv[1:]))  # signals -> 130/143 and runs KILLED, one line for any error


if __name__ == "__main__":
    entry()
