"""What a report reads: the traces, human difficulties and model roles of a study, from an MLflow
experiment (the runs a sweep left) or from a folder.

A folder holds (docs: The comparison report, "A study folder, and traces from elsewhere"):
  traces/*.parquet | *.jsonl   trace records: model, task, item_id, [sample_idx], cost (or the
                               column named by models.csv `cost`), correct, [censored, budget_hit,
                               cost_source]
  humans.csv | humans.parquet  task, item_id, human_difficulty, measure
  models.csv                   model, role, [family, teacher, base, cost, effort, config]
  trials.csv | trials.parquet  optional human trials: task, item_id, rt_s, correct, [participant, keep]
Every report writes its study in this layout (`study/`), so a report can be rebuilt or merged.

The folder reader and its checks live in cogdistill/report/folder.py.
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import polars as pl

from cogdistill.config.schema import Role
from cogdistill.errors import CogdistillError
from cogdistill.traces.records import ANALYSIS_COLUMNS
from cogdistill.tracking import run_format as rf

TRACE_COLUMNS = ANALYSIS_COLUMNS  # the trace record's analysis view (cogdistill.traces.records)
HUMAN_COLUMNS = {"task": pl.Utf8, "item_id": pl.Utf8, "human_difficulty": pl.Float64, "measure": pl.Utf8}
# effort: the reasoning-effort level the model ran at ("low", "budget=64"; null: its default, no
# manipulation); config: the model config it is a level of (null: the model itself). A config run
# at several levels is one model per level, named <config>:<effort> (cogdistill/report/effort.py).
MODEL_COLUMNS = {"model": pl.Utf8, "role": pl.Utf8, "family": pl.Utf8, "teacher": pl.Utf8, "base": pl.Utf8,
                 "cost": pl.Utf8, "run_id": pl.Utf8, "effort": pl.Utf8, "config": pl.Utf8}
# Human trial-level data (one row per participant x item), for the reliability of human difficulty:
# rt_s in seconds and correct in [0, 1], both nullable; keep: the trial enters the item's RT.
TRIAL_COLUMNS = {"task": pl.Utf8, "item_id": pl.Utf8, "participant": pl.Utf8, "rt_s": pl.Float64,
                 "correct": pl.Float64, "keep": pl.Boolean}

ROLES = tuple(role.value for role in Role)
# columns read as text from every folder file: ids keep their leading zeros, names stay names
TEXT_COLUMNS = ("model", "task", "item_id", "participant", "role", "family", "teacher", "base", "cost",
                "measure", "run_id", "effort", "config", "cost_source")
PLAUSIBLE_RT_S = (0.05, 300.0)  # a task's median RT outside this is a unit error (ms given as s, ...)
PLAUSIBLE_FLAG = "--plausible-rt"  # python -m cogdistill.report ... --plausible-rt TASK=LOW:HIGH


class StudyError(CogdistillError, ValueError):
    """A study that cannot be read; the message names the file or run and the fix."""


def empty_trials() -> pl.DataFrame:
    return pl.DataFrame(schema=TRIAL_COLUMNS)


@dataclass
class Study:
    traces: pl.DataFrame
    humans: pl.DataFrame
    models: pl.DataFrame
    source: str
    # TRIAL_COLUMNS; empty when the source has no trial-level human data (older runs, most folders)
    trials: pl.DataFrame = field(default_factory=empty_trials)
    notes: List[str] = field(default_factory=list)  # what loaded but deserves a look (items without humans)

    def write(self, folder: Path) -> Path:
        """The folder layout above, readable by from_folder. A human row without a difficulty is
        left out: it means what a missing row means (no human data), and from_folder refuses it."""
        (folder / "traces").mkdir(parents=True, exist_ok=True)
        self.traces.write_parquet(folder / "traces" / "traces.parquet")
        self.humans.filter(pl.col("human_difficulty").is_not_null()).write_parquet(folder / "humans.parquet")
        self.models.write_csv(folder / "models.csv")
        if self.trials.height:
            self.trials.write_parquet(folder / "trials.parquet")
        return folder

    def items_without_humans(self) -> pl.DataFrame:
        """Per task: the trace items that have no human difficulty (they stay in the study, with
        none), out of the task's trace items."""
        return _coverage(self.traces, self.humans)


