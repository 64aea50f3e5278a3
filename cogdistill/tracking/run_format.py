"""What a cogdistill MLflow run holds: the one owner of its tag, param, metric and artifact names.

Three kinds of run (tag `cogdistill.kind`): a job (one model over its tasks), a sweep's parent and
a training run. Writers build what a run gets here; readers find it here. No other module spells
a name; docs/run-format.md describes the format for users.

Versions (tag `cogdistill.run_format`; a run without it is version 1):
  1  everything logged before this module: the names below, no version tag.
  2  the version tag on every run; a job run adds each task's human item table as an MLflow dataset
     input (context `human_items`) and, with tracking.log_traces, one MLflow trace per generation.
Later additions within version 2 (optional, absent on older runs): the job param revision_sha, the tags
floating_revision and (sweep parent) cogdistill.skipped_jobs with skipped_jobs.csv.
Version 2 renamed nothing, so readers take versions 1 and 2 alike; a run of a newer version than
this code knows is refused with a message (its layout may have changed) instead of misread.

This module imports no MLflow at import time: readers and writers take a client or a run object.
"""

from __future__ import annotations

import hashlib
import os
import socket
from typing import Any, Dict, Iterable, List, Mapping, Optional

from cogdistill.errors import CogdistillError

RUN_FORMAT = 2


class Tag:
    """Run tag names. Job and training runs share the model/task names (one column in the UI)."""

    FORMAT = "cogdistill.run_format"
    KIND = "cogdistill.kind"  # one of Kind
    PARENT = "mlflow.parentRunId"  # MLflow's own: a sweep's job -> its parent run
    # what a job ran (also the MLflow UI's columns)
    MODEL = "model"  # the model's label: its config name, `<config>:<effort>` under an effort level
    CONFIG = "config"  # the model config's name
    EFFORT = "effort"  # default | none | low | medium | high | budget=<N>
    PROTOCOL = "protocol"  # the reasoning protocol (cogdistill.engines.protocols)
    ROLE = "role"
    FAMILY = "family"
    TEACHER = "teacher"
    BASE = "base"
    ENGINE = "engine"
    TASK = "task"  # comma-separated when a job runs several tasks
    STUDY = "study"
    HF_ID = "hf_id"
    # a job whose model file names a branch or tag (revision: main): that name; the commit it stood
    # for is the param revision_sha. Absent when the file pins a commit sha.
    FLOATING_REVISION = "floating_revision"
    TRAINED_BY = "trained_by"  # a trained model's evaluation runs -> the training run's id
    # who runs it, and its identity for resuming (cogdistill/tracking/store.py)
    HOST = "cogdistill.host"
    PID = "cogdistill.pid"
    OWNER = "cogdistill.owner"  # host:pid:process start time, while RUNNING
    HEARTBEAT = "cogdistill.heartbeat"  # unix seconds, refreshed while RUNNING
    JOB_KEY = "cogdistill.job_key"
    # the sweep's parent run
    SWEEP_KEY = "cogdistill.sweep_key"
    OVERRIDES = "overrides"
    FAILED_JOBS = "cogdistill.failed_jobs"  # how many jobs failed (failed_jobs.csv says which)
    SKIPPED_JOBS = "cogdistill.skipped_jobs"  # how many jobs sweep.skip_infeasible left out (skipped_jobs.csv)
    # training runs
    MODE = "mode"  # sft | rl
    TRAINED_PATH = "trained_path"
    REGISTERED_CONFIG = "registered_config"


class Kind:
    JOB = "job"
    SWEEP = "sweep"
    TRAIN = "train"


# Per-task metrics of a job run, logged as `<name>/<task>` (docs/run-format.md).
# Alignment statistics (cogdistill.stats.correlation.Alignment), by metric name -> its field:
ALIGNMENT_METRICS = {
    "r": "r", "p": "p", "rho": "rho", "r_ci_low": "r_ci_low", "r_ci_high": "r_ci_high", "acc": "accuracy",
    "tokens_mean": "tokens_mean", "n_items": "n_items", "censored_items": "censored_items",
    "censored_traces": "censored_traces", "dropped_items": "n_items_dropped", "bf10": "bf10", "r_budget": "r_budget",
}
TRACE_COUNT_METRICS = ("token_count_mismatch", "overlong_traces")  # counted over the task's traces
CEILING_METRICS = ("human_reliability", "cost_reliability", "noise_ceiling", "r_normalised")  # stats.reliability
TASK_METRICS = (*ALIGNMENT_METRICS, *TRACE_COUNT_METRICS, *CEILING_METRICS)
# n_items is logged for every finished task (r may be undefined and left out): it lists a run's tasks
TASK_MARKER = "n_items"
# Job-level metrics (no task suffix)
SUMMARY_METRICS = ("r_mean", "r_mean_fisher", "r_cross_task", "gen_seconds", "gen_tokens", "gen_tokens_per_s",
                   "engine_load_seconds", "cache_hits", "cache_misses")
