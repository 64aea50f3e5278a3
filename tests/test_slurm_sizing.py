"""hydra/launcher=slurm sizes each job for its model and lives through a cluster's life, on a real one-node
SLURM cluster with 4 countable GPUs, 16 CPUs and 64 GB (tests/helpers/slurm_cluster.py, gpus=4) and a real
`mlflow server`:
- one command, models of three sizes: one array per resource class, each job's allocation (scontrol)
  what its model needs, one MLflow parent; a model larger than the node is named and not submitted;
- Ctrl-C of the launching command cancels every array it submitted and marks the parent KILLED;
- a job that reaches its time limit gets the warning signal, is requeued and finishes, without
  duplicate traces.
Jobs replay simulated traces (engine=replay); `sizing.weightless` without replay makes them ask for
what their models' vLLM jobs would."""

from __future__ import annotations

import math
import re
import signal
import time

import pytest

from helpers.mlflow_server import serve_mlflow
from helpers.procs import runs_by_kind, wait_for
from helpers.slurm_cluster import finish, job_log, recipe_args, require_slurm, slurm_cluster, start_sweep

# model -> (tensor_parallel_size, params_b, max_tokens): three sizes, plus one larger than the node's 4 GPUs
SIZES = {"student-0": (1, 1.0, 512), "base-0": (2, 4.0, 2048), "teacher-0": (4, 12.0, 8192), "giant-0": (8, 70.0, 512)}
ITEMS = 80  # two tasks of 40
CPUS_PER_GPU, TOKENS_PER_S, MARGIN = 2, 100, 1.5
STEPS = (30, 60, 120, 240, 480, 720, 1440, 2880)  # docs/scale-out.md: the time classes


