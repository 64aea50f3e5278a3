"""The sweep's parent run gets a model x task table of the children's r values.

(The full comparison report, with families and tests, is cogdistill.report; this is the
at-a-glance table that every sweep leaves on its parent run.)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import polars as pl

from cogdistill.console import console
from cogdistill.tracking.run_format import (
    SWEEP_SUMMARY,
    SWEEP_SUMMARY_METRICS,
    Tag,
    children_filter,
    read_task_metrics,
    sweep_metric,
)


def children_table(client, experiment_id: str, parent_run_id: str) -> pl.DataFrame:
    runs = client.search_runs([experiment_id], filter_string=children_filter(parent_run_id), max_results=5000)
    rows = []
    for run in runs:
        tags = run.data.tags
        for task, metrics in read_task_metrics(run).items():  # every finished task; r may be undefined
            rows.append({
                "model": tags.get(Tag.MODEL, "?"), "role": tags.get(Tag.ROLE, "?"), "family": tags.get(Tag.FAMILY, "?"),
                "task": task, **{k: metrics.get(k) for k in SWEEP_SUMMARY_METRICS},
                "status": run.info.status,
            })
    schema = {"model": pl.Utf8, "role": pl.Utf8, "family": pl.Utf8, "task": pl.Utf8,
              **{k: pl.Float64 for k in SWEEP_SUMMARY_METRICS}, "status": pl.Utf8}
    return pl.DataFrame(rows, schema=schema).sort("model", "task")


def log_sweep_summary(client, experiment_id: str, parent_run_id: str) -> pl.DataFrame:
    from mlflow.entities import Metric

    table = children_table(client, experiment_id, parent_run_id)
    if table.height == 0:
        console.print("[yellow]The sweep finished no task (no jobs launched, or every job failed).[/]")
        return table
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / SWEEP_SUMMARY
        table.write_csv(path)
        client.log_artifact(parent_run_id, str(path))
    metrics = [Metric(sweep_metric(row["model"], row["task"]), row["r"], 0, 0)
               for row in table.iter_rows(named=True) if row["r"] is not None]
    if metrics:
        client.log_batch(parent_run_id, metrics=metrics)
    from rich.table import Table

    view = Table(title="Sweep: r(log token cost, human RT) per model and task")
    for col in ("model", "role", "task", "r", "95% CI", "acc", "tokens"):
        view.add_column(col, justify="right" if col not in ("model", "role", "task") else "left")
    for row in table.iter_rows(named=True):
        ci = "" if row["r_ci_low"] is None else f"[{row['r_ci_low']:.2f}, {row['r_ci_high']:.2f}]"
        view.add_row(row["model"], row["role"], row["task"], "undefined" if row["r"] is None else f"{row['r']:.3f}", ci,
                     "" if row["acc"] is None else f"{row['acc']:.2f}",
                     "" if row["tokens_mean"] is None else f"{row['tokens_mean']:.1f}")
    console.print(view)
    return table
