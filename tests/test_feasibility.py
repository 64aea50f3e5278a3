"""Issue 24: the sweep's feasibility check (cogdistill/sweep/feasibility.py, cogdistill/sweep/preflight.py) and
pinned hub revisions (cogdistill/engines/hub.py, weights.from_hub, the run's revision_sha)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from helpers.config import compose, job_overrides
from helpers.fake_hub import FakeHub, closed_port_url
from helpers.traces import IDS

from cogdistill.config.schema import CONF_DIR, ModelConfig
from cogdistill.engines.weights import resolve_weights
from cogdistill.sweep.feasibility import estimate_job_resources

REPO = CONF_DIR.parent
SHA = "0123456789abcdef0123456789abcdef01234567"
# meta-llama/Llama-3.1-8B's config.json (the fields a size needs); its card says 8.03B parameters
LLAMA_8B = {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
            "intermediate_size": 14336, "vocab_size": 128256, "tie_word_embeddings": False}


def hub_env(monkeypatch, tmp_path, endpoint: str) -> Path:
    cache = tmp_path / "hf-hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return cache


def cache_snapshot(cache: Path, hf_id: str, sha: str, config: dict, ref: str = "main") -> None:
    repo = cache / ("models--" + hf_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / ref).write_text(sha)
    (repo / "snapshots" / sha).mkdir(parents=True)
    (repo / "snapshots" / sha / "config.json").write_text(json.dumps(config))


# ------------------------------------------------------------------ estimates

def test_size_comes_from_a_cached_config_json_before_the_model_files_params_b(monkeypatch, tmp_path):
    cache = hub_env(monkeypatch, tmp_path, closed_port_url())
    cache_snapshot(cache, "meta-llama/Llama-3.1-8B", SHA, LLAMA_8B)
    model = {"hf_id": "meta-llama/Llama-3.1-8B", "revision": "main", "dtype": "bfloat16", "max_tokens": 4096,
             "params_b": 70.0}  # a wrong params_b: the cached config wins
    est = estimate_job_resources(model, "vllm")
    assert est.basis == "config.json" and est.params_b == pytest.approx(8.03, abs=0.02)
    assert est.weights_gb == pytest.approx(16.1, abs=0.1)  # 8.03B x 2 bytes (bf16)
    # not cached: the model file's params_b
    est = estimate_job_resources({**model, "hf_id": "meta-llama/Llama-3.3-70B-Instruct", "params_b": 70.6}, "vllm")
    assert est.basis == "params_b" and est.weights_gb == pytest.approx(141.2, abs=0.1)


def test_gpus_are_tensor_times_pipeline_parallel_and_a_longer_budget_needs_more_memory():
    model = {"hf_id": "x/y", "dtype": "bfloat16", "max_tokens": 4096, "params_b": 70.6,
             "engine_kwargs": {"vllm": {"tensor_parallel_size": 4, "pipeline_parallel_size": 2}}}
    gpus, mem_gb, *_ = estimate_job_resources(model)
    assert gpus == 8 and mem_gb > 141.2
    assert estimate_job_resources(model, on_gpu=False).gpus == 0
    assert estimate_job_resources(model, max_tokens=32768).mem_gb > mem_gb
    # transformers holds a whole batch of sequences at once, vLLM pages them
    small = {"hf_id": "x/z", "dtype": "float32", "max_tokens": 256, "params_b": 0.135}
    assert estimate_job_resources(small, "transformers", batch=16).kv_gb > estimate_job_resources(small, "vllm").kv_gb


# ------------------------------------------------------------------ revision pinning

def test_a_floating_revision_resolves_to_the_hubs_commit_once(monkeypatch, tmp_path):
    hub = FakeHub({("org/model", "main"): SHA})
    try:
        hub_env(monkeypatch, tmp_path, hub.url)
        w = resolve_weights(ModelConfig(name="m", hf_id="org/model", revision="main", role="control", family="t"),
                            tmp_path)
        assert (w.revision, w.pinned_by, w.floating, w.fingerprint) == (SHA, "hub", True, f"org/model@{SHA}")
        assert hub.asked == ["/api/models/org/model/revision/main"]
        pinned = resolve_weights(ModelConfig(name="m", hf_id="org/model", revision=SHA, role="control", family="t"),
                                 tmp_path)
        assert (pinned.revision, pinned.floating) == (SHA, False) and len(hub.asked) == 1  # a sha needs no question
    finally:
        hub.close()


def test_without_the_hub_the_cached_ref_pins_it_and_else_it_stays_floating(monkeypatch, tmp_path):
    cache = hub_env(monkeypatch, tmp_path, closed_port_url())
    cache_snapshot(cache, "org/cached", SHA, LLAMA_8B)
    started = time.monotonic()
    w = resolve_weights(ModelConfig(name="m", hf_id="org/cached", role="control", family="t"), tmp_path)
    assert (w.revision, w.pinned_by) == (SHA, "cache")
    w = resolve_weights(ModelConfig(name="m", hf_id="org/absent", revision="main", role="control", family="t"),
                        tmp_path)
    assert (w.revision, w.pinned_by, w.floating) == ("main", "", True)
    assert time.monotonic() - started < 5  # one refused connection each, no retries


def replay_rows(path: Path) -> Path:
    rows = [{"item_id": item, "sample_idx": 0, "reasoning_text": "hm", "answer_text": f"Answer: {i}",
             "reasoning_tokens": 10 * (i + 1), "answer_tokens": 3, "finish_reason": "stop"}
            for i, item in enumerate(IDS)]
    pl.DataFrame(rows).write_parquet(path)
    return path


@pytest.mark.slow
def test_a_job_logs_the_commit_its_floating_revision_stood_for(isolated_env, mult_mirror, tmp_path, monkeypatch,
                                                               capsys):
    from mlflow import MlflowClient

    from cogdistill.job.run import run_job
    from cogdistill.tracking import run_format as rf

    conf = tmp_path / "extra-conf"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "hub-model.yaml").write_text(
        "name: hub-model\nhf_id: org/hub-model\nrevision: main\nrole: control\nfamily: test\n"
        "chat: true\nthink_start: null\nthink_end: null\nmax_tokens: 64\ndtype: float32\n")
    hub = FakeHub({("org/hub-model", "main"): SHA})
    try:
        hub_env(monkeypatch, tmp_path, hub.url)
        mirror, sha = mult_mirror
        overrides = job_overrides(conf, mirror, sha) + [
            "model=hub-model", "engine=replay", f"engine.path={replay_rows(tmp_path / 'replay.parquet')}"]
        run_job(compose(overrides))
    finally:
        hub.close()
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs([client.get_experiment_by_name("demo").experiment_id])
    assert run.data.params[rf.PARAM_REVISION_SHA] == SHA
    assert run.data.params["weights"] == f"org/hub-model@{SHA}"
    assert run.data.tags[rf.Tag.FLOATING_REVISION] == "main"
    out = capsys.readouterr().out
    assert "revision 'main' is floating" in out and SHA in out


# ------------------------------------------------------------------ the sweep

def sweep_env(tmp_path: Path, mirror: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "MLFLOW_TRACKING_URI")}
    env.update(HF_ENDPOINT=closed_port_url(), HF_HUB_CACHE=str(tmp_path / "hf-hub"),
               COGDISTILL_CACHE_DIR=str(tmp_path / "cache"), COGDISTILL_OUTPUT_DIR=str(tmp_path / "out"),
               COGDISTILL_DATA_MIRROR=str(mirror), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'store.db'}",
               PYTHONUNBUFFERED="1")
    return env


@pytest.mark.slow
def test_the_zoo_on_a_machine_without_hub_stops_in_seconds_with_one_table(tmp_path):
    mirror = Path(os.environ.get("COGDISTILL_DATA_MIRROR", REPO.parent / "shared" / "reference-data"))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "cogdistill", "-m", "model=glob(*)"], cwd=REPO,
                          env=sweep_env(tmp_path, mirror), capture_output=True, text=True, timeout=120)
    took = time.monotonic() - started
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert took < 30, took
    assert out.count("Can each job run here?") == 1 and "Traceback" not in out
    assert "Launching" not in out  # no job started
    retries = [line for line in out.splitlines() if "Retry" in line]
    assert len(retries) == len(set(retries))
    table = {line.split("│")[2].strip(): line for line in out.splitlines() if line.count("│") >= 7}
    assert len(table) == len(list((CONF_DIR / "model").glob("*.yaml")))
    # a 70B model on a CPU node: too big and not here, said with the download command
    assert "cannot run" in table["r1-distill-llama-70b"]
    assert "hf download deepseek-ai/DeepSeek-R1-Distill-Llama-70B" in out
    assert "sweep.skip_infeasible=true" in out


@pytest.mark.slow
def test_skip_infeasible_runs_the_jobs_that_fit_and_lists_the_others_on_the_parent(tiny_conf, mult_mirror, tmp_path):
    from mlflow import MlflowClient

    from cogdistill.tracking import run_format as rf

    (tiny_conf / "model" / "ghost-70b.yaml").write_text(
        "name: ghost-70b\nhf_id: nobody/ghost-70b\nrevision: main\nrole: control\nfamily: test\nengine: transformers\n"
        "chat: true\nthink_start: null\nthink_end: null\nmax_tokens: 12\ndtype: bfloat16\nparams_b: 70.6\n")
    mirror, sha = mult_mirror
    env = sweep_env(tmp_path, mirror)
    args = [sys.executable, "-m", "cogdistill", "-m", "model=tiny-random,ghost-70b",
            *job_overrides(tiny_conf, mirror, sha)[2:], f"hydra.searchpath=[file://{tiny_conf}]"]
    stop = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    out = stop.stdout + stop.stderr
    assert stop.returncode == 2 and "ghost-70b" in out and "hf download nobody/ghost-70b" in out, out[-3000:]
    assert "Launching" not in out and "Traceback" not in out

    done = subprocess.run(args + ["sweep.skip_infeasible=true"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("demo").experiment_id])
    parent = next(r for r in runs if r.data.tags.get(rf.Tag.KIND) == rf.Kind.SWEEP)
    jobs = [r for r in runs if r.data.tags.get(rf.Tag.KIND) == rf.Kind.JOB]
    assert [r.data.tags[rf.Tag.MODEL] for r in jobs] == ["tiny-random"]
    assert jobs[0].info.status == "FINISHED" and parent.info.status == "FINISHED"
    assert parent.data.tags[rf.Tag.SKIPPED_JOBS] == "1"
    path = client.download_artifacts(parent.info.run_id, rf.SKIPPED_JOBS, str(tmp_path / "dl"))
    (row,) = list(csv.DictReader(open(path)))
    assert row["model"] == "ghost-70b" and "hf download nobody/ghost-70b" in row["reason"]


def test_a_hub_log_line_appears_once_under_hydras_root_handler():
    """huggingface_hub prints through its own handler and passed each line on to the root logger,
    where Hydra's handler printed it again: every retry line twice."""
    import io
    import logging

    from huggingface_hub.utils import logging as hf_logging

    from cogdistill.console import quiet_third_party

    hub_root, root = logging.getLogger("huggingface_hub"), logging.getLogger()
    hub_out, hydra_out = io.StringIO(), io.StringIO()
    saved = hub_root.handlers[:], hub_root.propagate
    hub_root.handlers = [logging.StreamHandler(hub_out)]  # huggingface_hub's own handler, as it sets one up
    hub_root.propagate = True  # as huggingface_hub leaves it
    hydra_like = logging.StreamHandler(hydra_out)  # what Hydra's job logging puts on the root logger
    root.addHandler(hydra_like)
    try:
        quiet_third_party()
        hf_logging.get_logger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
    finally:
        root.removeHandler(hydra_like)
        hub_root.handlers, hub_root.propagate = saved
    said = hub_out.getvalue() + hydra_out.getvalue()
    assert said.count("Retrying in 1s [Retry 1/5].") == 1, said