# Params a reader needs (the rest are for people: hf_id, revision, engine.*, sampling.*, ...)
PARAM_COST = "cost"  # the trace column that is the cost: reasoning_tokens | total_tokens
PARAM_REVISION_SHA = "revision_sha"  # the commit a hub model's revision resolved to; "" when none was found

# Artifact folders and files
TRACES_DIR, ITEMS_DIR, HUMANS_DIR, FIGURES_DIR, CONFIG_DIR = "traces", "items", "humans", "figures", "config"
CONFIG_FILE = f"{CONFIG_DIR}/config.yaml"  # the resolved Hydra config
SWEEP_SUMMARY = "sweep_summary.csv"  # parent run: the model x task table: model, role, family, task,
SWEEP_SUMMARY_METRICS = ("r", "r_ci_low", "r_ci_high", "acc", "tokens_mean")  # these task metrics, status
FAILED_JOBS = "failed_jobs.csv"  # parent run: job, overrides, error
SKIPPED_JOBS = "skipped_jobs.csv"  # parent run: job, overrides, model, reason (could not run on that node)
REPORT_DIR = "report"  # parent run: the comparison report's files; its metrics are `report/...`
TRAIN_DATASET_DIR, ADAPTER_DIR = "dataset", "adapter"  # training run
# MLflow dataset-input contexts (mlflow.data.context)
ITEMS_CONTEXT, TRAINING_CONTEXT = "human_items", "training"


class RunFormatError(CogdistillError):
    """A run this version of cogdistill cannot read."""


# ------------------------------------------------------------------ names

def task_metric(name: str, task: str) -> str:
    return f"{name}/{task}"


def sweep_metric(model: str, task: str) -> str:
    """The parent run's r per job and task."""
    return f"r/{model}/{task}"


def train_metric(name: str) -> str:
    """A trainer's logged number (loss, grad_norm, learning_rate, reward...) at each step."""
    return f"train/{name}"


TRAIN_SECONDS = "train_seconds"


def task_param(task: str, what: str) -> str:
    """`task.<task>.n_items`, `task.<task>.difficulty` (the human measure) and, for traces read from a
    harness log, `task.<task>.import` (its one-line summary: the log, matched items, cost sources)."""
    return f"task.{task}.{what}"


def trace_file(task: str) -> str:
    return f"{TRACES_DIR}/{task}.parquet"


def items_file(task: str, ext: str = "parquet") -> str:
    return f"{ITEMS_DIR}/{task}_items.{ext}"


def trials_file(task: str) -> str:
    return f"{HUMANS_DIR}/{task}_trials.parquet"


def figure_file(task: str) -> str:
    return f"{FIGURES_DIR}/{task}_scatter.png"


def kind_tags(kind: str) -> Dict[str, str]:
    """What every run cogdistill creates carries: its kind and the format version."""
    return {Tag.KIND: kind, Tag.FORMAT: str(RUN_FORMAT)}


# ------------------------------------------------------------------ job runs: writers

def model_label(model_name: str, effort: str) -> str:
    """A model's name in a job: its config name, with `:<effort>` under an effort level (`=` as `-`:
    MLflow metric names, which carry it, allow neither `@` nor `=`), so the
    levels of one model are distinct models to every table, run name and report."""
    return model_name if effort == "default" else f"{model_name}:{effort.replace('=', '-')}"


