"""Single-digit multiplication (soh-multiplication): trials -> items with human RT; participant ids
from the `participant` column."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

import polars as pl

from cogdistill.config.schema import TaskConfig
from cogdistill.tasks.item_table import (
    TaskDataError,
    item_table,
    participant_ids,
    read_csv,
    require_columns,
    trial_frame,
)


def build_items(paths: Dict[str, Path], cfg: TaskConfig) -> Tuple[pl.DataFrame, pl.DataFrame]:
    path = paths["trials"]
    raw = read_csv(path, schema_overrides={"participant": pl.Utf8})
    require_columns(raw, ["problem", "multiplyRT", "multiplyCorr"], path)
    operands = pl.col("problem").str.extract_groups(r"^\s*(\d+)\s*[xX×*]\s*(\d+)")
    trials = raw.with_columns(operands.alias("_ops")).unnest("_ops")
    if trials["1"].null_count():
        bad = trials.filter(pl.col("1").is_null())["problem"][0]
        raise TaskDataError(f"{path}: column 'problem' has {bad!r}; expected 'a x b ='.")
    trials = trials.select(
        a=pl.col("1").cast(pl.Int64),
        b=pl.col("2").cast(pl.Int64),
        rt_s=pl.col("multiplyRT"),
        correct=pl.col("multiplyCorr").cast(pl.Int64),
        participant=participant_ids(raw, "participant"),
    ).with_columns(
        item_id=pl.format("{}x{}", "a", "b"),
        target=(pl.col("a") * pl.col("b")).cast(pl.Utf8),
    )
    operands_by_item = trials.select("item_id", "a", "b").unique("item_id")
    items = item_table(trials, cfg.difficulty, path).join(operands_by_item, on="item_id")
    return items, trial_frame(trials, cfg.difficulty)
