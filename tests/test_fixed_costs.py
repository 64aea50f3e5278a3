"""What makes a sweep's jobs and a cached re-run cheap changes no result: a figure drawn on the
reused canvas or in the worker process is the PNG a fresh figure gives, a parquet replay file
selects and fails as a JSON Lines one does, and a fully cached task is read back without the
tokenizer as the very frame it was."""

import json
import os

import numpy as np
import polars as pl
import pytest

from cogdistill.traces.replay import ReplayError, load_traces
from helpers.config import compose, job_overrides
from helpers.traces import IDS, CharTokenizer, counts, model, write


class _Al:  # the Alignment fields a scatter's title reads
    def __init__(self, task, r):
        self.task, self.r, self.r_ci_low, self.r_ci_high, self.rho, self.n_items = task, r, r - 0.1, r + 0.1, r, 40


def _per_item(seed, n=40):
    rng = np.random.default_rng(seed)
    return pl.DataFrame({"item_id": [f"i{k}" for k in range(n)], "human_difficulty": rng.normal(3, 1, n),
                         "cost_mean": np.exp(rng.normal(4 + seed, 1 + seed / 2, n))})


def test_a_figure_on_the_reused_canvas_and_in_the_worker_is_the_fresh_one(tmp_path):
    from cogdistill.tracking import job_figure
    from cogdistill.tracking.job_figure import BackgroundFigures, scatter_cost_vs_rt

    job_figure._CANVAS = None  # as in a fresh process
    first = scatter_cost_vs_rt(_per_item(0), _Al("a", 0.5), model="m", cost="reasoning_tokens", out=tmp_path / "a.png")
    scatter_cost_vs_rt(_per_item(3, 90), _Al("b", 0.2), model="m2", cost="total_tokens", out=tmp_path / "b.png",
                       measure="error_rate")  # other data, limits, labels, no annotations
    again = scatter_cost_vs_rt(_per_item(0), _Al("a", 0.5), model="m", cost="reasoning_tokens",
                               out=tmp_path / "a2.png")
    assert first.read_bytes() == again.read_bytes()
    figures = BackgroundFigures()
    try:
        figures.submit(_per_item(0), _Al("a", 0.5), model="m", cost="reasoning_tokens", artifact="figures/a.png",
                       measure="mean_rt")
        ((folder, drawn),) = figures.files()
        assert folder == "figures" and drawn.name == "a.png" and drawn.read_bytes() == first.read_bytes()
    finally:
        figures.close()
    assert not drawn.exists()


def test_a_parquet_file_selects_and_fails_as_a_jsonl_file_does(task, tmp_path):
    rows = [counts(i, 10 + k, 2, correct=True, model=m, task=t)
            for k, i in enumerate(IDS) for m in ("m1", "m2") for t in ("multiplication", "other")]
    frames = [load_traces(write(tmp_path / f"t.{ext}", rows), task, model(), CharTokenizer())[0]
              for ext in ("parquet", "jsonl")]
    assert frames[0].equals(frames[1]) and frames[0].height == len(IDS) and set(frames[0]["model"]) == {"m1"}
    for bad, match in ((rows[:2] + [{**rows[2], "model": None}], r"row 3 has no `model`"),
                       ([{**r, "model": "m9"} for r in rows], r"no record is for model 'm1'.*\['m9'\]")):
        for ext in ("parquet", "jsonl"):
            with pytest.raises(ReplayError, match=match.replace("row", "line") if ext == "jsonl" else match):
                load_traces(write(tmp_path / f"bad.{ext}", bad), task, model(), CharTokenizer())


def test_a_fully_cached_rerun_needs_no_tokenizer_and_logs_the_same_run(isolated_env, tiny_conf, mult_mirror,
                                                                       monkeypatch):
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    import cogdistill.traces.source as source
    from cogdistill.job.run import run_job

    mirror, sha = mult_mirror
    run_job(compose(job_overrides(tiny_conf, mirror, sha)))
    loaded = []
    real = source.ModelTokenizer
    monkeypatch.setattr(source, "ModelTokenizer", lambda *a, **k: loaded.append(1) or real(*a, **k))
    run_job(compose(job_overrides(tiny_conf, mirror, sha)))
    assert loaded == [], "every generation cached: the task's frame is read back, no tokenizer loads"

    uri = os.environ["MLFLOW_TRACKING_URI"]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("demo")
    first, second = sorted(client.search_runs([exp.experiment_id]), key=lambda r: r.info.start_time)
    timing = {"gen_seconds", "gen_tokens", "gen_tokens_per_s", "engine_load_seconds", "cache_hits", "cache_misses"}
    assert {k: v for k, v in first.data.metrics.items() if k not in timing} == \
        {k: v for k, v in second.data.metrics.items() if k not in timing}
    assert second.data.metrics["cache_hits"] == 6 and second.data.metrics["cache_misses"] == 0
    assert first.data.params == second.data.params
    traces = [pl.read_parquet(download_artifacts(run_id=r.info.run_id, artifact_path="traces/multiplication.parquet",
                                                 tracking_uri=uri)) for r in (first, second)]
    assert traces[0].equals(traces[1])

    # a generation deleted from the cache is generated again: the task's frame is not used without it
    (entry,) = (isolated_env / "cache" / "task-traces").rglob("*.json")
    gone = json.loads(entry.read_text())["generations"][0]
    (isolated_env / "cache" / "generations" / gone[:2] / f"{gone}.json").unlink()
    run_job(compose(job_overrides(tiny_conf, mirror, sha)))
    assert loaded == [1]
    third = max(client.search_runs([exp.experiment_id]), key=lambda r: r.info.start_time)
    assert third.data.metrics["cache_misses"] == 1 and third.data.metrics["cache_hits"] == 5