def test_a_launchers_flat_allocation_is_checked_and_a_sized_one_is_trusted(monkeypatch, tmp_path):
    """hydra/launcher=slurm: gpus_per_node/mem_gb for every job (sizing.auto=false), or each job's own
    size (sizing.auto, cogdistill/sweep/launcher.py): a tp=4 model is refused by the first, not the second."""
    from cogdistill.config.validate import validate
    from cogdistill.sweep.preflight import check_feasibility

    hub_env(monkeypatch, tmp_path, closed_port_url())
    model_dir = tmp_path / "weights"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(LLAMA_8B))
    conf = tmp_path / "extra-conf"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "wide.yaml").write_text(
        "name: wide\nhf_id: org/wide\nrole: control\nfamily: test\nengine: vllm\n"
        f"weights:\n  source: local\n  path: {model_dir}\nmax_tokens: 4096\ndtype: bfloat16\nparams_b: 32.8\n"
        "engine_kwargs:\n  vllm: {tensor_parallel_size: 4}\n")
    job = validate(compose([f"hydra.searchpath=[file://{conf}]", "model=wide", f"cache_dir={tmp_path / 'cache'}"]))
    flat = {"gpus_per_node": 2, "mem_gb": 64, "sizing": {"auto": False}}
    (fit,) = check_feasibility({0: job}, [["model=wide"]], flat)
    assert not fit.ok and fit.weights == "local" and fit.gpus == "4 / 2"
    assert any("hydra.launcher.gpus_per_node=4" in p for p in fit.problems), fit.problems
    (fit,) = check_feasibility({0: job}, [["model=wide"]], {**flat, "sizing": {"auto": True}})
    assert fit.ok and fit.gpus == "4 / sized", fit.problems
