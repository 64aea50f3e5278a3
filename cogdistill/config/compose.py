"""The main config composed outside `python -m cogdistill` (training, exports): the same conf/ tree,
schemas and validation, with Hydra's own config set meanwhile so hydra.searchpath folders count."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, List

from omegaconf import DictConfig

from cogdistill.config.schema import CONF_DIR, Config
from cogdistill.config.validate import register_schemas, validate


@contextmanager
def composed(overrides: List[str]) -> Iterator[DictConfig]:
    """The main config (conf/config.yaml) with these overrides, with Hydra's own config set meanwhile
    as under `python -m cogdistill`, so hydra.searchpath folders count for model links."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        HydraConfig.instance().set_config(compose("config", overrides, return_hydra_config=True))
        try:
            yield compose("config", overrides)
        finally:
            HydraConfig.instance().cfg = None


def compose_main(overrides: List[str]) -> Config:
    with composed(overrides) as cfg:
        return validate(cfg)
