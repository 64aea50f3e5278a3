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
  period), each of which marks its MLflow run KILLED, and starts no further job (a job is handed to
  the pool only when a slot is free); a job process dies with its parent (PR_SET_PDEATHSIG), even
  if the parent is killed with SIGKILL.
The plugin class Hydra finds is hydra_plugins/cogdistill_launcher/process_launcher.py.

`hydra/launcher=slurm` is hydra-submitit-launcher's SLURM launcher with the same boundaries kept
(SlurmLauncherImpl, mixed in by hydra_plugins/cogdistill_launcher/slurm_launcher.py):
- on the node, SIGTERM (scancel, a time limit, preemption) stops the job the cogdistill way (its
  run marked KILLED, one line, exit 143): submitit itself ignores SIGTERM, so the job ran on until
  SLURM's SIGKILL and left its run RUNNING;
- a job that ends without a result (cancelled, killed, its node lost) is one FAILED return with
  SLURM's state and its log's path, as a job process that died is here: submitit raises on the first
  such job, which lost every other job's outcome and stopped the sweep with a launcher error;
- SLURM's warning signal (USR2, `signal_delay_s` before the time limit, or preemption) requeues the job
  (submitit's checkpoint) and stops it the cogdistill way (run KILLED); the requeued job resumes it;
- each job asks for its model's resources, one array per resource class (cogdistill/sweep/slurm_sizing.py);
  a job larger than a node of the partition is a FAILED return naming the route, never submitted;
- SIGINT/SIGTERM of the launching command cancels (scancel) every array it submitted.
"""

import logging
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
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

    from cogdistill.config.yaml_bounds import install as bound_yaml
    from cogdistill.exits import die_with_parent, install_signal_handlers

    install_signal_handlers()
    die_with_parent()
    bound_yaml()  # this process may compose the job again: the same bound as the sweep's preflight
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
        workers = Workers(self.max_parallel)
        try:
            results = run_throttled(workers, payload, job_overrides, initial_job_idx, self.max_parallel)
        except BaseException:
            stop_workers(workers.pool)
            raise
        workers.pool.shutdown(wait=True)
        return results


class Workers:
    """The job processes' executor, replaced when a job process died (the OOM killer, SIGKILL): a
    broken ProcessPoolExecutor takes no more work, and the sweep's other jobs must still run."""

    def __init__(self, max_parallel: int) -> None:
        self.max_parallel = max_parallel
        self.pool = self._new()

    def _new(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.max_parallel, mp_context=mp.get_context("spawn"),
                                   max_tasks_per_child=1)

    def submit(self, *args: Any):
        from concurrent.futures.process import BrokenProcessPool

        try:
            return self.pool.submit(*args)
        except BrokenProcessPool:
            self.pool.shutdown(wait=True)
            self.pool = self._new()
            return self.pool.submit(*args)


def run_throttled(workers: Workers, payload: bytes, job_overrides: Sequence[Sequence[str]], first: int,
                  max_parallel: int) -> List[Any]:
    """Every job's JobReturn, a job handed to a process only when one of max_parallel slots is free.
    Submitted all at once, the next job already sat in the executor's call queue when Ctrl-C came: the
    process that took it (spawned as the stopped one exited) was in no list of processes to stop, and
    the sweep ran it to its end before exiting 130. A job stopped by a signal raises that signal's
    exception here (KeyboardInterrupt, Terminated), which stops the sweep: nothing more is submitted."""
    from concurrent.futures import FIRST_COMPLETED, wait

    results: List[Any] = [None] * len(job_overrides)
    todo = iter(range(len(job_overrides)))
    running = {}

    def submit_next() -> None:
        i = next(todo, None)
        if i is not None:
            running[workers.submit(_execute, payload, first + i, list(job_overrides[i]))] = i

    for _ in range(max_parallel):
        submit_next()
    while running:
        done, _ = wait(list(running), return_when=FIRST_COMPLETED)
        for future in done:
            i = running.pop(future)
            results[i] = _result(future, first + i, job_overrides[i])
            submit_next()
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

    deadline = time.monotonic() + (GRACE_S if grace_s is None else grace_s)
    stopped: set = set()
    while True:  # again until none is left: the pool may have spawned a process since the last look
        fresh = [p for p in list((getattr(pool, "_processes", None) or {}).values())
                 if p.pid not in stopped and p.is_alive()]
        if not fresh:
            break
        for proc in fresh:
            proc.terminate()
            stopped.add(proc.pid)
        for proc in fresh:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
    pool.shutdown(wait=True, cancel_futures=True)  # after the processes: its manager thread then ends at once


# ------------------------------------------------------------------ hydra/launcher=slurm (submitit)

@dataclass
class SlurmSizingConf:
    """hydra.launcher.sizing: how each job's resources follow from its model (cogdistill/sweep/slurm_sizing.py)."""
    auto: bool = True  # false: every job gets the flat gpus_per_node / cpus_per_task / mem_gb / timeout_min
    tokens_per_s: float = 1000.0  # generated tokens per second of one job (vLLM batching), for its time limit
    margin: float = 1.5  # the time limit is the token budget's time times this, rounded up to a class
    cpus_per_gpu: int = 8
    mem_per_weight_gb: float = 1.25  # host GB per GB of weights (they pass through host memory)
    min_timeout_min: int = 30
    max_timeout_min: int = 2880
    # engines whose jobs load no weights on their node: no GPUs, the flat cpus_per_task / mem_gb. Without
    # replay here, a replayed sweep asks for what its models' own engines would (rehearsing an allocation).
    weightless: List[str] = field(default_factory=lambda: ["replay", "openai", "dry"])


try:  # the SLURM preset's schema: hydra-submitit-launcher's, plus `sizing`
    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf as _SlurmQueueConf
except ImportError:  # not installed: hydra/launcher=slurm says what to install
    _SlurmQueueConf = None

if _SlurmQueueConf is not None:
    @dataclass
    class CogdistillSlurmConf(_SlurmQueueConf):  # type: ignore[misc, valid-type]
        sizing: SlurmSizingConf = field(default_factory=SlurmSizingConf)


class SlurmLauncherImpl:
    """Mixed into hydra-submitit-launcher's SlurmLauncher, before it (see the module doc)."""

    def __call__(self, sweep_overrides: List[str], job_dir_key: str, job_num: int, job_id: str,
                 singleton_state: Any):
        """Runs on the node, in submitit's job process (after submitit installed its signal handlers)."""
        import sys

        from cogdistill.exits import install_signal_handlers, interrupt_exit_code

        install_signal_handlers()
        _warning_requeues()
        try:
            ret = super().__call__(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)  # type: ignore[misc]
        except BaseException as exc:
            code = interrupt_exit_code(exc)
            if code is None:
                raise
            if code == 128 + WARNING_SIGNAL:
                print("SLURM's warning signal (time limit or preemption): the job is requeued and its MLflow run marked "
                      "KILLED; the requeued job resumes it from the generation cache.", flush=True)
            else:
                print(f"stopped by signal {code - 128}: the job's MLflow run is marked KILLED; finished generations "
                      "are cached; re-running the sweep resumes it.", flush=True)
            sys.exit(code)
        return plain_return(ret, job_num, sweep_overrides)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit calls this on the node when the job's warning signal comes (`--signal`, before its time
        limit or on preemption), then requeues it: the same job again, which resumes its MLflow run and
        its cached generations (hydra-submitit-launcher's own, kept by name: a requeue needs it)."""
        return super().checkpoint(*args, **kwargs)  # type: ignore[misc]

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
        """hydra-submitit-launcher 1.2.0's BaseSubmititLauncher.launch, but each job sized for its model
        and one array submitted per resource class (cogdistill/sweep/slurm_sizing.py), every job's outcome
        collected (slurm_return) instead of raising on the first job that left no result, and every
        array cancelled (scancel) when the launching command gets SIGINT/SIGTERM."""
        import os

        import submitit
        from hydra.core.singleton import Singleton
        from hydra.core.utils import filter_overrides
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
        from omegaconf import OmegaConf

        assert self.config is not None and len(job_overrides) > 0  # type: ignore[attr-defined]
        params = dict(self.params)  # type: ignore[attr-defined]
        sizing = OmegaConf.create(params.pop("sizing", None) or {})
        executor = submitit.AutoExecutor(cluster="slurm", folder=params.pop("submitit_folder"),
                                         slurm_max_num_timeout=params.pop("max_num_timeout", 0))
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in shared else f"slurm_{k}": v for k, v in params.items()})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))  # type: ignore[attr-defined]
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:  # type: ignore[attr-defined]
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))  # type: ignore[attr-defined]
        nums = [initial_job_idx + i for i in range(len(job_overrides))]
        sizes, refused = self._sizes(job_overrides, params, sizing)
        results: List[Any] = [None] * len(nums)
        for i, reason in refused.items():
            log.warning(f"\t#{nums[i]} : {reason}")
            results[i] = refused_return(reason, job_overrides[i])
        state = Singleton.get_state()
        submitted: List[Any] = []
        try:
            for size, members in _classes(sizes, refused).items():
                if size is not None:
                    executor.update_parameters(**size.sbatch())
                log.info(f"Submitting {len(members)} job(s) to SLURM as one array"
                         f"{f' of {size}' if size is not None else ''}; their logs: {sweep_dir}/.submitit/")
                for i in members:
                    log.info(f"\t#{nums[i]} : {' '.join(filter_overrides(job_overrides[i]))}")
                jobs = executor.map_array(self, [list(job_overrides[i]) for i in members],
                                          ["hydra.sweep.dir"] * len(members), [nums[i] for i in members],
                                          [f"job_id_for_{nums[i]}" for i in members], [state] * len(members))
                submitted += list(zip(members, jobs))
            for i, job in submitted:
                results[i] = slurm_return(job, nums[i], job_overrides[i])
        except BaseException:
            cancel([job for _, job in submitted])
            raise
        return results

    def _sizes(self, job_overrides: Sequence[Sequence[str]], params: dict, sizing: Any):
        """Each job's JobSize (None for all when sizing.auto is off: the flat settings for every job) and
        {position: reason} for the jobs that fit no node of the partition."""
        from omegaconf import open_dict

        from cogdistill.sweep.slurm_sizing import node_shape, size_jobs, too_large

        if not sizing.get("auto", True):
            return [None] * len(job_overrides), {}
        configs = []
        for overrides in job_overrides:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))  # type: ignore
            with open_dict(cfg):
                del cfg["hydra"]
            configs.append(cfg)
        sized = size_jobs(configs, sizing, params)
        node = node_shape(params.get("partition"))
        refused = {}
        for i, (model, size) in enumerate(sized):
            reason = too_large(model, size, node, params.get("partition"))
            if reason:
                refused[i] = reason
        return [size for _, size in sized], refused


