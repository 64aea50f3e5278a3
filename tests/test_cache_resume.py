"""Generation cache and resume: re-runs generate nothing, kills lose nothing, MLflow gets no duplicates."""

import os
import subprocess
import sys

import pytest

from cogdistill.traces.cache import GenerationCache, generation_key
from cogdistill.engines.base import Generation
from cogdistill.job.run import run_job
from helpers.config import compose, job_overrides


def _key(**over):
    base = dict(weights="sha256:abc", engine="transformers", engine_version="t-1", prompt="<p>2x3</p>",
                temperature=0.0, top_p=1.0, seed=0, max_tokens=32, sample_idx=0)
    return generation_key(**{**base, **over})


def test_key_changes_with_everything_that_changes_a_generation():
    base = _key()
    for change in [dict(weights="sha256:def"), dict(engine="vllm"), dict(engine_version="t-2"),
                   dict(prompt="<p>2x4</p>"), dict(max_tokens=64), dict(sample_idx=1), dict(temperature=0.7)]:
        assert _key(**change) != base, change
    # sampled generations: seed and top_p matter; greedy ones ignore them
    assert _key(temperature=0.7, seed=1) != _key(temperature=0.7, seed=2)
    assert _key(temperature=0.7, top_p=0.9) != _key(temperature=0.7, top_p=1.0)
    assert _key(seed=5) == base


def test_round_trip_and_corrupt_entries_are_misses(tmp_path):
    cache = GenerationCache(tmp_path)
    gen = Generation(text="6", token_ids=(1, 2), prompt_tokens=4, finish_reason="stop", latency_s=0.5,
                     usage={"completion_tokens": 2})
    cache.put("ab" * 32, gen)
    assert cache.get("ab" * 32) == gen
    path = tmp_path / "generations" / "ab" / f"{'ab' * 32}.json"
    path.write_text('{"text": "6", "token_')  # what a torn write would look like
    assert cache.get("ab" * 32) is None and cache.corrupt == 1
    cache.put("ab" * 32, gen)
    assert cache.get("ab" * 32) == gen
    assert not list(path.parent.glob(".tmp-*")), "no temporary files left behind"


def _runs(client):
    exp = client.get_experiment_by_name("demo")
    return client.search_runs([exp.experiment_id]) if exp else []


def test_rerun_generates_nothing_and_does_not_load_the_model(isolated_env, tiny_conf, mult_mirror, monkeypatch):
    from mlflow import MlflowClient

    mirror, sha = mult_mirror
    first = run_job(compose(job_overrides(tiny_conf, mirror, sha)))

    import cogdistill.engines.hf_transformers as hf

    def refuse(*args, **kwargs):
        raise AssertionError("a fully cached job must not load the model")

    monkeypatch.setattr(hf.TransformersEngine, "__init__", refuse)
    second = run_job(compose(job_overrides(tiny_conf, mirror, sha)))
    assert second["multiplication"] == first["multiplication"]
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    earliest, latest = sorted(_runs(client), key=lambda r: r.info.start_time)
    assert latest.data.metrics["cache_misses"] == 0 and latest.data.metrics["cache_hits"] == 6
    # throughput counts the tokens generated in that run: all of the first's, none of the cached re-run's
    import polars as pl
    from mlflow.artifacts import download_artifacts

    traces = pl.read_parquet(download_artifacts(run_id=earliest.info.run_id,
                                                artifact_path="traces/multiplication.parquet",
                                                tracking_uri=os.environ["MLFLOW_TRACKING_URI"]))
    assert earliest.data.metrics["cache_misses"] == 6
    assert earliest.data.metrics["gen_tokens"] == traces["total_tokens"].sum() > 0
    assert latest.data.metrics["gen_tokens"] == 0
    assert len(_runs(client)) == 2  # a finished job run again outside a sweep is a new run


def test_a_job_killed_mid_generation_resumes_its_run_and_regenerates_only_the_rest(
        isolated_env, tiny_conf, mult_mirror, monkeypatch):
    from mlflow import MlflowClient

    import cogdistill.engines.hf_transformers as hf

    mirror, sha = mult_mirror
    real_generate = hf.TransformersEngine.generate

    def dies_after_three(self, requests, sampling, max_tokens, on_result):
        real_generate(self, requests[:3], sampling, max_tokens, on_result)
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(hf.TransformersEngine, "generate", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        run_job(compose(job_overrides(tiny_conf, mirror, sha) + ["engine=transformers", "engine.batch_size=1"]))
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    (killed,) = _runs(client)
    assert killed.info.status == "KILLED"  # Ctrl-C: KILLED, not FAILED (cogdistill.exits)

    seen = []
    monkeypatch.setattr(hf.TransformersEngine, "generate",
                        lambda self, reqs, *a: (seen.extend(r.index for r in reqs), real_generate(self, reqs, *a)))
    run_job(compose(job_overrides(tiny_conf, mirror, sha) + ["engine=transformers", "engine.batch_size=1"]))
    assert len(seen) == 3, "only the three unfinished prompts are generated again"
    (resumed,) = _runs(client)
    assert resumed.info.run_id == killed.info.run_id and resumed.info.status == "FINISHED"
    assert resumed.data.metrics["cache_hits"] == 3 and resumed.data.metrics["cache_misses"] == 3


@pytest.mark.slow  # 27 s: the same two-job sweep twice, in subprocesses
def test_rerunning_an_interrupted_sweep_reuses_its_parent_and_skips_finished_jobs(isolated_env, tiny_pair_conf, mult_mirror):
    from mlflow import MlflowClient

    mirror, sha = mult_mirror
    overrides = [o for o in job_overrides(tiny_pair_conf, mirror, sha) if not o.startswith("model=")]
    cmd = [sys.executable, "-m", "cogdistill", "-m", "model=tiny-random,tiny-random-b", *overrides]
    proc = subprocess.run(cmd, cwd=isolated_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    runs = _runs(client)
    parent = next(r for r in runs if r.data.tags["cogdistill.kind"] == "sweep")
    child_b = next(r for r in runs if r.data.tags.get("model") == "tiny-random-b")
    # what a kill during job b leaves behind: the parent and job b still marked running
    client.update_run(parent.info.run_id, status="RUNNING")
    client.update_run(child_b.info.run_id, status="RUNNING")

    proc = subprocess.run(cmd, cwd=isolated_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "already finished in this sweep" in proc.stdout
    after = _runs(client)
    assert sorted(r.info.run_id for r in after) == sorted(r.info.run_id for r in runs), "no new runs"
    assert all(r.info.status == "FINISHED" for r in after)
