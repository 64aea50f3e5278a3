"""Four jobs at once (process-per-job launcher) sharing one cache, logging to one sqlite store
or to a real `mlflow server`: every run under one parent, none twice, all finished."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.procs import cache_entries, cogdistill, output, single_job, store_runs

ARTIFACTS = {"traces/multiplication.parquet", "items/multiplication_items.parquet", "items/multiplication_items.csv",
             "figures/multiplication_scatter.png", "config/config.yaml"}


def parallel_sweep(conf: Path, mirror_sha):
    # Jobs with the same max_tokens share cache keys: two processes race to write each entry.
    return ["-m", "model.max_tokens=10,12", "analysis.seed=1,2", "analysis.report=false", "hydra/launcher=local",
            "hydra.launcher.max_parallel=4", *single_job(conf, mirror_sha)]


def check_sweep(cache: Path):
    client, runs = store_runs(5, sweep=True)
    jobs = [r for r in runs if r.data.tags["cogdistill.kind"] == "job"]
    assert len({r.data.tags["cogdistill.pid"] for r in jobs}) == 4, "one process per job"
    for run in jobs:
        assert run.data.metrics["cache_hits"] + run.data.metrics["cache_misses"] == 6
        logged = {f.path for folder in ("traces", "items", "figures", "config")
                  for f in client.list_artifacts(run.info.run_id, folder)}
        assert ARTIFACTS <= logged, run.data.tags["cogdistill.job_key"]
    parent = next(r for r in runs if r not in jobs)
    assert "sweep_summary.csv" in {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert cache_entries(cache) == 12


@pytest.mark.slow  # four model processes at once: 51 s (the tiny random model: no real component)
def test_four_parallel_jobs_share_one_sqlite_store_and_one_cache(isolated_env, tiny_conf, mult_mirror):
    proc = cogdistill(parallel_sweep(tiny_conf, mult_mirror), isolated_env, timeout=500)
    assert proc.returncode == 0, output(proc)
    check_sweep(isolated_env / "cache")


# the `mlflow_server` fixture (tests/conftest.py): a real `mlflow server` (helpers.mlflow_server)


@pytest.mark.integration
def test_four_parallel_jobs_log_to_a_real_mlflow_server(isolated_env, tiny_conf, mult_mirror, mlflow_server,
                                                        monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # it would win over tracking=server
    monkeypatch.setenv("COGDISTILL_MLFLOW_SERVER", mlflow_server)
    proc = cogdistill(parallel_sweep(tiny_conf, mult_mirror) + ["tracking=server"], isolated_env, timeout=500)
    assert proc.returncode == 0, output(proc)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)  # for store_runs' client
    check_sweep(isolated_env / "cache")
    assert not (isolated_env / "store").exists(), "nothing logged to the local store"


class LockedClient:
    """Stands in for an MlflowClient whose sqlite database stays locked for `locked_calls` calls."""

    def __init__(self, locked_calls: int):
        self.locked_calls, self.calls = locked_calls, 0

    def set_tag(self, run_id, key, value):
        self.calls += 1
        if self.calls <= self.locked_calls:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"


def test_a_locked_sqlite_store_is_retried_then_named_with_the_fix(monkeypatch):
    from cogdistill.errors import CogdistillError
    from cogdistill.tracking.store import SqliteRetry

    sleeps = []
    monkeypatch.setattr("cogdistill.tracking.store.time.sleep", sleeps.append)
    assert SqliteRetry(LockedClient(2), "sqlite:///x.db").set_tag("r", "k", "v") == "ok"
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0] * 0.5

    with pytest.raises(CogdistillError, match=r"stayed locked.*tracking=server") as err:
        SqliteRetry(LockedClient(99), "sqlite:///x.db").set_tag("r", "k", "v")
    assert "COGDISTILL_MLFLOW_SERVER" in str(err.value) and len(sleeps) == 2 + SqliteRetry.RETRIES

    class Broken:
        def set_tag(self, *args):
            raise ValueError("no such run")

    with pytest.raises(ValueError):  # anything but a lock is not retried
        SqliteRetry(Broken(), "sqlite:///x.db").set_tag("r", "k", "v")
