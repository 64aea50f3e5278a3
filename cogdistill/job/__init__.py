"""One job: a model over its tasks, from its config to its MLflow run.

plan.py decides what runs (the validated config, the engine and its settings, the tasks),
console.py prints what a job does, run.py runs it (`run_job`). Empty on purpose: importing the
plan (as the sweep's pre-flight does) must not import the run and its MLflow store.
"""