def job_tags(model, engine: str, tasks: Iterable[str], study: str, *, label: Optional[str] = None,
             effort: str = "default", protocol: str = "", floating_revision: Optional[str] = None) -> Dict[str, str]:
    """model: a ModelConfig; label: the model's name in this job (model_label)."""
    tags = {
        Tag.MODEL: label or model.name, Tag.CONFIG: model.name, Tag.EFFORT: effort, Tag.PROTOCOL: protocol,
        Tag.ROLE: model.role.value, Tag.FAMILY: model.family,
        Tag.TEACHER: model.teacher or "", Tag.BASE: model.base or "", Tag.ENGINE: engine,
        Tag.TASK: ",".join(tasks), Tag.STUDY: study, Tag.HF_ID: model.hf_id,
        Tag.HOST: socket.gethostname(), Tag.PID: str(os.getpid()), **kind_tags(Kind.JOB),
    }
    if floating_revision:
        tags[Tag.FLOATING_REVISION] = floating_revision
    if model.training_run:  # a model trained by cogdistill.train: link back to its training run
        tags[Tag.TRAINED_BY] = model.training_run
    return tags


def job_params(*, model, weights: str, engine: str, engine_version: str, max_tokens: int, cost: str,
               censored: str, engine_settings: Mapping[str, Any], sampling: Mapping[str, Any],
               tasks: Iterable, revision_sha: Optional[str] = None) -> Dict[str, Any]:
    """model: a ModelConfig; tasks: loaded Tasks; engine_settings/sampling: their dataclasses as dicts;
    revision_sha: the commit the model's hub revision resolved to (None: not a hub model, or unresolved)."""
    tasks = list(tasks)
    return {
        "hf_id": model.hf_id, "revision": model.revision, PARAM_REVISION_SHA: revision_sha or "",
        "weights": weights, "engine": engine,
        "engine_version": engine_version, "max_tokens": max_tokens, PARAM_COST: cost, "analysis.censored": censored,
        **{f"engine.{k}": v for k, v in engine_settings.items()},
        **{f"sampling.{k}": v for k, v in sampling.items()},
        **{task_param(t.name, "n_items"): t.items.height for t in tasks},
        **{task_param(t.name, "difficulty"): t.config.difficulty.measure for t in tasks},
    }


def task_metrics(task: str, alignment, traces, ceiling: Mapping[str, Any]) -> Dict[str, float]:
    """One task's metrics: alignment (a stats Alignment), counts over its traces (a TRACE_SCHEMA
    frame), the noise ceiling (stats.reliability.cell_ceiling). NaN values are dropped by the writer."""
    values: Dict[str, Any] = {name: getattr(alignment, field) for name, field in ALIGNMENT_METRICS.items()}
    values["token_count_mismatch"] = int(traces["token_count_mismatch"].fill_null(False).sum())
    values["overlong_traces"] = int((traces["finish_reason"] == "overlong").sum())
    values.update({k: ceiling[k] for k in CEILING_METRICS if k in ceiling})
    return {task_metric(name, task): value for name, value in values.items()}


def summary_metrics(rs: List[float], rt_items: Mapping[str, Any], *, gen_seconds: float, gen_tokens: int,
                    engine_load_seconds: float, cache_hits: int, cache_misses: int) -> Dict[str, float]:
    """The job's own metrics. rs: each task's r; rt_items: {task: per-item frame} of the tasks
    measured by RT (their costs are compared across tasks)."""
    from cogdistill.stats import correlation as stats

    return {
        "r_mean": stats.plain_mean(rs), "r_mean_fisher": stats.fisher_mean(rs),
        "r_cross_task": stats.cross_task_r(dict(rt_items)), "gen_seconds": gen_seconds, "gen_tokens": gen_tokens,
        "gen_tokens_per_s": gen_tokens / gen_seconds if gen_seconds else float("nan"),
        "engine_load_seconds": engine_load_seconds, "cache_hits": cache_hits, "cache_misses": cache_misses,
    }


def items_digest(items) -> str:
    """A digest of a task's item table (content, not polars' version-dependent row hashes)."""
    return hashlib.sha256(items.write_csv().encode()).hexdigest()[:16]


def log_task(run, model: str, task, traces, per_item, alignment, cost: str, ceiling: Mapping[str, Any],
             figures=None) -> None:
    """Everything one task leaves on a job run (run: a store.JobRun; a no-op without tracking).
    figures: a job_figure.BackgroundFigures that draws the figure, which the job logs when it ends."""
    run.log_metrics(task_metrics(task.name, alignment, traces, ceiling))
    if run.enabled:
        log_task_artifacts(run, model, task, traces, per_item, alignment, cost, figures)
        log_items_input(run, task)
        if run.log_traces:
            from cogdistill.tracking.mlflow_traces import log_generations

            log_generations(run.client, run.tracing_client(), run.experiment_id, run.run_id, traces)


