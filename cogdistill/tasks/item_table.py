"""Per-item human difficulty from trial-level data, the same way for every task.

Two frames come out of a task's trials: `item_table` (one row per item: accuracy, RTs, the
configured difficulty) and `trial_frame` (one row per trial, TRIAL_SCHEMA's columns), which the
split-half reliability of human difficulty (cogdistill.stats.reliability) is computed from. Builders
of every task kind return both: `return items, trial_frame(trials, cfg.difficulty)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, Optional

import polars as pl

from cogdistill.config.schema import DifficultyConfig, plausible_rt_problem
from cogdistill.errors import CogdistillError
from cogdistill.registry import MEASURES, RT_MEASURES

ITEM_COLUMNS = [
    "item_id", "target", "n_trials", "n_rt_trials", "accuracy",
    "rt_mean", "rt_median", "log_rt_mean", "human_difficulty",
]

# Task.trials: one row per human trial of the task's items. participant is null in every row
# when the source has no participant ids; keep = the trial counts for the RT measure (inside
# the RT window, and correct when difficulty.correct_only).
TRIAL_SCHEMA: Dict[str, pl.DataType] = {
    "item_id": pl.Utf8, "participant": pl.Utf8, "rt_s": pl.Float64, "correct": pl.Float64, "keep": pl.Boolean,
}


class TaskDataError(CogdistillError, ValueError):
    pass


def require_columns(df: pl.DataFrame, columns: Iterable[str], path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise TaskDataError(
            f"{path}: missing column(s) {missing}; found {df.columns}. "
            "The file is not the pinned version this task expects: check `sources` in the task config."
        )


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
        trials = trials.with_columns(pl.col("rt_s").cast(pl.Float64))
        kept = trials.filter(keep_expr(difficulty))["rt_s"]
        check_rt_units(kept if len(kept) else trials.filter(pl.col("rt_s") > 0)["rt_s"], difficulty, path,
                       what="kept trials" if len(kept) else "trials")
    table = (
        trials.with_columns(keep_expr(difficulty).alias("_keep"), pl.col("rt_s").cast(pl.Float64))
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
        .with_columns(pl.col(MEASURES.spec(difficulty.measure).column).alias("human_difficulty"))
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


def keep_expr(difficulty: DifficultyConfig) -> pl.Expr:
    """True for a trial that counts for the RT measure: an RT inside [rt_min, rt_max] (seconds),
    and a correct response when `difficulty.correct_only`."""
    rt = pl.col("rt_s").cast(pl.Float64, strict=False)
    ok = rt.is_not_null()
    if difficulty.rt_min is not None:
        ok = ok & (rt >= difficulty.rt_min)
    if difficulty.rt_max is not None:
        ok = ok & (rt <= difficulty.rt_max)
    return (ok & (pl.col("correct") == 1)).fill_null(False) if difficulty.correct_only else ok


def check_rt_units(rts: pl.Series, difficulty: DifficultyConfig, path: Path, what: str = "kept trials") -> None:
    """A median RT outside `difficulty.plausible_median_rt_s` (default 0.05-300 s) is a unit
    error (milliseconds read as seconds, or the reverse), not a slow or fast task."""
    window = difficulty.plausible_median_rt_s
    if window is None or rts.len() == 0:
        return
    problem = plausible_rt_problem(window)
    if problem:
        raise TaskDataError(f"{path}: `difficulty.plausible_median_rt_s: {list(window)}`: {problem}")
    low, high = float(window[0]), float(window[1])
    median = rts.cast(pl.Float64).median()
    if median is not None and not low <= median <= high:
        raise TaskDataError(
            f"{path}: the median RT of the {what} is {median:.4g} s, outside the plausible "
            f"{low:g}-{high:g} s: a unit error? RTs are read as seconds (rt_s, human_rt_s); give milliseconds as rt_ms "
            "(or divide them by 1000), keep `difficulty.rt_min`/`rt_max` in seconds, and check that `sources` "
            "points at the intended file. If the times are right, set `difficulty.plausible_median_rt_s: "
            "[low, high]` (seconds) in the task config, or null to skip this check."
        )


def participant_ids(raw: pl.DataFrame, column: str) -> pl.Expr:
    """The source's participant id column as text, or null where the source has none."""
    if column in raw.columns:
        return pl.col(column).cast(pl.Utf8).str.strip_chars()
    return pl.lit(None, dtype=pl.Utf8)


def trial_frame(trials: pl.DataFrame, difficulty: DifficultyConfig) -> pl.DataFrame:
    """The trials (item_id, rt_s, correct, and `participant` where the source has ids) as
    TRIAL_SCHEMA's columns, with `keep` computed as item_table computes it."""
    participant = pl.col("participant").cast(pl.Utf8) if "participant" in trials.columns \
        else pl.lit(None, dtype=pl.Utf8)
    return trials.select(
        pl.col("item_id").cast(pl.Utf8),
        participant.alias("participant"),
        pl.col("rt_s").cast(pl.Float64, strict=False),
        pl.col("correct").cast(pl.Float64, strict=False),
        keep_expr(difficulty).alias("keep"),
    )


def empty_trials() -> pl.DataFrame:
    """A task without trial-level human data (item-level files, ARC without the OSF file)."""
    return pl.DataFrame(schema=TRIAL_SCHEMA)


def check_trial_frame(trials: Optional[pl.DataFrame], kind: str) -> pl.DataFrame:
    """The contract other code reads: exactly TRIAL_SCHEMA's columns, in order, with its types."""
    if trials is None:
        return empty_trials()
    got = dict(trials.schema)
    if list(got) != list(TRIAL_SCHEMA) or any(got[c] != t for c, t in TRIAL_SCHEMA.items()):
        raise TaskDataError(f"task kind '{kind}' built a trial frame with columns {got}; expected {TRIAL_SCHEMA} "
                            "(build it with cogdistill.tasks.item_table.trial_frame).")
    return trials
