"""Helpers shared by the test files: plain functions and classes, no fixtures.

Fixtures live in tests/conftest.py (built from these helpers). Import as `from helpers.<module> import
name`: pytest puts tests/ on sys.path (tests/ has no __init__.py), and conftest registers this package
for pytest's assertion rewriting.

  config         compose() a Hydra config; job_overrides() for a tiny-model job
  data           REPO, real_mirror(), write_mult_trials()
  models         model_cfg() for the tiny random model; fake_vllm() (a stand-in vllm module)
  openai_server  FakeServer (a scripted OpenAI-compatible server) and the openai engine's request helpers
  mlflow_server  serve_mlflow(): a real `mlflow server` / `mlflow ui` on 127.0.0.1
  procs          real `python -m cogdistill` processes: run, start, wait, signal, inspect the store and cache
  r              require_r(): skip (or, in CI, fail) where R or an R package is missing
  report         replay_sweep(): a simulated study replayed as one sweep
  slurm_cluster  slurm_cluster(): a one-node SLURM cluster (munged, slurmctld, slurmd) on 127.0.0.1
  tasks          task configs: mult_config(), generic_cfg(), sha(), write()
  traces         CharTokenizer, replay records: counts(), write(), model(), replay()
  errors         expect(): a CogdistillError whose message holds every needle
"""
