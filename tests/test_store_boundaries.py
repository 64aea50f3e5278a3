"""The MLflow store at its process boundary: identical jobs started together, a store that is
unreachable, read-only or full, a Hydra output folder that is full. Real processes, a real
`mlflow server`, real (tmpfs) file systems; each failure is one line with the fix and exit code 2."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers.procs import cogdistill, entries, fill, finish, output, runs_by_kind, single_job, slow_env, start, wait_for


def one_error_line(proc, *needles):
    out = output(proc)
    assert proc.returncode == 2, out
    assert "Traceback" not in out, out
    for needle in needles:
        assert needle in out, out
    return out


@pytest.mark.parametrize("store", [pytest.param("sqlite", marks=pytest.mark.slow),  # 25 s
                                   pytest.param("server", marks=pytest.mark.integration)])  # a real `mlflow server`, 52 s
def test_two_identical_jobs_started_together_never_share_a_run(isolated_env, tiny_conf, mult_mirror, store,
                                                               request):
    env = slow_env(isolated_env / "site", 0.5)
    if store == "server":
        env["MLFLOW_TRACKING_URI"] = request.getfixturevalue("mlflow_server")
        os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]  # for runs_by_kind (monkeypatched env)
    args = single_job(tiny_conf, mult_mirror)
    procs = [start(args, isolated_env, env=env) for _ in range(2)]  # a fresh store: both create it at once
    outs = [finish(p, timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], "\n=====\n".join(outs)[-6000:]
    loser = outs[[p.returncode for p in procs].index(2)]
    assert "an identical job is already running" in loser and "Traceback" not in loser, loser
    _, runs = runs_by_kind()
    assert [r.info.status for r in runs["job"]] == ["FINISHED"]
    assert entries(isolated_env / "cache") == 6


@pytest.mark.slow  # 32 s
def test_a_running_job_is_not_adopted_but_a_dead_ones_run_is(isolated_env, tiny_conf, mult_mirror):
    """Started one after the other: the second stops while the first runs; after the first is
    SIGKILLed (no clean-up, its run stays RUNNING), a new start resumes that very run."""
    import signal

    args = single_job(tiny_conf, mult_mirror)
    env = slow_env(isolated_env / "site", 1.0)
    first = start(args, isolated_env, env=env)
    wait_for(lambda: entries(isolated_env / "cache") >= 1, 180, "the first job generating", first)
    second = cogdistill(args, isolated_env)
    one_error_line(second, "an identical job is already running")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    _, runs = runs_by_kind()
    assert [r.info.status for r in runs["job"]] == ["RUNNING"]  # what SIGKILL leaves behind
    third = cogdistill(args, isolated_env)
    assert third.returncode == 0, output(third)
    _, runs = runs_by_kind()
    assert [r.info.status for r in runs["job"]] == ["FINISHED"]


def _run(status="RUNNING", owner="", heartbeat=None):
    tags = {"cogdistill.owner": owner}
    if heartbeat is not None:
        tags["cogdistill.heartbeat"] = str(heartbeat)
    return SimpleNamespace(info=SimpleNamespace(status=status), data=SimpleNamespace(tags=tags))


def test_liveness_of_a_running_run():
    from cogdistill.tracking.leases import Lease, _owner

    host, now = socket.gethostname(), time.time()
    assert Lease.is_live(_run(owner=_owner()))  # this very process
    assert not Lease.is_live(_run(status="KILLED", owner=_owner()))
    assert not Lease.is_live(_run(owner=f"{host}:{2 ** 22 + 7}:123"))  # no such pid
    me = _owner().rsplit(":", 1)[0]
    assert not Lease.is_live(_run(owner=f"{me}:1"))  # our pid, another start time: a reused pid
    assert Lease.is_live(_run(owner="elsewhere:42:1", heartbeat=now - 5))  # another host, fresh heartbeat
    assert not Lease.is_live(_run(owner="elsewhere:42:1", heartbeat=now - Lease.STALE_S - 1))
    assert not Lease.is_live(_run(owner=""))  # a run from before leases: taken for dead


def test_a_tracking_server_that_is_not_there_fails_in_seconds(isolated_env, tiny_conf, mult_mirror, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    began = time.monotonic()
    proc = cogdistill(single_job(tiny_conf, mult_mirror), isolated_env)
    one_error_line(proc, f"cannot reach the MLflow tracking server at http://127.0.0.1:{port}", "MLFLOW_TRACKING_URI")
    assert time.monotonic() - began < 60


@pytest.mark.slow  # 13 s
def test_a_tracking_server_that_accepts_but_never_answers_fails_in_seconds(isolated_env, tiny_conf, mult_mirror,
                                                                           monkeypatch):
    with socket.socket() as silent:  # listens (the kernel completes the handshake) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{silent.getsockname()[1]}")
        began = time.monotonic()
        proc = cogdistill(single_job(tiny_conf, mult_mirror), isolated_env)
    one_error_line(proc, "cannot reach the MLflow tracking server", "waited up to 10 s")
    assert time.monotonic() - began < 60


@pytest.mark.slow  # 19 s
def test_a_read_only_store(isolated_env, tiny_conf, mult_mirror, tmpfs, monkeypatch):
    store = tmpfs("store")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    args = single_job(tiny_conf, mult_mirror)
    assert cogdistill(args, isolated_env).returncode == 0  # the store exists, with one finished run
    subprocess.run(["mount", "-o", "remount,ro", str(store)], check=True)
    proc = cogdistill(args + ["model.max_tokens=10"], isolated_env)
    one_error_line(proc, "MLflow store", "read-only", "MLFLOW_TRACKING_URI")


@pytest.mark.slow  # 25 s
def test_a_full_artifact_store(isolated_env, tiny_conf, mult_mirror, tmpfs):
    artifacts = tmpfs("artifacts")
    fill(artifacts)
    proc = cogdistill(single_job(tiny_conf, mult_mirror) + [f"tracking.artifact_root={artifacts}"], isolated_env)
    one_error_line(proc, "no space left on the device", "MLflow artifact store")
    _, runs = runs_by_kind()
    assert [r.info.status for r in runs["job"]] == ["FAILED"]  # not left RUNNING
    (artifacts / "filler").unlink()  # space again: the same command resumes that run
    again = cogdistill(single_job(tiny_conf, mult_mirror) + [f"tracking.artifact_root={artifacts}"], isolated_env)
    assert again.returncode == 0, output(again)
    _, runs = runs_by_kind()
    assert [r.info.status for r in runs["job"]] == ["FINISHED"]


def test_a_full_hydra_output_folder(isolated_env, tiny_conf, mult_mirror, tmpfs, monkeypatch):
    outputs = tmpfs("outputs", "1m")
    fill(outputs)
    monkeypatch.setenv("COGDISTILL_OUTPUT_DIR", str(outputs))
    proc = cogdistill(single_job(tiny_conf, mult_mirror), isolated_env)
    one_error_line(proc, "no space left on the device", "COGDISTILL_OUTPUT_DIR")


@pytest.mark.slow  # 17 s
def test_a_full_store(isolated_env, tiny_conf, mult_mirror, tmpfs, monkeypatch):
    store = tmpfs("store", "8m")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    args = single_job(tiny_conf, mult_mirror) + [f"tracking.artifact_root={isolated_env / 'artifacts'}"]
    assert cogdistill(args, isolated_env).returncode == 0  # the store exists, with one finished run
    fill(store)
    proc = cogdistill(args + ["model.max_tokens=10"], isolated_env)
    one_error_line(proc, "MLflow store", "MLFLOW_TRACKING_URI")
