"""cogdistill's Hydra sweeper (`hydra/sweeper=cogdistill`, the default), as the plugin class Hydra
looks for; what it does is in cogdistill/sweep/sweeper.py (see the launcher module for why it is split)."""

from typing import Any, List

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore

from cogdistill.sweep.sweeper import CogdistillSweeperConf, sweep

ConfigStore.instance().store(group="hydra/sweeper", name="cogdistill", node=CogdistillSweeperConf,
                             provider="cogdistill")


class CogdistillSweeper(BasicSweeper):
    def sweep(self, arguments: List[str]) -> Any:
        return sweep(self, arguments)
