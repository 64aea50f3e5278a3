"""The versioned MLflow run format (cogdistill/tracking/run_format.py): the version tag on every kind
of run, runs of version 1 (before the tag) still read, the human items as dataset inputs, the
generations as MLflow traces (tracking.log_traces) and none when it is off."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest
from helpers.config import compose, job_overrides
from helpers.traces import IDS

from cogdistill.job.run import run_job
from cogdistill.tracking import run_format as rf

REASONING = {item: f"Let me think about {item}. " * (1 + i) for i, item in enumerate(IDS)}


def product(item: str) -> int:
    a, b = item.split("x")
    return int(a) * int(b)


def replay_file(folder: Path) -> Path:
    """Replay records for the mult_mirror items: texts, token counts and the server's reasoning count."""
    rows = [{"item_id": item, "sample_idx": 0, "reasoning_text": REASONING[item],
             "answer_text": f"Answer: {product(item)}", "reasoning_tokens": 10 * (i + 1),
             "answer_tokens": 3, "prompt_tokens": 20, "finish_reason": "stop", "latency_s": 0.5,
             "usage_reasoning_tokens": 9 * (i + 1) if i % 2 else None}
            for i, item in enumerate(IDS)]
    path = folder / "replay.parquet"
    pl.DataFrame(rows).write_parquet(path)
    return path


def replay_job(tiny_conf, mult_mirror, tmp_path, *extra: str):
    mirror, sha = mult_mirror
    overrides = job_overrides(tiny_conf, mirror, sha) + ["engine=replay", f"engine.path={replay_file(tmp_path)}",
                                                         *extra]
    results = run_job(compose(overrides))
    from mlflow import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs([client.get_experiment_by_name("demo").experiment_id])
    return client, run, overrides, results


def test_job_run_carries_the_version_its_items_as_a_dataset_and_each_generation_as_a_trace(
        isolated_env, tiny_conf, mult_mirror, tmp_path):
    from cogdistill.config.validate import validate
    from cogdistill.tasks.load import load_task
    from cogdistill.tracking.mlflow_traces import search_run_traces

    client, run, overrides, results = replay_job(tiny_conf, mult_mirror, tmp_path, "tracking.log_traces=true")
    assert run.info.status == "FINISHED"
    assert run.data.tags[rf.Tag.FORMAT] == str(rf.RUN_FORMAT) == "2" and rf.run_format_version(run) == 2
    assert rf.read_task_metrics(run)["multiplication"]["n_items"] == results["multiplication"].n_items == 6

    # the human item table as a dataset input: name, the pinned source URL, a digest of the items
    job = validate(compose(overrides))
    task = load_task(job.task["multiplication"], mirror=job.data.mirror, cache=isolated_env / "cache", timeout_s=10)
    (dataset_input,) = run.inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert dataset.name == "multiplication" and dataset.source_type == "http"
    assert job.task["multiplication"].sources["trials"].url in dataset.source
    assert dataset.source.count("raw.githubusercontent.com/sohmeiling/stm_multiplication/3802f84") == 1
    assert dataset.digest == rf.items_digest(task.items) and '"num_rows": 6' in dataset.profile
    tags = {t.key: t.value for t in dataset_input.tags}
    assert tags["mlflow.data.context"] == rf.ITEMS_CONTEXT == "human_items"
    assert tags["source.trials.sha256"] == mult_mirror[1]

    # one trace per generation, linked to the run, holding what the parquet trace holds
    parquet = pl.read_parquet(client.download_artifacts(run.info.run_id, rf.trace_file("multiplication")))
    found = search_run_traces(client, run.info.experiment_id, run.info.run_id)
    assert len(found) == parquet.height == 6
    by_item = {}
    for trace in found:
        (span,) = trace.data.spans
        by_item[span.attributes["item_id"]] = (trace, span)
    assert set(by_item) == set(IDS)
    for row in parquet.iter_rows(named=True):
        trace, span = by_item[row["item_id"]]
        assert span.inputs == {"prompt": row["prompt"]} and "Solve this multiplication" in row["prompt"]
        assert span.outputs == {"reasoning": row["reasoning_text"], "answer": row["answer_text"]}
        assert row["reasoning_text"] == REASONING[row["item_id"]]
        for key in ("model", "task", "sample_idx", "reasoning_tokens", "answer_tokens", "total_tokens",
                    "prompt_tokens", "finish_reason", "censored", "correct", "latency_s"):
            assert span.attributes[key] == row[key], key
        assert span.attributes["model"] == "tiny-random" and span.attributes["task"] == "multiplication"
        assert span.attributes["usage_reasoning_tokens"] == row["usage_reasoning_tokens"]
        assert trace.info.tags["item_id"] == row["item_id"] and trace.info.tags["task"] == "multiplication"
        assert trace.info.tags["censored"] == str(row["censored"]).lower()
        assert trace.info.tags["correct"] == str(row["correct"]).lower()
        assert trace.info.tags["mlflow.traceName"] == f"multiplication/{row['item_id']}#0"
        assert trace.info.token_usage["input_tokens"] == 20
        assert trace.info.token_usage["output_tokens"] == row["total_tokens"]
    assert {s.attributes["usage_reasoning_tokens"] for _, s in by_item.values()} == {None, 18, 36, 54}
    assert [s.attributes["reasoning_tokens"] for _, s in (by_item[i] for i in IDS)] == [10, 20, 30, 40, 50, 60]
    # the Traces tab's search by tag finds one item
    (one,) = search_run_traces(client, run.info.experiment_id, run.info.run_id, "tags.item_id = '4x6'")
    assert one.data.spans[0].attributes["reasoning_tokens"] == 30


