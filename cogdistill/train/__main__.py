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
from cogdistill.console import quiet_third_party
from cogdistill.errors import CogdistillError
from cogdistill.exits import fail
from cogdistill.train.settings import TrainConfig, check_settings

TRAIN_KEYS = {f.name for f in fields(TrainConfig)}


def parse(argv: List[str]) -> Tuple[TrainConfig, List[str]]:
    """(training settings, main-config overrides), both read by the one override parser
    (cogdistill.config.overrides) that `cogdistill` uses too."""
    from cogdistill.config.overrides import split_overrides

    train, main = split_overrides(argv, TRAIN_KEYS)
    try:
        merged = OmegaConf.structured(TrainConfig)
        for key, value in train.items():
            OmegaConf.update(merged, key, value, merge=True)
        cfg: TrainConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as exc:
        shown = [f"{k}={v}" for k, v in train.items()]
        raise ConfigError(f"training settings {shown}: {str(exc).splitlines()[0]} "
                          "(required: mode=sft|rl base=<model>; see cogdistill/train/settings.py).") from None
    check_settings(cfg)
    return cfg, main


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
        fail(str(exc))
    except Exception as exc:  # Hydra's own composition errors (unknown model, bad override)
        if type(exc).__module__.startswith("hydra"):
            fail(str(exc))
        raise


def entry() -> None:
    """The installed command `cogdistill-train` (also `python -m cogdistill.train`)."""
    from cogdistill.exits import run_command

    run_command(lambda: main(sys.argv[1:]))  # signals -> 130/143 and runs KILLED, one line for any error


if __name__ == "__main__":
    entry()
