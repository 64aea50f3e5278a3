"""Per-item human difficulty from trial-level data, the same way for every task."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import polars as pl

from cogdistill.config import DifficultyConfig
from cogdistill.errors import CogdistillError

ITEM_COLUMNS = [
    "item_id", "target", "n_trials", "n_rt_trials", "accuracy",
    "rt_mean", "rt_median", "log_rt_mean", "human_difficulty",
]


class TaskDataError(CogdistillError, ValueError):
    pass


def require_columns(df: pl.DataFrame, columns: Iterable[str], path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise TaskDataError(
            f"{path}: missing column(s) {missing}; found {df.columns}. "
            "The file is not the pinned version this task expects: check `sources` in the task config."
        )


RT_MEASURES = {"mean_rt": "rt_mean", "median_rt": "rt_median", "mean_log_rt": "log_rt_mean"}
MEASURES = {**RT_MEASURES, "error_rate": "error_rate"}  # error_rate: for data with no usable RT


def read_csv(path: Path, *, as_text: bool = False, **options) -> pl.DataFrame:
    """A source CSV (gzipped too), or a TaskDataError naming the file. as_text: every column
    as a string, for files parsed explicitly afterwards."""
    try:
        return pl.read_csv(path, infer_schema_length=0 if as_text else None, **options)
    except pl.exceptions.PolarsError as exc:
        raise TaskDataError(f"{path}: not a readable CSV ({exc}).") from exc


def item_table(trials: pl.DataFrame, difficulty: DifficultyConfig, path: Path) -> pl.DataFrame:
    """Aggregate trials (item_id, target, rt_s, correct) into one row per item.

    rt_s is in seconds (null where the source has no RT). Accuracy uses every trial; RT uses
    the trials kept by the difficulty config (RT window, correct only), as the source study's
    authors did. `human_difficulty` is the configured measure: an RT, or the error rate.
    """
    require_columns(trials, ["item_id", "target", "rt_s", "correct"], path)
    if trials.height == 0:
        raise TaskDataError(f"{path}: no trials (a header without rows?); the file needs one row per trial.")
    has_rt = difficulty.measure in RT_MEASURES
    if has_rt:
        _check_rts(trials, difficulty, path)
    rt_ok = pl.col("rt_s").is_not_null()
    if difficulty.rt_min is not None:
        rt_ok = rt_ok & (pl.col("rt_s") >= difficulty.rt_min)
    if difficulty.rt_max is not None:
        rt_ok = rt_ok & (pl.col("rt_s") <= difficulty.rt_max)
    keep = rt_ok & (pl.col("correct") == 1) if difficulty.correct_only else rt_ok
    table = (
        trials.with_columns(keep.alias("_keep"), pl.col("rt_s").cast(pl.Float64))
        .group_by("item_id")
        .agg(
            pl.col("target").first(),
            pl.len().alias("n_trials"),
            pl.col("_keep").sum().alias("n_rt_trials"),
            pl.col("correct").cast(pl.Float64).mean().alias("accuracy"),
            pl.col("rt_s").filter(pl.col("_keep")).mean().alias("rt_mean"),
            pl.col("rt_s").filter(pl.col("_keep")).median().alias("rt_median"),
            pl.col("rt_s").filter(pl.col("_keep")).log().mean().alias("log_rt_mean"),
        )
        .with_columns(error_rate=1.0 - pl.col("accuracy"))
        .with_columns(pl.col(MEASURES[difficulty.measure]).alias("human_difficulty"))
        .drop("error_rate")
        .sort("item_id")
    )
    if has_rt and table["human_difficulty"].null_count():
        bad = table.filter(pl.col("human_difficulty").is_null())["item_id"][0]
        raise TaskDataError(
            f"{path}: item {bad!r} has no trial left for its RT (all wrong or outside the RT window); widen "
            "`difficulty.rt_min`/`rt_max`, set `difficulty.correct_only: false`, or drop the item."
        )
    return table


def _check_rts(trials: pl.DataFrame, difficulty: DifficultyConfig, path: Path) -> None:
    """Every RT is a number, and every RT the window keeps is positive: a zero or negative RT
    would silently pull an item's mean down (the window may drop them, as the authors did)."""
    rt = trials["rt_s"]
    if not rt.dtype.is_numeric() or rt.null_count():
        bad = trials.filter(pl.col("rt_s").is_null() if rt.dtype.is_numeric()
                            else pl.col("rt_s").cast(pl.Float64, strict=False).is_null())
        item = bad["item_id"][0] if bad.height else None
        raise TaskDataError(
            f"{path}: the RT column has missing or non-numeric values (e.g. a trial of item {item!r}); "
            "clean the file (RTs are plain numbers) or drop those rows."
        )
    non_positive = pl.col("rt_s") <= 0
    if difficulty.rt_min is not None:
        non_positive = non_positive & (pl.col("rt_s") >= difficulty.rt_min)
    kept = trials.filter(non_positive)
    if kept.height:
        raise TaskDataError(
            f"{path}: item {kept['item_id'][0]!r} has a trial with RT {kept['rt_s'][0]} (not positive); "
            "RTs must be positive: fix or drop those trials, or set `difficulty.rt_min` to exclude them."
        )