def test_logging_a_task_again_rewrites_its_traces_instead_of_adding_copies(isolated_env, tiny_conf, mult_mirror,
                                                                           tmp_path):
    from cogdistill.tracking.mlflow_traces import log_generations, search_run_traces
    from cogdistill.tracking.store import tracing_client

    client, run, _, _ = replay_job(tiny_conf, mult_mirror, tmp_path, "tracking.log_traces=true")
    parquet = pl.read_parquet(client.download_artifacts(run.info.run_id, rf.trace_file("multiplication")))
    ids = log_generations(client, tracing_client(os.environ["MLFLOW_TRACKING_URI"]), run.info.experiment_id,
                          run.info.run_id, parquet)
    assert len(ids) == len(set(ids)) == 6
    found = search_run_traces(client, run.info.experiment_id, run.info.run_id, include_spans=False)
    assert sorted(t.info.trace_id for t in found) == sorted(ids)


def test_trace_logging_off_logs_no_traces_and_keeps_the_rest(isolated_env, tiny_conf, mult_mirror, tmp_path):
    from cogdistill.tracking.mlflow_traces import search_run_traces

    client, run, _, _ = replay_job(tiny_conf, mult_mirror, tmp_path)  # tracking.log_traces: the default
    assert rf.run_format_version(run) == 2
    assert search_run_traces(client, run.info.experiment_id, run.info.run_id, include_spans=False) == []
    assert client.search_traces(locations=[run.info.experiment_id], max_results=10) == []
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["multiplication"]
    assert {f.path for f in client.list_artifacts(run.info.run_id, "traces")} == {rf.trace_file("multiplication")}


def test_sweep_parent_and_training_runs_carry_the_version(isolated_env, tiny_conf, mult_mirror):
    from mlflow import MlflowClient
    from omegaconf import OmegaConf

    from cogdistill.config.schema import TrackingConfig
    from cogdistill.config.validate import validate
    from cogdistill.sweep.sweeper import SweepParent, SweepResult
    from cogdistill.train.training_run import TrainRun

    sweep_dir = isolated_env / "sweep"
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir)}, "overrides": {"task": ["model=a,b"]}},
                               "engine": {"name": "replay"}, "study": "demo", "analysis": {"report": False}})
    config.tracking = OmegaConf.structured(TrackingConfig())
    parent = SweepParent(config)
    parent.start()
    parent.end(SweepResult())
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    sweep_run = client.get_run(parent.lease.run_id)
    assert sweep_run.info.status == "FINISHED"
    assert (sweep_run.data.tags[rf.Tag.KIND], sweep_run.data.tags[rf.Tag.FORMAT]) == ("sweep", "2")
    assert sweep_run.data.tags[rf.Tag.OVERRIDES] == "model=a,b"

    mirror, sha = mult_mirror
    job = validate(compose(job_overrides(tiny_conf, mirror, sha)))
    train = TrainRun(job, tags=rf.train_tags(mode="sft", base="tiny-random", teacher="t", model="tiny-sft",
                                             study=job.study, tasks=["multiplication"]), run_name="train tiny-sft")
    train.finish("FINISHED")
    tags = client.get_run(train.run_id).data.tags
    assert (tags[rf.Tag.KIND], tags[rf.Tag.FORMAT], tags["mode"], tags["model"]) == ("train", "2", "sft", "tiny-sft")


