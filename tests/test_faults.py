"""Faults injected into real `python -m cogdistill` processes, then the same command again.

Each test kills (SIGKILL: no cleanup code runs) or breaks a run at a chosen moment and checks
that the re-run exits 0, leaves no duplicate MLflow runs, no unreadable cache entries, and
regenerates exactly the prompts that had not finished before the fault.
"""

from __future__ import annotations

import signal
import threading

import pytest

from helpers.openai_server import FakeServer, chat_reply
from helpers.procs import cache_entries, cogdistill, output, single_job, store_runs, two_job_sweep

# every test here runs real cogdistill processes twice (the fault, then the re-run): 25-39 s each
pytestmark = pytest.mark.slow

# Each test runs cogdistill's command line in a fresh interpreter after a `prelude` (one of these fault
# hooks) has run: helpers.procs.cogdistill(args, cwd, prelude).

# SIGKILL this process once GenerationCache.put has stored its {n}th entry.
KILL_AFTER_PUT = """
import os, signal
from cogdistill.traces.cache import GenerationCache
_put, _count = GenerationCache.put, [0]
def put(self, key, gen):
    _put(self, key, gen)
    _count[0] += 1
    if _count[0] == {n}:
        os.kill(os.getpid(), signal.SIGKILL)
GenerationCache.put = put
"""

# Replace the {n}th cache rename (temporary file written, entry not yet in place) with {action}.
AT_CACHE_RENAME = """
import errno, os, signal
_replace, _count = os.replace, [0]
def replace(src, dst, *a, **kw):
    if os.path.basename(str(src)).startswith('.tmp-'):
        _count[0] += 1
        if _count[0] >= {n}:
            {action}
    return _replace(src, dst, *a, **kw)
os.replace = replace
"""
SIGKILL = "os.kill(os.getpid(), signal.SIGKILL)"
DISK_FULL = "raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))"

# SIGKILL this process after JobRun.log_files has uploaded its first artifact.
KILL_IN_LOG_FILES = """
import os, signal
from cogdistill.tracking.store import JobRun
_log_files = JobRun.log_files
def log_files(self, files):
    _log_files(self, files[:1])
    os.kill(os.getpid(), signal.SIGKILL)
JobRun.log_files = log_files
"""


def misses(runs, max_tokens: int) -> float:
    (run,) = [r for r in runs if r.data.tags["cogdistill.kind"] == "job"
              and r.data.params.get("max_tokens") == str(max_tokens)]
    return run.data.metrics["cache_misses"]


def test_sigkill_during_generation_in_a_sweep(isolated_env, tiny_conf, mult_mirror):
    """Killed after 3 of the second job's 6 prompts: the re-run skips job 1, generates 3."""
    args = two_job_sweep(tiny_conf, mult_mirror)
    killed = cogdistill(args, isolated_env, KILL_AFTER_PUT.format(n=9))
    assert killed.returncode == -signal.SIGKILL, output(killed)
    assert cache_entries(isolated_env / "cache") == 9

    rerun = cogdistill(args, isolated_env)
    assert rerun.returncode == 0, output(rerun)
    assert "already finished in this sweep" in rerun.stdout
    _, runs = store_runs(3, sweep=True)
    assert misses(runs, 12) == 3 and misses(runs, 10) == 6  # job 1 logged before the kill, not re-run
    assert cache_entries(isolated_env / "cache") == 12


def test_sigkill_between_cache_write_and_rename(isolated_env, tiny_conf, mult_mirror):
    """The 4th entry's temporary file is written but never renamed: that prompt is generated again."""
    args = single_job(tiny_conf, mult_mirror)
    killed = cogdistill(args, isolated_env, AT_CACHE_RENAME.format(n=4, action=SIGKILL))
    assert killed.returncode == -signal.SIGKILL, output(killed)
    assert cache_entries(isolated_env / "cache") == 3
    assert len(list((isolated_env / "cache").rglob(".tmp-*"))) == 1, "killed between write and rename"

    rerun = cogdistill(args, isolated_env)
    assert rerun.returncode == 0, output(rerun)
    _, runs = store_runs(1)
    assert misses(runs, 12) == 3
    assert cache_entries(isolated_env / "cache") == 6