def _classes(sizes: Sequence[Any], refused: dict) -> dict:
    """Job positions by resource class (None: the flat settings), refused jobs left out."""
    out: dict = {}
    for i, size in enumerate(sizes):
        if i not in refused:
            out.setdefault(size, []).append(i)
    return out


def refused_return(reason: str, overrides: Sequence[str]):
    """A job that was not submitted, as a job that failed on bad input (the sweep names it, exit 2)."""
    from hydra.core.utils import JobReturn, JobStatus

    return JobReturn(overrides=list(overrides), _return_value={"status": "FAILED", "error": reason, "bad_input": True},
                     status=JobStatus.COMPLETED)


def cancel(jobs: Sequence[Any]) -> None:
    """scancel every array these jobs belong to; never raises over the interrupt that called it."""
    import subprocess

    arrays = sorted({str(job.job_id).split("_")[0] for job in jobs})
    if not arrays:
        return
    try:
        subprocess.run(["scancel", *arrays], capture_output=True, timeout=60)
        log.warning(f"cancelled SLURM array(s) {', '.join(arrays)}")
    except BaseException as exc:  # noqa: BLE001 - a second signal or a missing scancel: the arrays are named
        log.error(f"could not cancel SLURM array(s) {', '.join(arrays)} ({type(exc).__name__}): scancel them")