def v1_store(tmp_path: Path):
    """A study as the version before the run format logged it: plain MLflow calls with the literal
    names of that version, no cogdistill.run_format tag. One sweep parent, one job run."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'v1' / 'mlflow.db'}"
    (tmp_path / "v1").mkdir()
    client = MlflowClient(uri)
    exp = client.create_experiment("old", artifact_location=(tmp_path / "v1" / "artifacts").as_uri())
    parent = client.create_run(exp, tags={"cogdistill.kind": "sweep", "cogdistill.sweep_key": "k", "study": "old"})
    run = client.create_run(exp, tags={
        "cogdistill.kind": "job", "model": "m1", "role": "teacher", "family": "f", "teacher": "", "base": "",
        "engine": "replay", "task": "mult", "study": "old", "hf_id": "local/m1",
        "mlflow.parentRunId": parent.info.run_id})
    run_id = run.info.run_id
    for key, value in {"cost": "reasoning_tokens", "task.mult.difficulty": "mean_rt", "task.mult.n_items": "3"}.items():
        client.log_param(run_id, key, value)
    for key, value in {"r/mult": 0.5, "p/mult": 0.2, "r_ci_low/mult": 0.1, "r_ci_high/mult": 0.8, "acc/mult": 0.75,
                       "tokens_mean/mult": 12.0, "n_items/mult": 3, "r_mean": 0.5}.items():
        client.log_metric(run_id, key, value)
    files = tmp_path / "v1" / "files"
    for sub in ("traces", "items", "humans"):
        (files / sub).mkdir(parents=True)
    pl.DataFrame({"model": ["m1"] * 3, "task": ["mult"] * 3, "item_id": ["07", "08", "09"], "sample_idx": [0, 0, 0],
                  "reasoning_text": ["a", "b", "c"], "answer_text": ["7", "8", "9"], "reasoning_tokens": [10, 12, 14],
                  "total_tokens": [11, 13, 15], "correct": [True, True, False], "censored": [False] * 3}
                 ).write_parquet(files / "traces" / "mult.parquet")
    pl.DataFrame({"item_id": ["07", "08", "09"], "human_difficulty": [1.0, 1.5, 2.0]}).write_parquet(
        files / "items" / "mult_items.parquet")
    pl.DataFrame({"item_id": ["07", "08"], "participant": ["p1", "p2"], "rt_s": [1.0, 1.5], "correct": [1.0, 1.0],
                  "keep": [True, True]}).write_parquet(files / "humans" / "mult_trials.parquet")
    for sub in ("traces", "items", "humans"):
        for f in (files / sub).iterdir():
            client.log_artifact(run_id, str(f), sub)
    client.set_terminated(run_id)
    return uri, client, exp, parent.info.run_id, run_id


def test_version_1_runs_still_read_in_the_sweep_table_the_report_and_the_training_data(tmp_path):
    from cogdistill.report.study import from_mlflow
    from cogdistill.tracking.sweep_table import children_table
    from cogdistill.train.dataset import teacher_traces

    uri, client, exp, parent_id, run_id = v1_store(tmp_path)
    run = client.get_run(run_id)
    assert rf.Tag.FORMAT not in run.data.tags and rf.run_format_version(run) == 1

    table = children_table(client, exp, parent_id)
    assert table.select("model", "role", "task", "r", "r_ci_low", "r_ci_high", "acc", "tokens_mean").rows() == [
        ("m1", "teacher", "mult", 0.5, 0.1, 0.8, 0.75, 12.0)]
    assert rf.read_task_metrics(run) == {"mult": {"r": 0.5, "p": 0.2, "r_ci_low": 0.1, "r_ci_high": 0.8,
                                                  "acc": 0.75, "tokens_mean": 12.0, "n_items": 3.0}}

    study = from_mlflow(uri, "old", parent_id)
    assert study.traces.sort("item_id")["cost"].to_list() == [10.0, 12.0, 14.0]
    assert study.traces["item_id"].to_list() == ["07", "08", "09"] and set(study.traces["model"]) == {"m1"}
    assert study.humans.sort("item_id")["human_difficulty"].to_list() == [1.0, 1.5, 2.0]
    assert set(study.humans["measure"]) == {"mean_rt"}
    assert study.models.row(0, named=True) == {"model": "m1", "role": "teacher", "family": "f", "teacher": None,
                                                "base": None, "cost": "reasoning_tokens", "run_id": run_id,
                                                "effort": None, "config": None}  # v1 runs: no effort factor
    assert study.trials.height == 2 and set(study.trials["task"]) == {"mult"}

    task = SimpleNamespace(name="mult", items=pl.DataFrame({"item_id": ["07", "09"]}))
    traces, used = teacher_traces(client, exp, "m1", task)
    assert used == run_id and traces["item_id"].to_list() == ["07", "09"]
    assert traces["reasoning_text"].to_list() == ["a", "c"]


def test_a_run_of_a_newer_format_is_refused_with_the_fix(tmp_path):
    from cogdistill.report.study import from_mlflow

    uri, client, exp, parent_id, run_id = v1_store(tmp_path)
    client.set_tag(run_id, rf.Tag.FORMAT, str(rf.RUN_FORMAT + 1))
    run = client.get_run(run_id)
    assert rf.run_format_version(run) == rf.RUN_FORMAT + 1
    with pytest.raises(rf.RunFormatError, match="newer than this cogdistill reads .* upgrade cogdistill"):
        rf.read_task_metrics(run)
    with pytest.raises(rf.RunFormatError, match=run_id):
        from_mlflow(uri, "old", parent_id)


def test_the_format_spells_todays_names():
    """The names runs of version 1 were written with (README, 'MLflow: what each run holds')."""
    assert [rf.task_metric(m, "t") for m in ("r", "p", "rho", "r_ci_low", "r_ci_high", "bf10", "acc", "tokens_mean",
                                             "n_items", "censored_items", "censored_traces", "dropped_items",
                                             "r_budget", "token_count_mismatch", "overlong_traces",
                                             "human_reliability", "cost_reliability", "noise_ceiling",
                                             "r_normalised")] == [f"{m}/t" for m in (
        "r", "p", "rho", "r_ci_low", "r_ci_high", "bf10", "acc", "tokens_mean", "n_items", "censored_items",
        "censored_traces", "dropped_items", "r_budget", "token_count_mismatch", "overlong_traces", "human_reliability",
        "cost_reliability", "noise_ceiling", "r_normalised")]
    assert set(rf.TASK_METRICS) == {"r", "p", "rho", "r_ci_low", "r_ci_high", "bf10", "acc", "tokens_mean", "n_items",
                                    "censored_items", "censored_traces", "dropped_items", "r_budget",
                                    "token_count_mismatch", "overlong_traces", "human_reliability",
                                    "cost_reliability", "noise_ceiling", "r_normalised"}
    assert (rf.trace_file("t"), rf.items_file("t"), rf.items_file("t", "csv"), rf.trials_file("t"),
            rf.figure_file("t"), rf.CONFIG_FILE) == ("traces/t.parquet", "items/t_items.parquet", "items/t_items.csv",
                                                      "humans/t_trials.parquet", "figures/t_scatter.png",
                                                      "config/config.yaml")
    assert (rf.sweep_metric("m", "t"), rf.train_metric("loss")) == ("r/m/t", "train/loss")
    assert (rf.Tag.KIND, rf.Tag.PARENT, rf.Tag.OWNER, rf.Tag.HEARTBEAT, rf.Tag.JOB_KEY) == (
        "cogdistill.kind", "mlflow.parentRunId", "cogdistill.owner", "cogdistill.heartbeat", "cogdistill.job_key")