def log_task_artifacts(run, model: str, task, traces, per_item, alignment, cost: str, figures=None) -> None:
    """traces/, items/ (parquet and csv), humans/ (trial-level data, when the task has it) and the
    figure (when it has human difficulties) of one task."""
    import tempfile
    from pathlib import Path

    from cogdistill.tracking.job_figure import scatter_cost_vs_rt

    name = task.name
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)

        def local(artifact: str) -> Path:
            return out / artifact.split("/", 1)[1]

        traces.write_parquet(local(trace_file(name)))
        items = task.items.join(per_item.select("item_id", "cost_mean", "log_cost", "model_accuracy", "n_censored",
                                                "n_samples"),
                                on="item_id", how="left")
        items.write_parquet(local(items_file(name)))
        items.write_csv(local(items_file(name, "csv")))
        files = [trace_file(name), items_file(name), items_file(name, "csv")]
        if task.trials.height:  # the report's human split-half reliability needs the trial-level data
            task.trials.write_parquet(local(trials_file(name)))
            files.append(trials_file(name))
        if per_item["human_difficulty"].drop_nulls().len():  # no human data, nothing to plot
            if figures is not None:  # drawn beside the job, logged when it ends
                figures.submit(per_item, alignment, model=model, cost=cost, artifact=figure_file(name),
                               measure=task.config.difficulty.measure)
            else:
                scatter_cost_vs_rt(per_item, alignment, model=model, cost=cost, out=local(figure_file(name)),
                                   measure=task.config.difficulty.measure)
                files.append(figure_file(name))
        run.log_files([(f.split("/", 1)[0], local(f)) for f in files])


def log_items_input(run, task) -> None:
    """The task's human item table as an MLflow dataset input (the run's Datasets in the UI): named
    after the task, digest of its content, source the pinned URL of its first source file; every
    source's URL and sha256 as input tags."""
    import warnings

    import polars as pl
    from mlflow.data.polars_dataset import from_polars
    from mlflow.entities import DatasetInput, InputTag

    sources = list(task.config.sources.items())
    # MLflow's schema maps counts (UInt32) and categories only "closely", with a warning per column
    # on the terminal: give it the types it maps exactly
    view = task.items.with_columns(pl.col(pl.UInt8, pl.UInt16, pl.UInt32).cast(pl.Int64),
                                   pl.col(pl.Categorical, pl.Enum).cast(pl.Utf8))
    with warnings.catch_warnings():  # a file:// URL matches two of MLflow's source types, and it says so
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        dataset = from_polars(view, source=sources[0][1].url if sources else None, name=task.name,
                              digest=items_digest(task.items))
    tags = [InputTag("mlflow.data.context", ITEMS_CONTEXT)]
    for key, src in sources:
        tags += [InputTag(f"source.{key}.url", src.url), InputTag(f"source.{key}.sha256", src.sha256)]
    inputs = [DatasetInput(dataset._to_mlflow_entity(), tags)]
    try:
        run.client.log_inputs(run.run_id, datasets=inputs)
    except Exception as exc:  # noqa: BLE001 - only the race below is retried
        # Parallel jobs of one study log the same table: MLflow's store looks the dataset up, then
        # inserts it, so the job that loses the race hits the unique constraint (sqlite or PostgreSQL,
        # seen on a SLURM array). Its call was rolled back and the dataset now exists: link it again.
        if not any(s in str(exc) for s in ("UNIQUE constraint", "UniqueViolation", "duplicate key", "IntegrityError")):
            raise
        run.client.log_inputs(run.run_id, datasets=inputs)


# ------------------------------------------------------------------ sweep parent and training runs: writers

def sweep_tags(sweep_key: str, study: str, overrides: List[str]) -> Dict[str, str]:
    return {**kind_tags(Kind.SWEEP), Tag.SWEEP_KEY: sweep_key, Tag.STUDY: study,
            Tag.OVERRIDES: " ".join(overrides)[:5000]}


