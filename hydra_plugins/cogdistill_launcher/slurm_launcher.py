"""`hydra/launcher=slurm`: hydra-submitit-launcher's SLURM launcher with cogdistill's process boundaries
(what they are and why: cogdistill/sweep/launcher.py), as the plugin class conf/hydra/launcher/slurm.yaml names."""

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as _SubmititSlurmLauncher
except ImportError:  # not installed: Hydra's plugin scan would warn on every command; the preset says what to install
    _SubmititSlurmLauncher = None

from cogdistill.sweep.launcher import SlurmLauncherImpl

if _SubmititSlurmLauncher is not None:
    from hydra.core.config_store import ConfigStore

    from cogdistill.sweep.launcher import CogdistillSlurmConf

    # the schema conf/hydra/launcher/slurm.yaml builds on: submitit's plus `sizing` (per-model jobs)
    ConfigStore.instance().store(group="hydra/launcher", name="cogdistill_slurm", node=CogdistillSlurmConf,
                                 provider="cogdistill")

    class SlurmLauncher(SlurmLauncherImpl, _SubmititSlurmLauncher):
        pass
