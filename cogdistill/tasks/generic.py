"""Bring your own human data: any CSV/TSV/parquet of items or trials, mapped to cogdistill's names.

The file is `sources.items`. Its columns are read by these names (rename them in your file, or
map them with `columns:` in the task config: {our name: your column}):

  item_id   the item (required; read as text: '07' stays '07')
  answer    the correct answer (required; the target; read as text)
  any other column is kept and can be used in the prompt template, e.g. {prompt} or {a} + {b}.

Human measures, either per TRIAL (several rows per item; aggregated like every other task):
  rt_s (seconds) or rt_ms (milliseconds), correct (0/1, true/false); either may be absent;
  participant (optional; read as text): who gave the trial, for the split-half reliability of
  human difficulty (cogdistill.stats.reliability); without it Task.trials.participant is null
or per ITEM (one row per item, already aggregated):
  human_rt_s (seconds), accuracy (0..1), n_trials
or none at all: the task still runs and reports accuracy and token cost only (no r).

CSV lines starting with '#' are comments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import polars as pl

from cogdistill.config.schema import TaskConfig
from cogdistill.registry import RT_MEASURES
from cogdistill.tasks.item_table import (
    ITEM_COLUMNS,
    TaskDataError,
    check_rt_units,
    empty_trials,
    item_table,
    trial_frame,
)

TRIAL_COLUMNS = ["rt_s", "rt_ms", "correct"]
TEXT_COLUMNS = ["item_id", "answer", "participant"]  # read as text, never inferred ('07' stays '07')
ITEM_LEVEL_COLUMNS = ["human_rt_s", "accuracy", "n_trials"]
_NUMERIC_BOOL = {"true": 1, "false": 0, "yes": 1, "no": 0, "1": 1, "0": 0, "1.0": 1, "0.0": 0}


def read_table(path: Path, text_columns: List[str] = ()) -> pl.DataFrame:
    """The file; `text_columns` (the file's names) are read as text, every other column inferred."""
    suffix = "".join(path.suffixes[-2:]).lower()
    try:
        if suffix.endswith((".parquet", ".pq")):
            return pl.read_parquet(path)
        sep = "\t" if suffix.endswith((".tsv", ".tsv.gz", ".tab")) else ","
        return pl.read_csv(path, separator=sep, comment_prefix="#", infer_schema_length=None,
                           schema_overrides={c: pl.Utf8 for c in text_columns})
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise TaskDataError(
            f"{path}: not a readable CSV/TSV/parquet file ({str(exc).strip().splitlines()[0]}); check that every row has as many fields "
            "as the header, that quotes are closed, and the separator (',' for .csv, a tab for .tsv)."
        ) from exc


def apply_mapping(raw: pl.DataFrame, mapping: Dict[str, str], path: Path) -> pl.DataFrame:
    """Rename the user's columns to ours; `mapping` is {our name: the file's column}."""
    if not mapping:
        return raw
    missing = {ours: theirs for ours, theirs in mapping.items() if theirs not in raw.columns}
    if missing:
        ours, theirs = next(iter(missing.items()))
        raise TaskDataError(
            f"{path}: `columns.{ours}: {theirs}` names no column of the file; found {raw.columns}: "
            "map it to one of those (or fix the file's header)."
        )
    clash = [ours for ours, theirs in mapping.items()
             if ours != theirs and ours in raw.columns and ours not in mapping.values()]
    if clash:
        raise TaskDataError(
            f"{path}: the file already has a column '{clash[0]}' and `columns` maps another column "
            "onto that name; rename or drop one of them."
        )
    return raw.rename({theirs: ours for ours, theirs in mapping.items() if ours != theirs})


def _as_01(df: pl.DataFrame, col: str, path: Path) -> pl.Expr:
    dtype = df[col].dtype
    if dtype == pl.Boolean:
        return pl.col(col).cast(pl.Int64)
    if dtype.is_numeric():
        values = set(df[col].drop_nulls().unique().to_list())
        if not values <= {0, 1}:
            raise TaskDataError(f"{path}: column '{col}' has {sorted(values - {0, 1})[0]!r}; expected 0/1.")
        return pl.col(col).cast(pl.Int64)
    text = df[col].cast(pl.Utf8).str.strip_chars().str.to_lowercase()
    bad = [v for v in text.drop_nulls().unique().to_list() if v not in _NUMERIC_BOOL]
    if bad:
        raise TaskDataError(f"{path}: column '{col}' has {bad[0]!r}; expected 0/1 or true/false.")
    return pl.col(col).cast(pl.Utf8).str.strip_chars().str.to_lowercase().replace_strict(
        _NUMERIC_BOOL, return_dtype=pl.Int64, default=None)


def _numeric(df: pl.DataFrame, col: str, path: Path) -> None:
    if not df[col].dtype.is_numeric():
        bad = df[col].cast(pl.Utf8)
        bad = bad.filter(bad.cast(pl.Float64, strict=False).is_null() & bad.is_not_null())
        raise TaskDataError((f"{path}: column '{col}' has non-numeric value {bad[0]!r}" if len(bad)
                             else f"{path}: column '{col}' is not numeric")
                            + "; it must hold plain numbers: fix or drop those rows (a missing value is an empty field).")


def _text_fields(df: pl.DataFrame, exclude: List[str]) -> List[str]:
    return [c for c in df.columns if c not in exclude]


def _trial_level(raw: pl.DataFrame, cfg: TaskConfig, path: Path) -> Tuple[pl.DataFrame, pl.DataFrame]:
    if "rt_s" in raw.columns and "rt_ms" in raw.columns:
        raise TaskDataError(f"{path}: has both 'rt_s' and 'rt_ms'; keep (or map) only one.")
    rt_col = "rt_s" if "rt_s" in raw.columns else "rt_ms" if "rt_ms" in raw.columns else None
    if rt_col:
        _numeric(raw, rt_col, path)
    elif cfg.difficulty.measure in RT_MEASURES:
        raise TaskDataError(
            f"{path}: no RT column (rt_s or rt_ms) for `difficulty.measure: {cfg.difficulty.measure}`; "
            "add one, map yours with `columns: {rt_ms: <your column>}` (or rt_s for seconds) in the task "
            "config, or use `difficulty.measure: error_rate`."
        )
    has_correct = "correct" in raw.columns
    if not has_correct and cfg.difficulty.measure == "error_rate":
        raise TaskDataError(f"{path}: no 'correct' column for `difficulty.measure: error_rate`; add one (0/1), "
                            "or map yours with `columns: {correct: <your column>}`.")
    answers = raw.group_by("item_id").agg(pl.col("answer").n_unique().alias("n"))
    if (answers["n"] > 1).any():
        bad = answers.filter(pl.col("n") > 1)["item_id"][0]
        raise TaskDataError(
            f"{path}: item {bad!r} has several values in 'answer'; 'answer' must be the item's correct "
            "answer (map participants' responses to another column)."
        )
    rt = (pl.col(rt_col).cast(pl.Float64) / (1000.0 if rt_col == "rt_ms" else 1.0)) if rt_col else pl.lit(None, pl.Float64)
    has_participant = "participant" in raw.columns
    trials = raw.select(
        "item_id", target="answer", rt_s=rt,
        correct=_as_01(raw, "correct", path) if has_correct else pl.lit(1, pl.Int64),
        participant=(pl.col("participant").cast(pl.Utf8).str.strip_chars() if has_participant
                     else pl.lit(None, pl.Utf8)),
    )
    table = item_table(trials, cfg.difficulty, path)
    frame = trial_frame(trials, cfg.difficulty)
    if not has_correct:
        table = table.with_columns(accuracy=pl.lit(None, pl.Float64))
        frame = frame.with_columns(correct=pl.lit(None, pl.Float64))  # keep: as if every trial were correct
    fields = _text_fields(raw, ["item_id", "answer", "participant", *TRIAL_COLUMNS, *ITEM_COLUMNS])
    if not fields:
        return table, frame
    # the prompt fields of an item: its first trial's values
    firsts = raw.group_by("item_id", maintain_order=True).agg(pl.col(c).first() for c in fields)
    return table.join(firsts, on="item_id", how="left"), frame


def _item_level(raw: pl.DataFrame, cfg: TaskConfig, path: Path) -> pl.DataFrame:
    if raw["item_id"].is_duplicated().any():
        bad = raw.filter(raw["item_id"].is_duplicated())["item_id"][0]
        raise TaskDataError(
            f"{path}: item {bad!r} appears on several rows, but the file has no trial columns "
            f"({', '.join(TRIAL_COLUMNS)}); an item-level file needs one row per item."
        )
    present = [c for c in ITEM_LEVEL_COLUMNS if c in raw.columns]
    for col in present:
        _numeric(raw, col, path)
    measure = cfg.difficulty.measure
    if present and measure in ("median_rt", "mean_log_rt"):
        raise TaskDataError(
            f"{path}: item-level data give one RT per item (human_rt_s); `difficulty.measure: {measure}` "
            "needs trial-level RTs. Use `difficulty.measure: mean_rt`."
        )
    if present and measure == "mean_rt" and "human_rt_s" not in raw.columns:
        raise TaskDataError(f"{path}: missing column(s) ['human_rt_s'] for `difficulty.measure: mean_rt`.")
    if present and measure == "error_rate" and "accuracy" not in raw.columns:
        raise TaskDataError(f"{path}: missing column(s) ['accuracy'] for `difficulty.measure: error_rate`.")
    f64 = pl.Float64
    rt = pl.col("human_rt_s").cast(f64) if "human_rt_s" in raw.columns else pl.lit(None, f64)
    acc = pl.col("accuracy").cast(f64) if "accuracy" in raw.columns else pl.lit(None, f64)
    n = pl.col("n_trials").cast(pl.UInt32) if "n_trials" in raw.columns else pl.lit(0, pl.UInt32)
    if "human_rt_s" in raw.columns and (raw["human_rt_s"].drop_nulls() <= 0).any():
        bad = raw.filter(pl.col("human_rt_s") <= 0)["item_id"][0]
        raise TaskDataError(f"{path}: column 'human_rt_s' of item {bad!r} is not positive; RTs must be positive "
                            "seconds: fix the value, or leave it empty for an item without RT data.")
    if "human_rt_s" in raw.columns and measure in RT_MEASURES:
        check_rt_units(raw["human_rt_s"].drop_nulls(), cfg.difficulty, path, what="items (human_rt_s)")
    if "accuracy" in raw.columns and ((raw["accuracy"].drop_nulls() < 0) | (raw["accuracy"].drop_nulls() > 1)).any():
        raise TaskDataError(f"{path}: column 'accuracy' must lie in 0..1 (a proportion, not a percentage).")
    difficulty = {"mean_rt": rt, "error_rate": 1.0 - acc}.get(measure, pl.lit(None, f64)) if present else pl.lit(None, f64)
    fields = _text_fields(raw, ["item_id", "answer", *ITEM_LEVEL_COLUMNS, *ITEM_COLUMNS])
    return raw.select(
        "item_id", target="answer", n_trials=n,
        n_rt_trials=n if "human_rt_s" in raw.columns else pl.lit(0, pl.UInt32),
        accuracy=acc, rt_mean=rt, rt_median=pl.lit(None, f64), log_rt_mean=pl.lit(None, f64),
        human_difficulty=difficulty, *fields,
    )


def build_items(paths: Dict[str, Path], cfg: TaskConfig) -> Tuple[pl.DataFrame, pl.DataFrame]:
    if "items" not in paths:
        raise TaskDataError(f"task '{cfg.name}': a generic task reads `sources.items` (your CSV/parquet file).")
    path = paths["items"]
    mapping = dict(getattr(cfg, "columns", None) or {})
    raw = apply_mapping(read_table(path, [mapping.get(c, c) for c in TEXT_COLUMNS]), mapping, path)
    missing = [c for c in ("item_id", "answer") if c not in raw.columns]
    if missing:
        raise TaskDataError(
            f"{path}: missing column(s) {missing}; found {raw.columns}. Rename them in the file, or map "
            f"yours in the task config: `columns: {{{missing[0]}: <your column>}}`."
        )
    raw = raw.with_columns(pl.col("item_id").cast(pl.Utf8), pl.col("answer").cast(pl.Utf8).str.strip_chars())
    if raw["item_id"].null_count() or raw["answer"].null_count():
        col = "item_id" if raw["item_id"].null_count() else "answer"
        raise TaskDataError(f"{path}: column '{col}' has empty values; fill them in or drop those rows.")
    trial_cols = [c for c in TRIAL_COLUMNS if c in raw.columns]
    item_cols = [c for c in ITEM_LEVEL_COLUMNS if c in raw.columns]
    if trial_cols and item_cols:
        raise TaskDataError(
            f"{path}: has trial-level column(s) {trial_cols} and item-level column(s) {item_cols}; "
            "a file is either one row per trial or one row per item."
        )
    if trial_cols:
        table, trials = _trial_level(raw, cfg, path)
    else:  # one row per item (or no human data): no trials to split
        table, trials = _item_level(raw, cfg, path), empty_trials()
    return table.select(ITEM_COLUMNS + [c for c in table.columns if c not in ITEM_COLUMNS]).sort("item_id"), trials
