"""cogdistill: does a model spend its reasoning tokens where humans spend their time?

The data flow, one folder per step: config/ -> tasks/ -> engines/ and traces/ (the trace source)
-> stats/ -> tracking/ (the MLflow run format) -> job/ (one job) -> report/, train/, export/ (the
other commands) -> sweep/ (many jobs: the sweeper, its pre-flight, the launchers) -> __main__.py
(the `cogdistill` command). Beside them, what the steps share: registry.py (every
name a config can use), console.py, errors.py, exits.py (how a command ends), hydra_errors.py,
secrets.py. The layers are checked by import-linter (.importlinter): nothing imports from a step
after its own.
"""
