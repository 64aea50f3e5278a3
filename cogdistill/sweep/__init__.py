"""Many jobs: the process control around them, before, during and after a sweep.

sweeper.py runs a sweep from start to end (and is Hydra's task function for a single job too),
preflight.py checks every job before the first starts, feasibility.py estimates what a job needs
and what a node gives, launcher.py runs each job in its own process (local) or SLURM job,
slurm_sizing.py sizes those SLURM jobs. Hydra loads the plugin classes from hydra_plugins/,
which import their code from here. Empty on purpose: each command imports only what it uses.
"""