WARNING_SIGNAL = 12  # SIGUSR2: submitit's `--signal`, before a time limit or on preemption


def _warning_requeues() -> None:
    """On the node: submitit's SIGUSR2 handler requeues the job (scontrol requeue) and exits with SystemExit,
    which our job would take for a failure (run FAILED). Here that exit is a signal's (Terminated: run
    KILLED, resumed by the requeued job); a warning submitit does not requeue (max_num_timeout reached)
    lets the job run on until SLURM's SIGTERM (exit 143, run KILLED, the sweep names it)."""
    import signal

    from cogdistill import exits
    from cogdistill.exits import Terminated

    submitits = signal.getsignal(signal.SIGUSR2)
    if not callable(submitits):
        return

    def warned(signum, frame) -> None:
        try:
            submitits(signum, frame)
        except SystemExit:
            exits._stopping = True  # as for SIGTERM: the requeue's own SIGTERM must not cut the clean-up short
            raise Terminated(signum) from None
        except Exception as exc:  # noqa: BLE001 - submitit's "not requeued": the time limit's SIGTERM follows
            log.warning(f"SLURM's warning signal: not requeued ({exc}); the job runs until its time limit")

    signal.signal(signal.SIGUSR2, warned)


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
                  "OOM killer or a lost node); finished generations are cached, re-run the sweep to resume"
                  f" (its log: {job.paths.stdout})")
        # stopped from outside, not a bug and not bad input: the sweep exits 143 (cogdistill/sweep/sweeper.py)
        return JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED,
                         _return_value={"status": "FAILED", "error": reason, "bad_input": False, "stopped": True})
    reason += f" (its log: {job.paths.stdout})"
    return JobReturn(overrides=list(overrides), _return_value=RuntimeError(reason), status=JobStatus.FAILED)