def expected(model: str):
    """(GPUs, CPUs, GB, minutes) by docs/scale-out.md's rule, computed here from the model file's numbers."""
    tp, params_b, max_tokens = SIZES[model]
    minutes = ITEMS * max_tokens / TOKENS_PER_S / 60 * MARGIN
    return tp, tp * CPUS_PER_GPU, max(1, math.ceil(params_b * 2 * 1.25)), next(s for s in STEPS if s >= minutes)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    require_slurm()
    with slurm_cluster(tmp_path_factory.mktemp("slurm"), cpus=16, mem_mb=64 * 1024, gpus=4) as running:
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    with serve_mlflow(["server", "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
                       "--artifacts-destination", str(root / "artifacts")], root / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Simulated traces of three models on two tasks of 40 items; their model files given sizes (SIZES),
    and giant-0, larger than the node."""
    from cogdistill.report.synthetic import simulate, write_replay_inputs

    inputs = write_replay_inputs(simulate(3, 2, 40, 1, seed=5), tmp_path_factory.mktemp("study"))
    models = inputs.conf_dir / "model"
    (models / "giant-0.yaml").write_text((models / "base-0.yaml").read_text().replace("base-0", "giant-0"))
    for model, (tp, params_b, max_tokens) in SIZES.items():
        path = models / f"{model}.yaml"
        path.write_text(path.read_text() + f"dtype: bfloat16\nparams_b: {params_b}\nmax_tokens: {max_tokens}\n"
                        f"engine_kwargs:\n  vllm: {{tensor_parallel_size: {tp}}}\n")
    return inputs


@pytest.fixture
def env(cluster, server, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    return {**cluster.env, "COGDISTILL_MLFLOW_SERVER": server, "COGDISTILL_CACHE_DIR": str(tmp_path / "cache"),
            "COGDISTILL_OUTPUT_DIR": str(tmp_path / "outputs"), "MLFLOW_TRACKING_URI": server}


def sized_args(study, cluster, models: str, name: str, *extra: str):
    """The recipe with per-model sizing rehearsed on replayed jobs (sizing.weightless without replay)."""
    args = recipe_args(study, cluster.partition, models, name, *extra)
    args[args.index("task=[task-0]")] = "task=[task-0,task-1]"
    return args + ["hydra.launcher.sizing.weightless=[openai,dry]", f"hydra.launcher.sizing.cpus_per_gpu={CPUS_PER_GPU}",
                   f"hydra.launcher.sizing.tokens_per_s={TOKENS_PER_S}"]


def submitted(cluster, name: str, settle_s: float = 30):
    """{SLURM id: state} of the sweep's jobs (a class of one job is a plain job, of several an array), once
    none is still ending or settle_s passed."""
    deadline = time.monotonic() + settle_s
    while True:
        jobs = {j["id"]: j["state"] for j in cluster.jobs() if j["name"] == f"cogdistill-{name}"}
        if not set(jobs.values()) & {"PENDING", "RUNNING", "COMPLETING"} or time.monotonic() > deadline:
            return jobs
        time.sleep(0.2)


def allocation(cluster, slurm_id: str):
    """(GPUs, CPUs, GB, minutes) SLURM gave the job (scontrol show job -d), and its restart count."""
    out = cluster.run("scontrol", "show", "job", "-d", slurm_id)
    gres = re.search(r"JOB_GRES=gpu:(\d+)", out)
    limit = re.search(r"TimeLimit=(?:(\d+)-)?(\d+):(\d+):(\d+)", out)
    days, hours, minutes = int(limit.group(1) or 0), int(limit.group(2)), int(limit.group(3))
    mem = re.search(r"TRES=\S*mem=(\d+)([MG])", out)
    gb = int(mem.group(1)) // (1024 if mem.group(2) == "M" else 1)
    return ((int(gres.group(1)) if gres else 0, int(re.search(r"NumCPUs=(\d+)", out).group(1)), gb,
             days * 1440 + hours * 60 + minutes), int(re.search(r"Restarts=(\d+)", out).group(1)))


@pytest.mark.integration
@pytest.mark.slow  # ~60 s, plus ~30 s to start the module's mlflow server and cluster
def test_one_command_gives_each_model_its_size_and_names_the_model_larger_than_a_node(cluster, study, env, tmp_path):
    proc = start_sweep(sized_args(study, cluster, "student-0,base-0,teacher-0,giant-0", "sizing"), env, tmp_path)
    out = finish(proc)
    assert proc.returncode == 2, out[-4000:] + cluster.logs()  # giant-0: bad input, named before submission
    assert "1 of 4 job(s) failed" in out and "#3 (model=giant-0)" in out
    assert "needs 8 GPU(s) on one node and the nodes of partition debug have 4" in out and "engine=openai" in out
    assert "Traceback" not in out
    jobs = submitted(cluster, "sizing")
    assert len(jobs) == 3 and set(jobs.values()) == {"COMPLETED"}, cluster.jobs()  # one per class, no giant-0

    _, runs = runs_by_kind("sizing")
    (parent,) = runs["sweep"]
    assert parent.info.status == "FAILED" and parent.data.tags["cogdistill.failed_jobs"] == "1"
    assert sorted((r.data.tags["model"], r.info.status) for r in runs["job"]) == [
        ("base-0", "FINISHED"), ("student-0", "FINISHED"), ("teacher-0", "FINISHED")]
    assert {r.data.tags["mlflow.parentRunId"] for r in runs["job"]} == {parent.info.run_id}
    table = {}
    for run in runs["job"]:  # each run's SLURM job: the task whose log names the run
        model = run.data.tags["model"]
        (slurm_id,) = [sid for sid in jobs if f"MLflow run {run.info.run_id}" in job_log(tmp_path / "outputs", sid)]
        table[model] = (slurm_id, allocation(cluster, slurm_id)[0])
        assert table[model][1] == expected(model), (model, table[model], expected(model))
    print("\nallocation (job, model, asked = allocated GPUs/CPUs/GB/min):",
          *(f"{sid} {model} {alloc}" for model, (sid, alloc) in sorted(table.items())), sep="\n  ")


@pytest.mark.integration
@pytest.mark.slow  # ~25 s
def test_ctrl_c_of_the_launching_command_cancels_every_array_and_kills_the_parent(cluster, study, env, tmp_path):
    from helpers.slurm_cluster import slow_replay_env

    # base-0 (2 GPUs) runs and hangs once its run started; teacher-0 (4 GPUs) waits for the GPUs
    marker = tmp_path / "base-0.waiting"
    proc = start_sweep(sized_args(study, cluster, "base-0,teacher-0", "sizing-ctrl-c", "analysis.report=false"),
                       slow_replay_env(env, tmp_path / "slow", "base-0", marker), tmp_path)

    def states():
        return set(submitted(cluster, "sizing-ctrl-c", settle_s=0).values())

    try:
        wait_for(lambda: marker.exists() and states() == {"RUNNING", "PENDING"}, 180,
                 "base-0's job running and teacher-0's pending", proc)
    except BaseException:
        finish(proc, timeout=0.1)
        raise
    proc.send_signal(signal.SIGINT)
    out = finish(proc, timeout=120)
    assert proc.returncode == 130, out[-4000:]
    assert "cancelled SLURM array(s)" in out and "Traceback" not in out
    jobs = submitted(cluster, "sizing-ctrl-c")
    assert len(jobs) == 2 and set(jobs.values()) == {"CANCELLED"}, jobs
    assert not cluster.run("squeue", "--noheader", "--name=cogdistill-sizing-ctrl-c").strip()  # nothing left queued

    def job_runs():
        return runs_by_kind("sizing-ctrl-c")[1]

    wait_for(lambda: [r.info.status for r in job_runs()["job"]] == ["KILLED"], 30, "base-0's run marked KILLED")
    assert [r.info.status for r in job_runs()["sweep"]] == ["KILLED"]


# A replayed job of one model hangs, the first time only, when it loads task-1 (task-0 is then done and
# logged): it waits for its time limit's warning signal there.
FIRST_TIME_SLOW = """
import importlib.abc, importlib.util, os, sys, time
from pathlib import Path

class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "cogdistill.traces.replay":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            load = module.load_traces

            def load_traces(path, task, model, *args, **kwargs):
                if model.name == {model!r} and task.name == "task-1" and not Path({marker!r}).exists():
                    Path({marker!r}).write_text(str(os.getpid()))
                    time.sleep(3600)
                return load(path, task, model, *args, **kwargs)
            module.load_traces = load_traces
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, _Hook())
"""


@pytest.mark.integration
@pytest.mark.slow  # ~110 s: the warning 60-90 s into a two-minute job, the requeue, the resumed job
def test_a_job_at_its_time_limit_is_warned_requeued_and_resumed_without_duplicates(cluster, study, env, tmp_path):
    import os

    import polars as pl
    from mlflow.artifacts import download_artifacts

    marker = tmp_path / "student-0.waiting"
    (tmp_path / "slow").mkdir()
    (tmp_path / "slow" / "sitecustomize.py").write_text(FIRST_TIME_SLOW.format(model="student-0", marker=str(marker)))
    slow = {**env, "PYTHONPATH": os.pathsep.join(p for p in [str(tmp_path / "slow"), env.get("PYTHONPATH")] if p)}
    args = sized_args(study, cluster, "student-0", "sizing-requeue", "analysis.report=false",
                      "hydra.launcher.sizing.min_timeout_min=2", "hydra.launcher.sizing.max_timeout_min=2",
                      "hydra.launcher.signal_delay_s=60")  # slurmctld looks every ~30 s: the warning 60-90 s in
    start = time.monotonic()
    proc = start_sweep(args, slow, tmp_path)
    out = finish(proc, timeout=400)
    assert proc.returncode == 0, out[-4000:] + cluster.logs()
    ((slurm_id, state),) = submitted(cluster, "sizing-requeue").items()
    (_, _, _, minutes), restarts = allocation(cluster, slurm_id)
    assert state == "COMPLETED" and minutes == 2 and restarts >= 1 and marker.exists()
    log = job_log(tmp_path / "outputs", slurm_id)
    assert "Caught signal SIGUSR2" in log and "Requeued job" in log
    # the warned run stopped the cogdistill way (KILLED, by the warning or the requeue's SIGTERM), not as a failure
    assert "the job is requeued and its MLflow run marked KILLED" in log or "stopped by signal 15" in log
    assert "job failed" not in log and "Traceback" not in log
    _, runs = runs_by_kind("sizing-requeue")
    ((run,),) = [runs["job"]]
    assert run.info.status == "FINISHED" and [r.info.status for r in runs["sweep"]] == ["FINISHED"]
    for task in ("task-0", "task-1"):  # each trace once, though task-0 was logged before the requeue
        traces = pl.read_parquet(download_artifacts(run_id=run.info.run_id, artifact_path=f"traces/{task}.parquet",
                                                    dst_path=str(tmp_path / task)))
        assert traces.height == 40 and traces.select("item_id", "sample_idx").n_unique() == 40
    print(f"\nrequeue: {restarts} restart(s), {time.monotonic() - start:.0f} s")


# ------------------------------------------------------------------ the rules, without a cluster

def test_the_zoos_students_are_sized_from_their_model_files_not_one_flat_request():
    """docs/scale-out.md's old recipe gave every r1-distill student one GPU; each now gets its own size."""
    from types import SimpleNamespace

    from helpers.config import compose

    from cogdistill.sweep.slurm_sizing import size_job

    sizing = SimpleNamespace(tokens_per_s=1000.0, margin=1.5, cpus_per_gpu=8, mem_per_weight_gb=1.25,
                             min_timeout_min=30, max_timeout_min=2880, get=lambda key, default: default)
    flat = {"cpus_per_task": 2, "mem_gb": 8}
    sizes = {m: size_job(compose([f"model={m}", "engine=vllm"]), sizing, flat, lambda task: 100)[1]
             for m in ("r1-distill-qwen-1.5b", "r1-distill-qwen-32b", "r1-distill-llama-70b")}
    # GPUs and CPUs from the model files' tensor_parallel_size; memory from params_b x 2 bytes (bf16) x 1.25
    assert [(s.gpus, s.cpus) for s in sizes.values()] == [(1, 8), (4, 32), (8, 64)]
    assert [s.mem_gb for s in sizes.values()] == [max(8, math.ceil(b * 2 * 1.25)) for b in (1.78, 32.8, 70.6)]
    replayed = size_job(compose(["model=r1-distill-llama-70b", "engine=replay", "engine.path=x.parquet"]), sizing,
                        flat, lambda task: 100)[1]
    assert (replayed.gpus, replayed.cpus, replayed.mem_gb) == (0, 2, 8)  # no weights on the node: the flat request


def test_sinfo_shapes_and_the_too_large_message():
    from cogdistill.sweep.slurm_sizing import JobSize, NodeShape, parse_sinfo_line, too_large

    assert parse_sinfo_line("64|512000|gpu:a100:8(S:0-1)") == (8, 64, 500)
    assert parse_sinfo_line("16|65536|gpu:4") == (4, 16, 64)
    assert parse_sinfo_line("128+|1000000|(null)") == (0, 128, 976)
    node = NodeShape(gpus=8, cpus=64, mem_gb=500)
    assert too_large("m", JobSize(8, 64, 200, 60), node, "gpu") is None
    why = too_large("r1-teacher", JobSize(16, 128, 1600, 60), node, "gpu")
    assert why.startswith("model r1-teacher needs 16 GPU(s) on one node and the nodes of partition gpu have 8")
    assert "vllm serve" in why and "engine=openai" in why