def train_tags(*, mode: str, base: str, teacher: Optional[str], model: str, study: str,
               tasks: Iterable[str]) -> Dict[str, str]:
    return {**kind_tags(Kind.TRAIN), Tag.MODE: mode, Tag.BASE: base, Tag.TEACHER: teacher or "", Tag.MODEL: model,
            Tag.STUDY: study, Tag.TASK: ",".join(tasks)}


def train_params(settings: Mapping[str, str], *, n_examples: int, base_weights: str, max_completion_length: int,
                 split: Mapping[str, str], teacher_runs: Mapping[str, str]) -> Dict[str, Any]:
    """settings: the flattened TrainConfig; split/teacher_runs: per task."""
    return {**settings, "n_examples": n_examples, "base_weights": base_weights,
            "max_completion_length": max_completion_length, **{f"split.{k}": v for k, v in split.items()},
            **{f"teacher_run.{k}": v for k, v in teacher_runs.items()}}


def trained_tags(path: str, config: str) -> Dict[str, str]:
    """Set when training finished: where the weights and the registered model config are."""
    return {Tag.TRAINED_PATH: path, Tag.REGISTERED_CONFIG: config}


# ------------------------------------------------------------------ readers (versions 1 and 2)

def run_format_version(run) -> int:
    """The format a run was written in; 1 for runs from before the version tag."""
    value = run.data.tags.get(Tag.FORMAT)
    try:
        return int(value) if value is not None else 1
    except ValueError:
        raise RunFormatError(f"MLflow run {run.info.run_id}: tag {Tag.FORMAT}={value!r} is not a version number; "
                             "the run was not written by cogdistill, or its tags were edited.") from None


def check_readable(run) -> int:
    """The run's version, or RunFormatError when it is newer than this code reads."""
    version = run_format_version(run)
    if version > RUN_FORMAT:
        raise RunFormatError(f"MLflow run {run.info.run_id} is in run format {version}, newer than this cogdistill "
                             f"reads (up to {RUN_FORMAT}): upgrade cogdistill to read it.")
    return version


def job_filter(*, finished: bool = True, parent_run_id: Optional[str] = None, model: Optional[str] = None) -> str:
    """An MLflow search filter for job runs (every version)."""
    filters = [f"tags.`{Tag.KIND}` = '{Kind.JOB}'"]
    if finished:
        filters.append("attributes.status = 'FINISHED'")
    if parent_run_id:
        filters.append(f"tags.{Tag.PARENT} = '{parent_run_id}'")
    if model:
        filters.append(f"tags.{Tag.MODEL} = '{model}'")
    return " and ".join(filters)


def children_filter(parent_run_id: str) -> str:
    return f"tags.{Tag.PARENT} = '{parent_run_id}'"


def kind_filter(kind: str) -> str:
    return f"tags.`{Tag.KIND}` = '{kind}'"


def run_tasks(run) -> List[str]:
    """The tasks a job ran, in order (tag `task`)."""
    return [t for t in run.data.tags.get(Tag.TASK, "").split(",") if t]


def read_task_metrics(run) -> Dict[str, Dict[str, float]]:
    """{task: {metric name: value}} for every task the run finished (its `n_items/<task>`); a
    metric that was undefined (not logged) is absent."""
    check_readable(run)
    out: Dict[str, Dict[str, float]] = {}
    for key, value in run.data.metrics.items():
        name, _, task = key.partition("/")
        if task and name in TASK_METRICS:
            out.setdefault(task, {})[name] = value
    return {task: values for task, values in out.items() if TASK_MARKER in values}


def read_job_meta(run) -> Dict[str, Optional[str]]:
    """model (the label), config, effort (None for default or older runs), role, family, teacher,
    base (None when empty) and cost of a job run."""
    tags = run.data.tags
    effort = tags.get(Tag.EFFORT)
    return {"model": tags.get(Tag.MODEL, run.info.run_id), "config": tags.get(Tag.CONFIG),
            "effort": None if effort in (None, "", "default") else effort, "role": tags.get(Tag.ROLE),
            "family": tags.get(Tag.FAMILY), "teacher": tags.get(Tag.TEACHER) or None,
            "base": tags.get(Tag.BASE) or None, "cost": run.data.params.get(PARAM_COST)}


def task_difficulty(run, task: str) -> Optional[str]:
    """The human measure of a task in a job run (param task.<task>.difficulty)."""
    return run.data.params.get(task_param(task, "difficulty"))
