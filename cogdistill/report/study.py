"""What a report reads: the traces, human difficulties and model roles of a study, from an MLflow
experiment (the runs a sweep left) or from a folder.

A folder holds (README, "The comparison report"):
  traces/*.parquet | *.jsonl   trace records: model, task, item_id, [sample_idx], cost (or the
                               column named by models.csv `cost`), correct, [censored]
  humans.csv | humans.parquet  task, item_id, human_difficulty, measure
  models.csv                   model, role, [family, teacher, base, cost]
Every report writes its study in this layout (`study/`), so a report can be rebuilt or merged.
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import polars as pl

from cogdistill.errors import CogdistillError

TRACE_COLUMNS = {"model": pl.Utf8, "task": pl.Utf8, "item_id": pl.Utf8, "sample_idx": pl.Int64,
                 "cost": pl.Float64, "correct": pl.Boolean, "censored": pl.Boolean}
HUMAN_COLUMNS = {"task": pl.Utf8, "item_id": pl.Utf8, "human_difficulty": pl.Float64, "measure": pl.Utf8}
MODEL_COLUMNS = {"model": pl.Utf8, "role": pl.Utf8, "family": pl.Utf8, "teacher": pl.Utf8, "base": pl.Utf8,
                 "cost": pl.Utf8, "run_id": pl.Utf8}


class StudyError(CogdistillError, ValueError):
    """A study that cannot be read; the message names the file or run and the fix."""


@dataclass
class Study:
    traces: pl.DataFrame
    humans: pl.DataFrame
    models: pl.DataFrame
    source: str

    def write(self, folder: Path) -> Path:
        """The folder layout above, readable by from_folder."""
        (folder / "traces").mkdir(parents=True, exist_ok=True)
        self.traces.write_parquet(folder / "traces" / "traces.parquet")
        self.humans.write_parquet(folder / "humans.parquet")
        self.models.write_csv(folder / "models.csv")
        return folder


def _conform(frame: pl.DataFrame, schema: Dict[str, pl.DataType]) -> pl.DataFrame:
    return frame.select([pl.col(c).cast(t) if c in frame.columns else pl.lit(None, t).alias(c)
                         for c, t in schema.items()])


# ---- MLflow ------------------------------------------------------------------------------------

def from_mlflow(tracking_uri: Optional[str], experiment: str, parent_run_id: Optional[str] = None,
                workers: int = 8) -> Study:
    """The finished job runs of an experiment (of one sweep when parent_run_id is given); when a
    model ran several times, its newest finished run wins."""
    from mlflow import MlflowClient

    from cogdistill.console import quiet_third_party

    quiet_third_party()  # else MLflow draws a progress bar per downloaded run
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment) or _by_id(client, experiment)
    if exp is None:
        names = sorted(e.name for e in client.search_experiments())
        raise StudyError(f"MLflow store {client.tracking_uri}: no experiment '{experiment}'. "
                         f"Experiments there: {names}. Pass --experiment <one of them> (the study name).")
    filters = ["tags.`cogdistill.kind` = 'job'", "attributes.status = 'FINISHED'"]
    if parent_run_id:
        filters.append(f"tags.mlflow.parentRunId = '{parent_run_id}'")
    runs = client.search_runs([exp.experiment_id], " and ".join(filters), max_results=50000,
                              order_by=["attributes.start_time DESC"])
    newest = {}
    for run in runs:
        newest.setdefault(run.data.tags.get("model", run.info.run_id), run)
    if not newest:
        where = f"sweep parent run {parent_run_id}" if parent_run_id else f"experiment '{experiment}'"
        raise StudyError(f"MLflow store {client.tracking_uri}: {where} has no finished job runs. "
                         "Run the study first (python -m cogdistill -m ...), or check --experiment/--parent.")
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(workers) as pool:
        parts = list(pool.map(lambda run: _read_run(client, run, Path(tmp)), newest.values()))
    traces = pl.concat([p[0] for p in parts], how="vertical_relaxed")
    humans = pl.concat([p[1] for p in parts], how="vertical_relaxed").unique(["task", "item_id"], keep="first")
    models = pl.DataFrame([p[2] for p in parts], schema=MODEL_COLUMNS)
    where = f"{client.tracking_uri} experiment '{exp.name}'" + (f" parent {parent_run_id}" if parent_run_id else "")
    return Study(traces, humans, models, source=where)


def _by_id(client, experiment: str):
    try:
        return client.get_experiment(experiment)
    except Exception:  # noqa: BLE001 - not an id either; the caller lists the names
        return None


def _read_run(client, run, tmp: Path):
    tags, params, run_id = run.data.tags, run.data.params, run.info.run_id
    model, cost = tags.get("model", run_id), params.get("cost")
    if cost is None:
        raise StudyError(f"MLflow run {run_id} ({model}) has no `cost` param: it was not logged by "
                         "cogdistill's pipeline. Remove it from the experiment or pass --parent.")
    local = Path(client.download_artifacts(run_id, "", str(tmp / run_id)))
    traces, humans = [], []
    for task in filter(None, tags.get("task", "").split(",")):
        trace_file, item_file = local / "traces" / f"{task}.parquet", local / "items" / f"{task}_items.parquet"
        if not trace_file.is_file() or not item_file.is_file():
            raise StudyError(f"MLflow run {run_id} ({model}): artifacts traces/{task}.parquet or "
                             f"items/{task}_items.parquet missing; the run was cut before logging them. "
                             "Re-run that job (its generations are cached) or remove the run.")
        t = pl.read_parquet(trace_file)
        traces.append(_conform(t.with_columns(pl.col(cost).alias("cost"), pl.lit(model).alias("model")),
                               TRACE_COLUMNS))
        h = pl.read_parquet(item_file).select("item_id", "human_difficulty")
        humans.append(_conform(h.with_columns(task=pl.lit(task), measure=pl.lit(params.get(f"task.{task}.difficulty"))),
                               HUMAN_COLUMNS))
    meta = {"model": model, "role": tags.get("role"), "family": tags.get("family"),
            "teacher": tags.get("teacher") or None, "base": tags.get("base") or None, "cost": cost, "run_id": run_id}
    return pl.concat(traces), pl.concat(humans), meta


# ---- folder ------------------------------------------------------------------------------------

def from_folder(folder: Path) -> Study:
    folder = Path(folder)
    if not folder.is_dir():
        raise StudyError(f"{folder}: not a folder. Pass a folder holding traces/, humans.csv and models.csv "
                         "(README, 'The comparison report'), or --experiment for an MLflow study.")
    models = _read_table(_one_of(folder, "models", ("csv", "parquet")), {"model", "role"})
    humans = _read_table(_one_of(folder, "humans", ("csv", "parquet")),
                         {"task", "item_id", "human_difficulty", "measure"})
    files = sorted(p for ext in ("parquet", "jsonl") for p in (folder / "traces").glob(f"*.{ext}"))
    if not files:
        raise StudyError(f"{folder / 'traces'}: no *.parquet or *.jsonl trace files.")
    cost_of = dict(zip(models["model"], models["cost"])) if "cost" in models.columns else {}
    traces: List[pl.DataFrame] = []
    for file in files:
        t = pl.read_parquet(file) if file.suffix == ".parquet" else pl.read_ndjson(file)
        missing = {"model", "task", "item_id", "correct"} - set(t.columns)
        if missing:
            raise StudyError(f"{file}: missing column(s) {sorted(missing)}; trace files need model, task, item_id, "
                             "correct and a cost (a `cost` column, or models.csv `cost` naming one).")
        if "cost" not in t.columns:
            t = _cost_from_models(file, t, cost_of)
        traces.append(_conform(t.with_columns(pl.col("item_id").cast(pl.Utf8)), TRACE_COLUMNS))
    frame = pl.concat(traces).with_columns(pl.col("sample_idx").fill_null(0), pl.col("censored").fill_null(False))
    unknown = sorted(set(frame["model"]) - set(models["model"]))
    if unknown:
        raise StudyError(f"{folder / 'models.csv'}: no row for model(s) {unknown} found in the traces; "
                         "add them (model, role, family, teacher, base).")
    return Study(frame, _conform(humans.with_columns(pl.col("item_id").cast(pl.Utf8)), HUMAN_COLUMNS),
                 _conform(models, MODEL_COLUMNS), source=str(folder))


def _one_of(folder: Path, stem: str, exts) -> Path:
    for ext in exts:
        if (folder / f"{stem}.{ext}").is_file():
            return folder / f"{stem}.{ext}"
    raise StudyError(f"{folder}: no {stem}.csv or {stem}.parquet (README, 'The comparison report').")


def _read_table(path: Path, required: set) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path, infer_schema_length=None)
    except Exception as exc:  # noqa: BLE001 - polars raises several types for unreadable files
        raise StudyError(f"{path}: unreadable ({type(exc).__name__}: {exc}).") from exc
    missing = required - set(frame.columns)
    if missing:
        raise StudyError(f"{path}: missing column(s) {sorted(missing)} (found {frame.columns}).")
    return frame


def _cost_from_models(file: Path, traces: pl.DataFrame, cost_of: Dict[str, str]) -> pl.DataFrame:
    parts = []
    for (model,), part in traces.partition_by("model", as_dict=True).items():
        column = cost_of.get(model)
        if not column or column not in part.columns:
            raise StudyError(f"{file}: no cost for model '{model}': add a `cost` column to the traces, or a "
                             "`cost` column to models.csv naming one (reasoning_tokens or total_tokens).")
        parts.append(part.with_columns(pl.col(column).alias("cost")))
    return pl.concat(parts, how="diagonal_relaxed")