def _conform(frame: pl.DataFrame, schema: Dict[str, pl.DataType]) -> pl.DataFrame:
    return frame.select([pl.col(c).cast(t) if c in frame.columns else pl.lit(None, t).alias(c)
                         for c, t in schema.items()])


def _coverage(traces: pl.DataFrame, humans: pl.DataFrame) -> pl.DataFrame:
    items = traces.select("task", "item_id").unique()
    known = humans.filter(pl.col("human_difficulty").is_not_null()).select("task", "item_id", has=pl.lit(True))
    return (items.join(known.unique(["task", "item_id"]), on=["task", "item_id"], how="left")
            .group_by("task")
            .agg(n_items=pl.len(), n_without_humans=pl.col("has").is_null().sum(),
                 examples=pl.col("item_id").filter(pl.col("has").is_null()).sort().head(5))
            .filter(pl.col("n_without_humans") > 0).sort("task"))


def _coverage_notes(traces: pl.DataFrame, humans: pl.DataFrame, humans_file: str) -> List[str]:
    return [f"task '{row['task']}': {row['n_without_humans']} of {row['n_items']} trace item(s) have no human "
            f"difficulty in {humans_file} (e.g. {row['examples']}); they are kept without one and enter no "
            "alignment. If unexpected, compare the item ids of both files (leading zeros, prefixes)."
            for row in _coverage(traces, humans).iter_rows(named=True)]


# ---- MLflow ------------------------------------------------------------------------------------

def from_mlflow(tracking_uri: Optional[str], experiment: str, parent_run_id: Optional[str] = None,
                workers: int = 8) -> Study:
    """The finished job runs of an experiment (of one sweep when parent_run_id is given); when a
    model ran several times, its newest finished run wins."""
    from mlflow import MlflowClient

    from cogdistill.console import quiet_third_party
    from cogdistill.secrets import mask_uri  # the source is written into report.json/.md and logged to MLflow

    quiet_third_party()  # else MLflow draws a progress bar per downloaded run
    from cogdistill.tracking.store import guarded

    # a store that stops answering mid-read is one line with the fix (python -m cogdistill.report has
    # checked it before: tracking.store.reader_client)
    client = guarded(MlflowClient(tracking_uri=tracking_uri), tracking_uri or "")
    exp = client.get_experiment_by_name(experiment) or _by_id(client, experiment)
    if exp is None:
        names = sorted(e.name for e in client.search_experiments())
        raise StudyError(f"MLflow store {mask_uri(client.tracking_uri)}: no experiment '{experiment}'. "
                         f"Experiments there: {names}. Pass --experiment <one of them> (the study name).")
    runs = client.search_runs([exp.experiment_id], rf.job_filter(parent_run_id=parent_run_id), max_results=50000,
                              order_by=["attributes.start_time DESC"])
    newest = {}
    for run in runs:
        newest.setdefault(run.data.tags.get(rf.Tag.MODEL, run.info.run_id), run)
    if not newest:
        where = f"sweep parent run {parent_run_id}" if parent_run_id else f"experiment '{experiment}'"
        raise StudyError(f"MLflow store {mask_uri(client.tracking_uri)}: {where} has no finished job runs. "
                         "Run the study first (python -m cogdistill -m ...), or check --experiment/--parent.")
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(workers) as pool:
        parts = list(pool.map(lambda run: _read_run(client, run, Path(tmp)), newest.values()))
    traces = pl.concat([p[0] for p in parts], how="vertical_relaxed")
    humans = pl.concat([p[1] for p in parts], how="vertical_relaxed").unique(["task", "item_id"], keep="first")
    models = pl.DataFrame([p[2] for p in parts], schema=MODEL_COLUMNS)
    trials_by_task: Dict[str, pl.DataFrame] = {}
    for part in parts:  # every run of a task logs the same trials: one copy per task
        for task, frame in part[3].items():
            trials_by_task.setdefault(task, frame)
    trials = pl.concat([trials_by_task[t] for t in sorted(trials_by_task)]) if trials_by_task else empty_trials()
    where = (f"{mask_uri(client.tracking_uri)} experiment '{exp.name}'"
             + (f" parent {parent_run_id}" if parent_run_id else ""))
    return Study(traces, humans, models, source=where, trials=trials,
                 notes=_coverage_notes(traces, humans, "the runs' items tables"))


