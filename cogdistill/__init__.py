"""cogdistill: does a model spend its reasoning tokens where humans spend their time?

The data flow, one folder per step: config/ -> tasks/ -> engines/ and traces/ (the trace source)
-> stats/ -> tracking/ (the MLflow run format) -> job.py -> sweep.py, report/, train/. The layers
are checked by import-linter (.importlinter): nothing imports from a step after its own.
"""
