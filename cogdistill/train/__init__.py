"""Train students inside cogdistill: SFT on a teacher's traces, or GRPO from a base with a
correctness reward; each training run is an MLflow run and ends as a registered model config.
`python -m cogdistill.train mode=sft|rl base=<model> [teacher=<model>] tasks=[...]` (docs:
training.md); the work is done in cogdistill.train.run.
"""