def _by_id(client, experiment: str):
    try:
        return client.get_experiment(experiment)
    except Exception:  # noqa: BLE001 - not an id either; the caller lists the names
        return None


def _read_run(client, run, tmp: Path):
    rf.check_readable(run)  # run format 1 (no version tag) and 2 read alike
    run_id, meta = run.info.run_id, rf.read_job_meta(run)
    model, cost = meta["model"], meta["cost"]
    if cost is None:
        raise StudyError(f"MLflow run {run_id} ({model}) has no `cost` param: it was not logged by "
                         "cogdistill's pipeline. Remove it from the experiment or pass --parent.")
    local = _run_artifacts(client, run, tmp / run_id)
    traces, humans, trials = [], [], {}
    for task in rf.run_tasks(run):
        trace_file, item_file = local / rf.trace_file(task), local / rf.items_file(task)
        if not trace_file.is_file() or not item_file.is_file():
            raise StudyError(f"MLflow run {run_id} ({model}): artifacts {rf.trace_file(task)} or "
                             f"{rf.items_file(task)} missing; the run was cut before logging them. "
                             "Re-run that job (its generations are cached) or remove the run.")
        # only the columns the report reads: a trace's prompt and texts are most of its bytes
        wanted = [c for c in pl.read_parquet_schema(trace_file) if c in TRACE_COLUMNS or c == cost]
        t = pl.read_parquet(trace_file, columns=wanted)
        traces.append(_conform(t.with_columns(pl.col(cost).alias("cost"), pl.lit(model).alias("model")),
                               TRACE_COLUMNS))
        h = pl.read_parquet(item_file).select("item_id", "human_difficulty")
        humans.append(_conform(h.with_columns(task=pl.lit(task), measure=pl.lit(rf.task_difficulty(run, task))),
                               HUMAN_COLUMNS))
        trial_file = local / rf.trials_file(task)
        if trial_file.is_file():  # runs logged before trial-level data have none: no trials for the task
            trials[task] = _run_trials(run_id, model, task, trial_file)
    # effort and config: absent from runs logged before the effort factor (null: the model's default)
    row = {**{k: meta.get(k) for k in MODEL_COLUMNS}, "run_id": run_id,
           "effort": meta.get("effort"), "config": meta.get("config")}
    return pl.concat(traces), pl.concat(humans), row, trials


def _run_artifacts(client, run, dst: Path) -> Path:
    """A folder holding the run's artifacts: the store's own folder when it is local (read in
    place: nothing copied, not even the run's figures and CSVs), else the run downloaded."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    uri = getattr(run.info, "artifact_uri", None)
    repo = get_artifact_repository(uri, tracking_uri=client.tracking_uri) if uri else None
    if isinstance(repo, LocalArtifactRepository):
        return Path(repo.artifact_dir)
    return Path(client.download_artifacts(run.info.run_id, "", str(dst)))


def _run_trials(run_id: str, model: str, task: str, path: Path) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(path)
        if "keep" not in frame.columns:
            frame = frame.with_columns(keep=pl.lit(True))
        frame = _conform(frame.with_columns(task=pl.lit(task)), TRIAL_COLUMNS)
        return frame.with_columns(pl.col("keep").fill_null(True))
    except pl.exceptions.PolarsError as exc:
        raise StudyError(f"MLflow run {run_id} ({model}): artifact {rf.trials_file(task)} is unreadable or "
                         f"malformed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); re-run that job, or "
                         "delete the artifact (the report then has no trials for the task).") from exc
