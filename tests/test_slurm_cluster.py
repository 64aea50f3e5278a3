"""hydra/launcher=slurm on a real one-node SLURM cluster (slurmctld + slurmd + munged on 127.0.0.1,
tests/helpers/slurm_cluster.py) logging to a real `mlflow server`: a sweep runs as one SLURM array
under one MLflow parent and the report follows; a job cancelled with scancel is resumed, alone, by
the same command; a job that fails on the node is named in the terminal that launched the sweep.
The command line is docs/scale-out.md's cluster recipe minus the GPUs. Jobs replay simulated traces
(engine=replay): no model weights. One cluster and one tracking server serve the whole module; each
test logs to its own study (MLflow experiment)."""

from __future__ import annotations

import pytest

from helpers.mlflow_server import serve_mlflow
from helpers.procs import runs_by_kind, wait_for
from helpers.slurm_cluster import (finish, job_log, recipe_args, require_slurm, slow_replay_env, slurm_cluster,
                                   start_sweep)

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    require_slurm()
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as running:
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One `mlflow server` for the module (conftest's mlflow_server is per test: a start each)."""
    root = tmp_path_factory.mktemp("mlflow")
    with serve_mlflow(["server", "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
                       "--artifacts-destination", str(root / "artifacts")], root / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Simulated traces of teacher-0, base-0 and student-0 on one task of 40 items, ready to replay,
    plus ghost-0: a model with a config but no records (its job fails on the node)."""
    from cogdistill.report.synthetic import simulate, write_replay_inputs

    inputs = write_replay_inputs(simulate(3, 1, 40, 1, seed=3), tmp_path_factory.mktemp("study"))
    base = (inputs.conf_dir / "model" / "base-0.yaml").read_text()
    (inputs.conf_dir / "model" / "ghost-0.yaml").write_text(base.replace("base-0", "ghost-0"))
    return inputs


@pytest.fixture
def env(cluster, server, tmp_path, monkeypatch):
    """The sweep's environment: the cluster's (SLURM_CONF, PATH), the tracking server, a fresh cache
    and output folder. MLFLOW_TRACKING_URI here is for this test's own MLflow queries."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    return {**cluster.env, "COGDISTILL_MLFLOW_SERVER": server, "COGDISTILL_CACHE_DIR": str(tmp_path / "cache"),
            "COGDISTILL_OUTPUT_DIR": str(tmp_path / "outputs"), "MLFLOW_TRACKING_URI": server}


@pytest.mark.integration
@pytest.mark.slow  # 40 s, plus ~35 s to start the module's mlflow server and cluster
def test_a_sweep_runs_as_one_slurm_array_under_one_parent_and_the_report_follows(cluster, study, env, tmp_path):
    proc = start_sweep(recipe_args(study, cluster.partition, "teacher-0,student-0", "slurm-array"), env, tmp_path)
    out = finish(proc)
    assert proc.returncode == 0, out[-4000:] + cluster.logs()
    (tasks,) = cluster.arrays("cogdistill-slurm-array").values()  # one array
    assert sorted(tasks) == [0, 1] and {state for _, state in tasks.values()} == {"COMPLETED"}

    client, runs = runs_by_kind("slurm-array")
    (parent,) = runs["sweep"]
    assert parent.info.status == "FINISHED"
    assert sorted((r.data.tags["model"], r.info.status) for r in runs["job"]) == [
        ("student-0", "FINISHED"), ("teacher-0", "FINISHED")]
    assert {r.data.tags["mlflow.parentRunId"] for r in runs["job"]} == {parent.info.run_id}
    # each job ran on the node as its array task: its run is named in that task's log
    by_model = {r.data.tags["model"]: r.info.run_id for r in runs["job"]}
    for num, model in enumerate(["teacher-0", "student-0"]):
        assert f"MLflow run {by_model[model]}" in job_log(tmp_path / "outputs", tasks[num][0])

    # the report, built at the sweep's end from the server, on the parent run (as with local launchers)
    files = {f.path for f in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.json", "report/report.md"} <= files
    assert "sweep_summary.csv" in {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert {"report/r_teacher", "report/r_student"} <= set(parent.data.metrics)
    assert "report: " in out and "Traceback" not in out


@pytest.mark.integration
@pytest.mark.slow  # 45 s: two sweeps
def test_a_cancelled_job_is_resumed_alone_by_the_same_command(cluster, study, env, tmp_path):
    args = recipe_args(study, cluster.partition, "teacher-0,student-0", "slurm-resume", "analysis.report=false")
    marker = tmp_path / "student-0.waiting"  # student-0's job waits once its run started (slow_replay_env)
    first = start_sweep(args, slow_replay_env(env, tmp_path / "slow", "student-0", marker), tmp_path)

    def teacher_done() -> bool:
        _, runs = runs_by_kind("slurm-resume")
        return any(r.data.tags["model"] == "teacher-0" and r.info.status == "FINISHED" for r in runs["job"])

    try:
        wait_for(lambda: marker.exists() and teacher_done(), 180, "teacher-0 to finish and student-0 to run", first)
    except BaseException:
        finish(first, timeout=0.1)
        raise
    ((array, tasks),) = cluster.arrays("cogdistill-slurm-resume", settle_s=0).items()
    cancelled = tasks[1][0]
    cluster.run("scancel", cancelled)
    out = finish(first)
    assert first.returncode == 143, out[-4000:]  # stopped from outside: neither a bug (1) nor bad input (2)
    assert "1 of 2 job(s) failed" in out and "#1 (model=student-0)" in out
    assert f"SLURM job {cancelled} ended CANCELLED" in out and "Traceback" not in out
    client, runs = runs_by_kind("slurm-resume")
    before = {r.data.tags["model"]: r for r in runs["job"]}
    assert before["student-0"].info.status == "KILLED"  # SIGTERM on the node ended its run the cogdistill way
    assert before["teacher-0"].info.status == "FINISHED" and runs["sweep"][0].info.status == "FAILED"

    again = start_sweep(args, env, tmp_path)
    out = finish(again)
    assert again.returncode == 0, out[-4000:]
    _, runs = runs_by_kind("slurm-resume")
    after = {r.data.tags["model"]: r for r in runs["job"]}
    assert len(runs["job"]) == 2 and [r.info.status for r in runs["sweep"]] == ["FINISHED"]
    # the teacher's run is untouched (not redone), the student's interrupted run resumed and finished
    assert after["teacher-0"].info.run_id == before["teacher-0"].info.run_id
    assert after["teacher-0"].info.end_time == before["teacher-0"].info.end_time
    assert after["student-0"].info.run_id == before["student-0"].info.run_id
    assert after["student-0"].info.status == "FINISHED"
    rerun = cluster.arrays("cogdistill-slurm-resume")
    assert len(rerun) == 2 and rerun[array][1][1] == "CANCELLED"
    latest = rerun[max(rerun)]
    assert {state for _, state in latest.values()} == {"COMPLETED"}
    assert "teacher-0: already finished in this sweep" in job_log(tmp_path / "outputs", latest[0][0])


@pytest.mark.integration
@pytest.mark.slow  # 16 s
def test_a_job_that_fails_on_the_node_is_named_in_the_launching_terminal(cluster, study, env, tmp_path):
    proc = start_sweep(recipe_args(study, cluster.partition, "ghost-0,base-0", "slurm-failure", "analysis.report=false"),
                       env, tmp_path)
    out = finish(proc)
    assert proc.returncode == 2, out[-4000:]  # bad input (the replay file lacks the model), as on one machine
    assert "1 of 2 job(s) failed" in out and "#0 (model=ghost-0)" in out
    assert "no record is for model 'ghost-0'" in out and "Traceback" not in out
    (tasks,) = cluster.arrays("cogdistill-slurm-failure").values()
    assert {state for _, state in tasks.values()} == {"COMPLETED"}  # the job failed, not the node
    client, runs = runs_by_kind("slurm-failure")
    (parent,) = runs["sweep"]
    assert parent.info.status == "FAILED" and parent.data.tags["cogdistill.failed_jobs"] == "1"
    assert sorted((r.data.tags["model"], r.info.status) for r in runs["job"]) == [
        ("base-0", "FINISHED"), ("ghost-0", "FAILED")]


def test_a_job_that_raised_outside_the_task_is_one_line_not_submitits_traceback(tmp_path):
    """E.g. a node whose environment lacks a package: submitit hands back the job's whole traceback."""
    from types import SimpleNamespace

    from submitit.core.utils import FailedJobError

    from cogdistill.sweep.launcher import slurm_return

    trace = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n    import vllm\n"
             "ModuleNotFoundError: No module named 'vllm'\n")
    log = tmp_path / "7_1_0_log.out"

    class Job:
        job_id, state = "7_1", "FAILED"
        paths = SimpleNamespace(result_pickle=tmp_path / "7_1_0_result.pkl", stdout=log)

        def wait(self):
            pass

        def results(self):
            raise FailedJobError(f"Job (task=0) failed during processing with trace:\n----------------------\n{trace}"
                                 "----------------------\nYou can check full logs with 'job.stderr(0)' and "
                                 f"'job.stdout(0)'or at paths:\n  - {log}.err\n  - {log}\n")

    ret = slurm_return(Job(), 1, ["model=a"])
    assert ret.status.name == "FAILED" and ret.overrides == ["model=a"]
    assert str(ret._return_value) == f"SLURM job 7_1 raised ModuleNotFoundError: No module named 'vllm' (its log: {log})"
