"""One job: a model over its tasks. config -> tasks -> trace source -> traces -> statistics -> MLflow run.

plan.py decides what runs (config, engine, tasks), traces/source.py produces the traces,
stats/ measures them, tracking/run_format.py writes the run, console.py prints the outcome.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

import polars as pl
from omegaconf import DictConfig
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cogdistill.console import console, quiet_third_party
from cogdistill.engines import versions as engine_versions
from cogdistill.engines.protocols import protocol_name
from cogdistill.engines.weights import resolve_weights
from cogdistill.exits import is_interrupt
from cogdistill.job.console import print_plan, print_revision, print_summary, print_warnings
from cogdistill.job.plan import JobPlan, plan_job
from cogdistill.registry import RT_MEASURES
from cogdistill.stats import correlation as stats
from cogdistill.stats import reliability
from cogdistill.tasks.load import Task
from cogdistill.traces.source import TraceSource, open_source
from cogdistill.tracking import run_format
from cogdistill.tracking.job_figure import BackgroundFigures
from cogdistill.tracking.store import JobRun


def run_job(cfg: DictConfig) -> Dict[str, stats.Alignment]:
    quiet_third_party()
    plan = plan_job(cfg)
    job, model = plan.job, plan.job.model
    if plan.plan_only:
        print_plan(job, plan.tasks, plan.max_tokens)
        return {}
    weights = resolve_weights(model, plan.cache_root)
    label = plan.label
    print_revision(model, weights)
    tags = run_format.job_tags(model, plan.engine, [t.name for t in plan.tasks], job.study, label=label,
                               effort=job.effort.name, protocol=protocol_name(model),
                               floating_revision=weights.requested if weights.floating else None)
    run = JobRun(job, cfg, tags=tags, run_name=label, lock_dir=plan.cache_root / "locks")
    if run.already_finished:
        console.print(f"[green]{label}: already finished in this sweep (MLflow run {run.run_id}); skipped.[/]")
        return {}
    engine_version = engine_versions.cache_identity(plan.engine, plan.settings, model.hf_id)
    source: Optional[TraceSource] = None
    try:
        source = open_source(plan.engine, engine_version, job, weights, plan.settings, plan.max_tokens,
                             plan.cache_root, plan.effort, label)
        run.log_params(run_format.job_params(
            model=model, weights=weights.fingerprint, engine=plan.engine, engine_version=engine_version,
            revision_sha=weights.revision if weights.pinned_by else None,
            max_tokens=plan.max_tokens, cost=plan.cost, censored=job.analysis.censored,
            engine_settings=dataclasses.asdict(plan.settings), sampling=dataclasses.asdict(job.sampling),
            tasks=plan.tasks))
        # several tasks: each figure is drawn in a worker while the job goes on (one task: no worker to start)
        figures = BackgroundFigures() if run.enabled and len(plan.tasks) > 1 else None
        try:
            results, per_task, all_traces, ceilings = _run_tasks(plan, source, run, figures)
            if figures is not None:
                run.log_files(figures.files())
        finally:
            source.close()
            if figures is not None:
                figures.close()
        done = source.stats
        summary = run_format.summary_metrics(
            [a.r for a in results.values()],
            {t.name: per_task[t.name] for t in plan.tasks if t.config.difficulty.measure in RT_MEASURES},
            gen_seconds=done.generate_seconds, gen_tokens=done.generated_tokens,
            engine_load_seconds=done.load_seconds, cache_hits=done.cache_hits, cache_misses=done.cache_misses)
        run.log_metrics(summary)
        run.finish("FINISHED")
    except BaseException as exc:  # Ctrl-C and SIGTERM (cogdistill.exits) mark the run KILLED, errors FAILED
        run.abandon("KILLED" if is_interrupt(exc) else "FAILED")
        raise
    print_summary(label, plan.engine, results, summary, run, ceilings)
    every = pl.concat(all_traces, how="diagonal_relaxed") if all_traces else pl.DataFrame()
    print_warnings(label, every, plan.max_tokens)
    return results


def _run_tasks(plan: JobPlan, source: TraceSource, run: JobRun, figures: Optional[BackgroundFigures] = None):
    """Each task in turn: traces, per-item costs, alignment, noise ceiling; logged as it finishes."""
    analysis = plan.job.analysis
    results: Dict[str, stats.Alignment] = {}
    per_task: Dict[str, pl.DataFrame] = {}
    all_traces: List[pl.DataFrame] = []
    ceilings: Dict[str, dict] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        for task in plan.tasks:
            traces = source.traces(task, progress)
            if task.name in source.stats.imports:  # traces read from a harness log: what was matched, and how
                run.log_params({run_format.task_param(task.name, "import"): source.stats.imports[task.name]})
            per_item = stats.item_costs(traces, task.items, plan.cost, analysis.censored)
            al = stats.alignment(task.name, per_item, traces, plan.cost, n_boot=analysis.bootstrap, ci=analysis.ci,
                                 seed=analysis.seed, censored=analysis.censored)
            results[task.name], per_task[task.name] = al, per_item
            all_traces.append(traces)
            ceilings[task.name] = task_ceiling(task, traces, plan.cost, analysis.censored, al.r)
            # metrics, artifacts, the human items as a dataset input, the generations as MLflow traces
            run_format.log_task(run, plan.label, task, traces, per_item, al, plan.cost, ceilings[task.name], figures)
    return results, per_task, all_traces, ceilings


def task_ceiling(task: Task, traces: pl.DataFrame, cost: str, censored: str, r: float) -> dict:
    """Human split-half reliability (trials with participant ids), the cost's over samples (when
    there are >= 2 per item), the noise ceiling and r / ceiling, as the report computes them."""
    human = _human_split_half(task)
    used = stats.censoring_filter(traces, censored).select("item_id", "sample_idx", pl.col(cost).alias("cost"))
    return reliability.cell_ceiling(r, human, reliability.model_split_half(used))


_HUMAN: Dict[int, tuple] = {}  # id(trials) -> (trials, measure, result): a sweep's jobs share each task's human data


def _human_split_half(task: Task) -> dict:
    """The task's human split-half reliability (seeded: the same for every job), computed once per
    process for each loaded task (tasks.load shares a task between the jobs of a sweep)."""
    measure = task.config.difficulty.measure
    held = _HUMAN.get(id(task.trials))
    if held is None or held[0] is not task.trials or held[1] != measure:
        held = _HUMAN[id(task.trials)] = (task.trials, measure, reliability.human_split_half(task.trials, measure))
    return dict(held[2])
