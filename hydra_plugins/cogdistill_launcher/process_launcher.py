"""cogdistill's Hydra launcher (`hydra/launcher=local`), as the plugin class Hydra looks for.

Hydra instantiates plugins only from the `hydra_plugins` namespace, and its plugin scan
re-executes this module; everything that must stay one object across that (the config
dataclass, pickled with every job's config) lives in cogdistill/sweep/launcher.py.
"""

from hydra.core.config_store import ConfigStore
from hydra.plugins.launcher import Launcher

from cogdistill.sweep.launcher import ProcessLauncherConf, ProcessLauncherImpl

ConfigStore.instance().store(group="hydra/launcher", name="process", node=ProcessLauncherConf,
                             provider="cogdistill")


class ProcessLauncher(ProcessLauncherImpl, Launcher):
    pass
