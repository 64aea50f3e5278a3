"""Helpers for tests that drive real `python -m cogdistill` processes: start, wait, signal, inspect."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List, Set

from helpers.config import job_overrides

# Runs cogdistill's command line in this interpreter after `prelude` (fault hooks) has run.
_MAIN = "\nimport runpy, sys\nsys.argv[0] = 'cogdistill'\nrunpy.run_module('cogdistill', run_name='__main__')\n"

# Every cache entry is followed by a pause, so that a test can signal a job in mid-generation.
SLOW_PUTS = """
import time
from cogdistill.traces.cache import GenerationCache
_put = GenerationCache.put
def put(self, key, gen):
    _put(self, key, gen)
    time.sleep({pause})
GenerationCache.put = put
"""


def slow_env(folder: Path, pause: float) -> dict:
    """An environment whose Python processes, spawned children included, pause after each cache entry
    (a sitecustomize module runs in every interpreter started with it on PYTHONPATH)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SLOW_PUTS.format(pause=pause))
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(folder), os.environ.get("PYTHONPATH")] if p)}


def start(args: List[str], cwd: Path, prelude: str = "", env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", prelude + _MAIN, *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def wait_for(condition: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended ({proc.returncode}) before {what}:\n{proc.stdout.read()[-3000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def entries(cache: Path) -> int:
    return len(list((cache / "generations").rglob("*.json"))) if (cache / "generations").is_dir() else 0


def descendants(pid: int) -> Set[int]:
    """Every live process below pid (from /proc)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out


def runs_by_kind(experiment: str = "demo"):
    from mlflow import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id]) if exp else []
    out = {"job": [], "sweep": []}
    for run in runs:
        out[run.data.tags.get("cogdistill.kind", "job")].append(run)
    return client, out


def survivors(pids: Set[int], grace_s: float = 10.0) -> List[str]:
    """The command lines of those pids still alive after grace_s (a process may take a moment to exit)."""
    deadline = time.monotonic() + grace_s
    while [p for p in pids if alive(p)] and time.monotonic() < deadline:
        time.sleep(0.2)
    out = []
    for pid in pids:
        if alive(pid):
            try:
                out.append(Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")[:200])
            except OSError:
                pass
    return out


def cogdistill(args: List[str], cwd: Path, prelude: str = "", timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", prelude + _MAIN, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def output(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout[-3000:] + proc.stderr[-3000:]


def single_job(conf: Path, mirror_sha) -> List[str]:
    mirror, sha = mirror_sha
    # one torch thread: the tiny model gains nothing from more, and parallel jobs would oversubscribe the cores
    return job_overrides(conf, mirror, sha) + ["engine=transformers", "engine.batch_size=1", "engine.threads=1"]


def two_job_sweep(conf: Path, mirror_sha, *extra: str) -> List[str]:
    """Two jobs of 6 prompts each whose generations differ (max_tokens is in the cache key);
    no comparison report at the end (tests/test_report.py covers it)."""
    return ["-m", "model.max_tokens=10,12", "analysis.report=false", *single_job(conf, mirror_sha), *extra]


def store_runs(expected: int, sweep: bool = False):
    """All runs of the store, checked: the expected number, all FINISHED, no job logged twice."""
    from mlflow import MlflowClient

    client = MlflowClient(os.environ.get("MLFLOW_TRACKING_URI"))
    runs = client.search_runs([client.get_experiment_by_name("demo").experiment_id])
    assert len(runs) == expected, [(r.data.tags.get("cogdistill.kind"), r.info.status) for r in runs]
    assert {r.info.status for r in runs} == {"FINISHED"}
    jobs = collections.Counter((r.data.tags["cogdistill.job_key"], r.data.tags.get("mlflow.parentRunId"))
                               for r in runs if r.data.tags["cogdistill.kind"] == "job")
    assert set(jobs.values()) == {1}, f"a job logged twice: {jobs}"
    parents = [r for r in runs if r.data.tags["cogdistill.kind"] == "sweep"]
    assert len(parents) == (1 if sweep else 0)
    if sweep:
        assert {r.data.tags["mlflow.parentRunId"] for r in runs if r not in parents} == {parents[0].info.run_id}
    return client, runs


def cache_entries(cache: Path) -> int:
    """The number of entries; every one must parse (temporary files are not entries)."""
    entries = list((cache / "generations").rglob("*.json"))
    for path in entries:
        json.loads(path.read_text())
    return len(entries)


def fill(folder: Path) -> None:
    """Fill a file system to the last byte."""
    with open(folder / "filler", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass
