"""A sweep from start to end: check every job, open the parent MLflow run, run the jobs, close it.

cogdistill's Hydra sweeper (`hydra/sweeper=cogdistill`, the default in conf/config.yaml) is
Hydra's basic sweeper with four promises added:
1. every job is composed and validated before the first starts (cogdistill.sweep.preflight);
2. one job's failure never stops the others: each job reports FINISHED or FAILED with its reason;
3. the parent run ends FINISHED (all jobs finished), FAILED (with the failed jobs listed on it,
   as failed_jobs.csv) or KILLED (SIGINT/SIGTERM), never RUNNING;
4. the command's exit code says how the sweep went: 0, 2 (a job had bad input), 143 (a job was stopped from
   outside, by scancel, a time limit or a lost node: re-run to resume), 1 (a bug).
The parent run is created here, once, before any job starts (several processes creating one
experiment in sqlite race) and its id is left in the sweep folder, where each job reads it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from cogdistill.errors import CogdistillError

FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"


@dataclass
class JobOutcome:
    num: int
    overrides: str
    status: str  # FINISHED | FAILED
    error: str = ""
    bad_input: bool = True  # a CogdistillError (exit 2) rather than a bug (exit 1)
    stopped: bool = False  # stopped from outside (scancel, a time limit): exit 143 unless a job had a bug


@dataclass
class SweepResult:
    outcomes: List[JobOutcome] = field(default_factory=list)

    @property
    def failed(self) -> List[JobOutcome]:
        return [o for o in self.outcomes if o.status != FINISHED]

    def exit_code(self) -> int:
        if not self.failed:
            return 0
        if any(not o.bad_input and not o.stopped for o in self.failed):
            return 1
        return 143 if any(o.stopped for o in self.failed) else 2


LAST_RESULT: Optional[SweepResult] = None  # read by __main__ for the exit code
# A single job's error, handed to __main__ past Hydra: raised inside Hydra's job runner, it would
# first print "Error executing job with overrides: [...]", a second line before our one message.
PENDING_ERROR: Optional[BaseException] = None


# ------------------------------------------------------------------ the job side

def run_task(cfg: DictConfig) -> Dict[str, Any]:
    """Hydra's task function. A single run raises (the command maps errors to exit codes); inside a
    sweep, a failing job prints its one line and returns FAILED so that the other jobs still run."""
    from cogdistill.job.run import run_job

    global PENDING_ERROR
    if not _in_multirun():
        try:
            run_job(cfg)
        except Exception as exc:  # noqa: BLE001 - raised again by __main__, after Hydra returns (see PENDING_ERROR)
            PENDING_ERROR = exc
            return {"status": FAILED}
        return {"status": FINISHED}
    from rich.markup import escape

    from cogdistill.console import console
    from cogdistill.exits import debug, disk_problem

    try:
        run_job(cfg)
        return {"status": FINISHED}
    except CogdistillError as exc:
        message, bad_input = str(exc), True
    except Exception as exc:  # noqa: BLE001 - one job's bug must not stop the sweep's other jobs
        if debug():
            import traceback

            traceback.print_exc()
        problem = disk_problem(exc)
        message, bad_input = problem or f"internal error: {type(exc).__name__}: {exc}", problem is not None
    console.print(f"[bold red]job failed:[/] {escape(message)}", soft_wrap=True)
    return {"status": FAILED, "error": message, "bad_input": bad_input}


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def outcome_of(job_return: Any, num: int, overrides: Sequence[str]) -> JobOutcome:
    """What a launcher handed back: our task function's dict, or Hydra's record of an exception."""
    shown = " ".join(overrides)
    status = getattr(getattr(job_return, "status", None), "name", "FAILED")
    value = getattr(job_return, "_return_value", None)
    if status == "COMPLETED" and isinstance(value, dict):
        return JobOutcome(num, shown, value.get("status", FINISHED), value.get("error", ""),
                          bool(value.get("bad_input", True)), bool(value.get("stopped", False)))
    if status == "COMPLETED":
        return JobOutcome(num, shown, FINISHED)
    return JobOutcome(num, shown, FAILED, f"{type(value).__name__}: {value}", bad_input=False)


# ------------------------------------------------------------------ the parent run

class SweepParent:
    """The sweep's parent MLflow run; None-safe when tracking is off or the sweep is a plan."""

    def __init__(self, config: DictConfig):
        from cogdistill.tracking.store import PARENT_FILE

        self.config = config
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        self.marker = self.sweep_dir / PARENT_FILE
        self.info: Optional[Dict[str, str]] = None
        self._client = None

    def start(self) -> None:
        from cogdistill.tracking.run_format import Tag, sweep_tags
        from cogdistill.tracking.leases import Lease
        from cogdistill.tracking.store import (
            _client,
            _find_runs,
            artifact_root,
            ensure_experiment,
            experiment_name,
            shown_uri,
        )

        tracking = OmegaConf.to_object(self.config.tracking)
        if not tracking.enabled or self.config.engine.name == "dry":  # a plan logs nothing
            return
        client, uri = _client(tracking)
        exp_id = ensure_experiment(client, experiment_name(tracking, self.config.study), artifact_root(tracking, uri))
        overrides = sorted(self.config.hydra.overrides.task)
        key = hashlib.sha256(json.dumps([str(self.config.study), overrides]).encode()).hexdigest()[:20]
        # The same sweep command after a kill resumes its unfinished parent, unless that sweep is still running.
        unfinished = [r for r in _find_runs(client, exp_id, [f"tags.`{Tag.SWEEP_KEY}` = '{key}'",
                                                            "attributes.status != 'FINISHED'"])
                      if not Lease.is_live(r)]
        if unfinished:
            run_id = unfinished[0].info.run_id
            client.update_run(run_id, status="RUNNING")
        else:
            run_id = client.create_run(exp_id, run_name=f"sweep {self.sweep_dir.name}",
                                       tags=sweep_tags(key, str(self.config.study), overrides)).info.run_id
        self.lease = Lease(client, run_id)
        self.lease.start()
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        self.info = {"run_id": run_id, "experiment_id": exp_id, "tracking_uri": uri}
        tmp = tempfile.NamedTemporaryFile("w", dir=self.sweep_dir, delete=False, suffix=".tmp")
        # the file is for the jobs (run and experiment ids) and for people: the store's password stays out
        json.dump({**self.info, "tracking_uri": shown_uri(uri)}, tmp)
        tmp.close()
        os.replace(tmp.name, self.marker)
        self._client = client

    def log_skipped(self, skipped: List[Any]) -> None:
        """The jobs sweep.skip_infeasible left out, with their reasons (skipped_jobs.csv, a tag)."""
        if self.info is None or not skipped:
            return
        from cogdistill.tracking.run_format import SKIPPED_JOBS, Tag

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / SKIPPED_JOBS
            with path.open("w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["job", "overrides", "model", "reason"])
                for fit in skipped:
                    writer.writerow([fit.num, fit.shown, fit.model, "; ".join(fit.problems)])
            self._client.log_artifact(self.info["run_id"], str(path))
        self._client.set_tag(self.info["run_id"], Tag.SKIPPED_JOBS, str(len(skipped)))

    def end(self, result: SweepResult) -> None:
        if self.info is None:
            return
        from cogdistill.tracking.sweep_table import log_sweep_summary

        client, run_id = self._client, self.info["run_id"]
        table = log_sweep_summary(client, self.info["experiment_id"], run_id)
        if result.failed:
            log_failed_jobs(client, run_id, result.failed)
        if table.height and self.config.analysis.report:
            sweep_report(client, self.info, self.sweep_dir / "report", self.config.analysis)
        self.lease.stop()
        client.set_terminated(run_id, status=FAILED if result.failed else FINISHED)
        self.info = None  # ended: abandon() leaves it alone

    def abandon(self, status: str) -> None:
        """End the parent run with status after a signal or a failure; never raises over the original."""
        if self.info is None:
            return
        import logging

        from cogdistill.exits import is_interrupt, signals_deferred

        self.lease.stop()
        try:
            with signals_deferred():  # a second Ctrl-C must not leave the parent RUNNING
                try:
                    self._client.set_terminated(self.info["run_id"], status=status)
                except Exception:  # noqa: BLE001 - the store may be what failed
                    logging.getLogger(__name__).warning("could not mark the sweep's parent run %s", status)
        except BaseException as exc:
            if not is_interrupt(exc):
                raise
        self.info = None


def log_failed_jobs(client, run_id: str, failed: List[JobOutcome]) -> None:
    from cogdistill.tracking.run_format import FAILED_JOBS, Tag

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / FAILED_JOBS
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["job", "overrides", "error"])
            for o in failed:
                writer.writerow([o.num, o.overrides, o.error])
        client.log_artifact(run_id, str(path))
    client.set_tag(run_id, Tag.FAILED_JOBS, str(len(failed)))


def print_failures(result: SweepResult) -> None:
    from rich.markup import escape

    from cogdistill.console import console

    if not result.failed:
        return
    console.print(f"[bold red]{len(result.failed)} of {len(result.outcomes)} job(s) failed[/] "
                  "(the others finished and are kept; re-running the sweep runs only these):")
    for o in result.failed:
        console.print(f"  #{o.num} ({escape(o.overrides)}): {escape(o.error)}", soft_wrap=True)


def sweep_report(client, parent: Dict[str, str], out: Path, analysis) -> None:
    """The comparison report over the sweep's jobs, on the parent run. A failure here costs no
    finished job: it is reported with the command that rebuilds the report."""
    from rich.markup import escape

    from cogdistill.console import console
    from cogdistill.report import log_report, write_report
    from cogdistill.report.render import print_report
    from cogdistill.report.study import from_mlflow

    experiment = client.get_experiment(parent["experiment_id"]).name
    try:
        with console.status("Building the comparison report..."):
            study = from_mlflow(parent["tracking_uri"], experiment, parent["run_id"])
            report, _ = write_report(study, out, n_boot=analysis.bootstrap, seed=analysis.seed,
                                     censored=analysis.get("censored", "drop"))
        print_report(report, console)
        log_report(client, parent["run_id"], out, report)
        console.print(f"report: {out}/report.md (also under report/ on MLflow run {parent['run_id']})")
    except Exception as exc:  # noqa: BLE001 - the jobs' results are safe in MLflow whatever fails here
        console.print(f"[bold red]The comparison report failed:[/] {escape(f'{type(exc).__name__}: {exc}')}\n"
                      f"Rebuild it with: python -m cogdistill.report --experiment '{experiment}' "
                      f"--parent {parent['run_id']} --log", soft_wrap=True)


# ------------------------------------------------------------------ the sweeper

@dataclass
class CogdistillSweeperConf:
    _target_: str = "hydra_plugins.cogdistill_launcher.sweeper.CogdistillSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None


class LauncherError(CogdistillError):
    """The launcher could not start jobs on this machine (e.g. hydra/launcher=slurm without SLURM)."""


def launch(sweeper: Any, batch: Sequence[Sequence[str]], first: int) -> Sequence[Any]:
    """The launcher's returns for one batch. A launcher that fails by itself (not a job: jobs report
    through their returns) is the environment's fault, said in one line with the way out."""
    from cogdistill.exits import is_interrupt

    try:
        return sweeper.launcher.launch(batch, initial_job_idx=first)
    except BaseException as exc:
        if is_interrupt(exc) or isinstance(exc, CogdistillError):
            raise
        name = type(sweeper.launcher).__name__
        raise LauncherError(f"the sweep's launcher ({name}, hydra/launcher=...) cannot start jobs here: "
                            f"{type(exc).__name__}: {exc}. Use hydra/launcher=local to run the jobs on this machine, "
                            "or start the sweep where that launcher works (a SLURM login node).") from None


def varying(jobs: List[List[str]]) -> List[List[str]]:
    """Each job's overrides without those every job shares: what tells the jobs apart."""
    if len(jobs) < 2:
        return jobs
    common = set(jobs[0]).intersection(*map(set, jobs[1:]))
    return [[o for o in job if o not in common] for job in jobs]


class ComposedOnce:
    """The sweep's config loader, keeping each job's composed config: the preflight composes every
    job and the launcher would compose it again (a few tenths of a second per job). Each caller
    gets its own copy: the launcher writes hydra.job.num into it, the preflight deletes `hydra`."""

    def __init__(self, loader: Any):
        self._loader = loader
        self._composed: Dict[Any, Any] = {}

    @classmethod
    def wrap(cls, loader: Any) -> Any:
        return loader if isinstance(loader, cls) else cls(loader)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_loader", "_composed"):  # unpickling (hydra/launcher=local)
            raise AttributeError(name)
        return getattr(self._loader, name)

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: List[str]) -> DictConfig:
        import copy

        key = (id(master_config), tuple(sweep_overrides))
        if key not in self._composed:
            self._composed[key] = (master_config, self._loader.load_sweep_config(master_config, list(sweep_overrides)))
        return copy.deepcopy(self._composed[key][1])


def drop_infeasible(sweeper: Any, jobs: List[List[str]], validated: Dict[int, Any]) -> List[Any]:
    """The pre-flight's feasibility check (cogdistill.sweep.preflight.check_feasibility): the table, then
    exit 2 before anything runs, or (sweep.skip_infeasible=true) the jobs that can run, renumbered,
    in the sweeper's batches and in `jobs`. Returns the skipped jobs (preflight.Fit)."""
    from cogdistill.console import console
    from cogdistill.sweep.preflight import InfeasibleSweepError, check_feasibility, infeasible_message, print_fits
    from cogdistill.registry import ENGINES

    if not any(ENGINES.spec(j.engine.name).source == "generate" if j.engine.name in ENGINES else True
               for j in validated.values()):
        return []  # replay and plan sweeps load no model: nothing to check
    with console.status("Checking where each job's weights are, and its memory and GPUs..."):
        fits = check_feasibility(validated, varying(jobs), sweeper.config.hydra.get("launcher"))
    print_fits(fits)
    bad = [f for f in fits if not f.ok]
    if not bad:
        return []
    skip = bool(OmegaConf.select(sweeper.config, "sweep.skip_infeasible", default=False))
    if not skip or len(bad) == len(fits):
        raise InfeasibleSweepError(infeasible_message(fits))
    from rich.markup import escape

    console.print(f"[yellow]{escape(infeasible_message(fits, skipping=True))}[/]", soft_wrap=True)
    dropped = {f.num for f in bad}
    jobs[:] = [job for idx, job in enumerate(jobs) if idx not in dropped]
    size = sweeper.max_batch_size or len(jobs)
    sweeper.overrides = [jobs[i:i + size] for i in range(0, len(jobs), size)]
    sweeper.batch_index = 0
    return bad


def sweep(sweeper: Any, arguments: List[str]) -> SweepResult:
    """The body of CogdistillSweeper.sweep (a BasicSweeper): see the module docstring."""
    global LAST_RESULT
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from cogdistill.console import console
    from cogdistill.sweep.preflight import check_jobs, raise_for_problems

    loader = sweeper.hydra_context.config_loader = ComposedOnce.wrap(sweeper.hydra_context.config_loader)
    params = sweeper._parse_config() + list(arguments)
    sweeper.overrides = sweeper.split_arguments(OverridesParser.create(config_loader=loader).parse_overrides(params),
                                                sweeper.max_batch_size)
    jobs = [list(job) for batch in sweeper.overrides for job in batch]
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(sweeper.config)  # validate() finds hydra.searchpath folders through it
    validated: Dict[int, Any] = {}
    with console.status(f"Checking the {len(jobs)} job(s) of this sweep..."):
        raise_for_problems(check_jobs(loader, sweeper.config, jobs, varying(jobs), keep=validated), len(jobs))
    skipped = drop_infeasible(sweeper, jobs, validated)
    sweep_dir = Path(str(sweeper.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(sweeper.config, sweep_dir / "multirun.yaml")
    shown = varying(jobs)
    parent = SweepParent(sweeper.config)
    parent.start()
    parent.log_skipped(skipped)
    result = LAST_RESULT = SweepResult()
    try:
        first = 0
        while not sweeper.is_done():
            batch = sweeper.get_job_batch()
            returns = launch(sweeper, batch, first)
            result.outcomes += [outcome_of(r, first + i, shown[first + i]) for i, r in enumerate(returns)]
            first += len(batch)
        print_failures(result)
        parent.end(result)
    except BaseException as exc:  # a signal (KILLED), or the launcher or the summary failed (FAILED)
        from cogdistill.exits import is_interrupt

        parent.abandon(KILLED if is_interrupt(exc) else FAILED)
        raise
    return result
