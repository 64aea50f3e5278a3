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

`hydra/launcher=slurm` is hydra-submitit-launcher's SLURM launcher with the same boundaries kept
(SlurmLauncherImpl, mixed in by hydra_plugins/cogdistill_launcher/slurm_launcher.py):
- on the node, SIGTERM (scancel, a time limit, preemption) stops the job the cogdistill way (its
  run marked KILLED, one line, exit 143): submitit itself ignores SIGTERM, so the job ran on until
  SLURM's SIGKILL and left its run RUNNING;
- a job that ends without a result (cancelled, killed, its node lost) is one FAILED return with
  SLURM's state and its log's path, as a job process that died is here: submitit raises on the first
  such job, which lost every other job's outcome and stopped the sweep with a launcher error.
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
    from hydra.core.utils import run_job, setup_globals
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
    return plain_return(ret, idx, overrides)


def plain_return(ret: Any, idx: int, overrides: Sequence[str]):
    """A job's JobReturn with plain values only, to cross a pickle (see the module doc)."""
    from hydra.core.utils import JobReturn

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


# ------------------------------------------------------------------ hydra/launcher=slurm (submitit)

class SlurmLauncherImpl:
    """Mixed into hydra-submitit-launcher's SlurmLauncher, before it (see the module doc)."""

    def __call__(self, sweep_overrides: List[str], job_dir_key: str, job_num: int, job_id: str,
                 singleton_state: Any):
        """Runs on the node, in submitit's job process (after submitit installed its signal handlers)."""
        import sys

        from cogdistill.exits import install_signal_handlers, interrupt_exit_code

        install_signal_handlers()  # SIGUSR2 (submitit's timeout/preemption checkpoint) stays submitit's
        try:
            ret = super().__call__(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)  # type: ignore[misc]
        except BaseException as exc:
            code = interrupt_exit_code(exc)
            if code is None:
                raise
            print(f"stopped by signal {code - 128}: the job's MLflow run is marked KILLED; finished generations are "
                  "cached; re-running the sweep resumes it.", flush=True)
            sys.exit(code)
        return plain_return(ret, job_num, sweep_overrides)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
        """hydra-submitit-launcher 1.2.0's BaseSubmititLauncher.launch, but every job's outcome is
        collected (slurm_return) instead of raising on the first job that left no result."""
        import os

        import submitit
        from hydra.core.singleton import Singleton
        from hydra.core.utils import filter_overrides
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
        from omegaconf import OmegaConf

        assert self.config is not None and len(job_overrides) > 0  # type: ignore[attr-defined]
        params = dict(self.params)  # type: ignore[attr-defined]
        executor = submitit.AutoExecutor(cluster="slurm", folder=params.pop("submitit_folder"),
                                         slurm_max_num_timeout=params.pop("max_num_timeout", 0))
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in shared else f"slurm_{k}": v for k, v in params.items()})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))  # type: ignore[attr-defined]
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:  # type: ignore[attr-defined]
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))  # type: ignore[attr-defined]
        log.info(f"Submitting {len(job_overrides)} job(s) to SLURM as one array; their logs: {sweep_dir}/.submitit/")
        nums = [initial_job_idx + i for i in range(len(job_overrides))]
        for num, overrides in zip(nums, job_overrides):
            log.info(f"\t#{num} : {' '.join(filter_overrides(overrides))}")
        state = Singleton.get_state()
        jobs = executor.map_array(self, [list(o) for o in job_overrides], ["hydra.sweep.dir"] * len(nums), nums,
                                  [f"job_id_for_{n}" for n in nums], [state] * len(nums))
        return [slurm_return(job, num, overrides) for job, num, overrides in zip(jobs, nums, job_overrides)]


# SLURM states of a job stopped from outside: it wrote no result (a job that raised wrote one first)
NO_RESULT_STATES = ("CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE")


def slurm_return(job: Any, num: int, overrides: Sequence[str]):
    """The job's JobReturn once it ended; one that left no result becomes FAILED with a one-line reason."""
    from hydra.core.utils import JobReturn, JobStatus
    from submitit.core.utils import FailedJobError, UncompletedJobError

    job.wait()
    if not job.paths.result_pickle.exists() and job.state.upper().startswith(NO_RESULT_STATES):
        job._results_timeout_s = 1  # not the 15 s submitit gives a slow shared disk: no result is coming
    try:
        return job.results()[0]
    except FailedJobError as exc:  # an exception outside our task function: its last line, not the traceback
        lines = [line for line in str(exc).splitlines() if line.strip() and not line.startswith("-" * 8)]
        last = next((line for line in reversed(lines) if not line.startswith(("You can check", "or at paths",
                                                                                "  - "))), "")
        reason = f"SLURM job {job.job_id} raised {last.strip()}"
    except UncompletedJobError:
        reason = (f"SLURM job {job.job_id} ended {job.state} without a result (scancel, a time limit, the node's "
                  "OOM killer or a lost node); finished generations are cached, re-run the sweep to resume")
    reason += f" (its log: {job.paths.stdout})"
    return JobReturn(overrides=list(overrides), _return_value=RuntimeError(reason), status=JobStatus.FAILED)
