"""Ctrl-C on a `hydra/launcher=local` sweep (issue 23): the terminal sends SIGINT to the whole process
group, the launcher and its job process alike; the sweep must stop there, never start the next job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from helpers.procs import runs_by_kind, wait_for
from helpers.slurm_cluster import slow_replay_env


@pytest.mark.slow  # about 15 s on 2 cores: a sweep's start, one job process, its stop
def test_ctrl_c_on_a_local_launcher_sweep_starts_no_further_job(isolated_env):
    from cogdistill.report.synthetic import simulate, write_replay_inputs

    inputs = write_replay_inputs(simulate(2, 1, 8, 1, seed=5), isolated_env / "study")
    first, second = inputs.models  # job #0 replays `first`, job #1 `second`
    marker = isolated_env / "job0-started"
    env = slow_replay_env(dict(os.environ), isolated_env / "site", first, marker)  # job #0 waits to be stopped
    args = ["-m", "hydra/launcher=local", "engine=replay", f"engine.path={inputs.traces}",
            f"model={first},{second}", f"task=[{','.join(inputs.tasks)}]", f"hydra.searchpath=[file://{inputs.conf_dir}]",
            f"data.mirror={inputs.mirror}", "analysis.report=false", "study=demo"]
    # its own process group, as a terminal's foreground job: Ctrl-C signals the group
    proc = subprocess.Popen([sys.executable, "-m", "cogdistill", *args], cwd=isolated_env, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(marker.exists, 120, "job #0 replaying", proc)
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, out[-3000:]
    # Hydra's log lines and the jobs' start-up notes (a floating revision) aside, the stop is one line
    lines = [line for line in out.splitlines() if line.strip() and not line.startswith("[")
             and "is floating" not in line]
    assert "Traceback" not in out and len(lines) == 1 and "stopped by SIGINT" in lines[0], out[-3000:]
    _, runs = runs_by_kind()
    by_model = {r.data.tags.get("model"): r.info.status for r in runs["job"]}
    assert by_model.get(first) == "KILLED", by_model
    assert by_model.get(second) in (None, "KILLED"), f"job #1 ran after Ctrl-C: {by_model}"
    assert [r.info.status for r in runs["sweep"]] == ["KILLED"]


@pytest.mark.slow  # about 15 s on 2 cores
def test_a_killed_job_process_fails_its_job_and_the_next_job_still_runs(isolated_env):
    """Jobs are handed to processes one slot at a time: after a job process dies (SIGKILL, the OOM
    killer) the launcher's broken executor is replaced, and the sweep's remaining jobs run."""
    from cogdistill.report.synthetic import simulate, write_replay_inputs

    inputs = write_replay_inputs(simulate(2, 1, 8, 1, seed=5), isolated_env / "study")
    first, second = inputs.models
    marker = isolated_env / "job0-started"
    env = slow_replay_env(dict(os.environ), isolated_env / "site", first, marker)
    args = ["-m", "hydra/launcher=local", "engine=replay", f"engine.path={inputs.traces}",
            f"model={first},{second}", f"task=[{','.join(inputs.tasks)}]", f"hydra.searchpath=[file://{inputs.conf_dir}]",
            f"data.mirror={inputs.mirror}", "analysis.report=false", "study=demo"]
    proc = subprocess.Popen([sys.executable, "-m", "cogdistill", *args], cwd=isolated_env, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(marker.exists, 120, "job #0 replaying", proc)
        os.kill(int(marker.read_text()), signal.SIGKILL)  # the job's process, not the sweep
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out[-3000:]  # a job failed, not on bad input
    assert "job 0's process died" in out and "Traceback" not in out, out[-3000:]
    _, runs = runs_by_kind()
    assert {r.data.tags.get("model"): r.info.status for r in runs["job"]}.get(second) == "FINISHED", out[-3000:]
