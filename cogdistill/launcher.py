"""A Hydra launcher that runs every job of a sweep in a fresh process (`hydra/launcher=local`).

Why not joblib: its loky workers are reused across jobs, so a model loaded by one job can
still sit in memory when the next starts. Here each job gets a newly spawned process
(`max_tasks_per_child=1`) that exits when the job ends; `max_parallel` jobs run at once.

Process boundaries, both ways:
- What a job hands back crosses a pickle. Hydra's JobReturn carries the job's composed config,
  whose nodes are typed by dataclasses (ours and Hydra's plugins'); Hydra's plugin scan re-executes
  plugin modules, so such a class may no longer be the object its module name points to, and
  pickling the result fails after the job finished. The child therefore returns only plain
  values (status, our task function's dict, the error's text); the config classes live in
  ordinary modules (this one), which the scan never re-executes.
- On SIGINT/SIGTERM the parent stops every job process (SIGTERM, then SIGKILL after a grace
  period), each of which marks its MLflow run KILLED; a job process dies with its parent
  (PR_SET_PDEATHSIG), even if the parent is killed with SIGKILL.
The plugin class Hydra finds is hydra_plugins/cogdistill_launcher/process_launcher.py.
"""

import logging
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence

log = logging.getLogger(__name__)

GRACE_S = 30.0  # for a job process to mark its run KILLED and stop its engine


@dataclass
class ProcessLauncherConf:
    _target_: str = "hydra_plugins.cogdistill_launcher.process_launcher.ProcessLauncher"
    max_parallel: int = 1  # jobs running at once, each in its own process


def _execute(payload: bytes, idx: int, overrides: List[str]):
    import cloudpickle
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.singleton import Singleton
    from hydra.core.utils import JobReturn, run_job, setup_globals
    from omegaconf import open_dict

    from cogdistill.exits import die_with_parent, install_signal_handlers

    install_signal_handlers()
    die_with_parent()
    hydra_context, config, task_function, singleton_state = cloudpickle.loads(payload)
    setup_globals()
    Singleton.set_state(singleton_state)
    sweep_config = hydra_context.config_loader.load_sweep_config(config, overrides)
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        sweep_config.hydra.job.num = idx
    HydraConfig.instance().set_config(sweep_config)
    ret = run_job(hydra_context=hydra_context, config=sweep_config, task_function=task_function,
                  job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
    value = ret._return_value
    if ret.status.name == "FAILED":  # an exception may not pickle back: keep its text
        value = RuntimeError(f"job {idx} failed: {type(value).__name__}: {value}")
    return JobReturn(overrides=list(overrides), _return_value=value, working_dir=ret.working_dir,
                     task_name=ret.task_name, status=ret.status)


class ProcessLauncherImpl:
    """The launcher's behaviour; Hydra instantiates the subclass in hydra_plugins (see module doc)."""

    def __init__(self, max_parallel: int = 1) -> None:
        self.max_parallel = max(1, max_parallel)
        self.config: Any = None
        self.task_function: Any = None
        self.hydra_context: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
        import cloudpickle
        from hydra.core.singleton import Singleton
        from hydra.core.utils import configure_log, filter_overrides, setup_globals

        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info(f"Launching {len(job_overrides)} jobs, one process each, {self.max_parallel} at a time")
        for idx, overrides in enumerate(job_overrides):
            log.info(f"\t#{initial_job_idx + idx} : {' '.join(filter_overrides(overrides))}")
        payload = cloudpickle.dumps((self.hydra_context, self.config, self.task_function, Singleton.get_state()))
        pool = ProcessPoolExecutor(max_workers=self.max_parallel, mp_context=mp.get_context("spawn"),
                                   max_tasks_per_child=1)
        try:
            futures = [pool.submit(_execute, payload, initial_job_idx + idx, list(overrides))
                       for idx, overrides in enumerate(job_overrides)]
            results = [_result(f, initial_job_idx + i, job_overrides[i]) for i, f in enumerate(futures)]
        except BaseException:
            stop_workers(pool)
            raise
        pool.shutdown(wait=True)
        return results


def _result(future, idx: int, overrides: Sequence[str]):
    """A job's JobReturn; a job process that died (OOM killer, SIGKILL) becomes a FAILED return."""
    from concurrent.futures.process import BrokenProcessPool

    from hydra.core.utils import JobReturn, JobStatus

    try:
        return future.result()
    except BrokenProcessPool as exc:
        error = RuntimeError(f"job {idx}'s process died ({exc}); finished generations are cached, re-run to resume")
        return JobReturn(overrides=list(overrides), _return_value=error, status=JobStatus.FAILED)


def stop_workers(pool: ProcessPoolExecutor, grace_s: Optional[float] = None) -> None:
    """SIGTERM every job process, wait for them to clean up, SIGKILL the rest."""
    import time

    procs = list((getattr(pool, "_processes", None) or {}).values())
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + (GRACE_S if grace_s is None else grace_s)
    for proc in procs:
        proc.join(timeout=max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)
    pool.shutdown(wait=True, cancel_futures=True)  # after the processes: its manager thread then ends at once