def test_sigkill_during_mlflow_logging(isolated_env, tiny_conf, mult_mirror):
    """Killed after the first artifact: the re-run resumes that run, generates nothing, logs everything."""
    args = single_job(tiny_conf, mult_mirror)
    killed = cogdistill(args, isolated_env, KILL_IN_LOG_FILES)
    assert killed.returncode == -signal.SIGKILL, output(killed)

    rerun = cogdistill(args, isolated_env)
    assert rerun.returncode == 0, output(rerun)
    client, runs = store_runs(1)
    assert misses(runs, 12) == 0 and runs[0].data.metrics["cache_hits"] == 6
    artifacts = {f.path for folder in ("traces", "items", "figures", "config")
                 for f in client.list_artifacts(runs[0].info.run_id, folder)}
    assert {"traces/multiplication.parquet", "items/multiplication_items.csv",
            "figures/multiplication_scatter.png", "config/config.yaml"} <= artifacts
    assert cache_entries(isolated_env / "cache") == 6


def test_server_that_dies_mid_sweep(isolated_env, tiny_conf, mult_mirror):
    """An OpenAI-compatible server stops answering after 9 requests (job 2 half done), then comes back."""
    answered, dies_after = [0], [9]
    lock = threading.Lock()

    def script(body, _seen):
        with lock:
            if dies_after[0] is not None and answered[0] >= dies_after[0]:
                return 503, {}, {"error": {"message": "server is shutting down"}}
            answered[0] += 1
            return 200, {}, chat_reply([f"step {answered[0]}\nThe answer is 6"])

    server = FakeServer(script)
    try:
        args = two_job_sweep(tiny_conf, mult_mirror, "engine=openai", f"engine.base_url={server.base_url}",
                             "engine.api_key_env=null", "engine.concurrency=4", "engine.max_retries=1",
                             "engine.backoff_s=0.01", "engine.backoff_max_s=0.02")
        for transformers_only in ("engine=transformers", "engine.batch_size=1", "engine.threads=1"):
            args.remove(transformers_only)
        failed = cogdistill(args, isolated_env)
        assert failed.returncode == 2, output(failed)
        assert "HTTP 503" in failed.stdout and "Traceback" not in output(failed)
        assert cache_entries(isolated_env / "cache") == 9

        dies_after[0] = None  # the server is back
        rerun = cogdistill(args, isolated_env)
        assert rerun.returncode == 0, output(rerun)
    finally:
        server.close()
    _, runs = store_runs(3, sweep=True)
    assert misses(runs, 12) == 3
    assert cache_entries(isolated_env / "cache") == 12


def test_full_disk_on_the_cache_dir(isolated_env, tiny_conf, mult_mirror):
    """No space for the 3rd entry: a clear message naming the cache dir and the fix; after freeing space
    the re-run generates only the 4 prompts not stored."""
    args = single_job(tiny_conf, mult_mirror)
    full = cogdistill(args, isolated_env, AT_CACHE_RENAME.format(n=3, action=DISK_FULL))
    out = output(full)
    assert full.returncode == 2, out
    assert "Traceback" not in out and "No space left on device" in out
    assert str(isolated_env / "cache" / "generations") in full.stdout and "COGDISTILL_CACHE_DIR" in full.stdout
    assert cache_entries(isolated_env / "cache") == 2
    assert not list((isolated_env / "cache" / "generations").rglob(".tmp-*")), "no temporary files left"

    rerun = cogdistill(args, isolated_env)
    assert rerun.returncode == 0, output(rerun)
    _, runs = store_runs(1)
    assert misses(runs, 12) == 4
