"""Odd-even split-half reliability of each cell's cost, Spearman-Brown corrected (report.json
`split_half`, asked for with build(extra=("split_half",)); off by default, so a default report's
bytes never change). One fixed split a reader can redo by hand, beside the noise ceiling's mean
over random splits: per item, log(1 + mean cost) over the even-numbered samples and over the odd
ones; r across items; 2r / (1 + r)."""

from __future__ import annotations

import math
from typing import List

import numpy as np
import polars as pl

from cogdistill.report.render import Section, fmt
from cogdistill.report.result import Analysis, records
from cogdistill.stats.correlation import pearson
from cogdistill.stats.reliability import MIN_ITEMS, spearman_brown

SCHEMA = {"model": pl.Utf8, "task": pl.Utf8, "n_items": pl.Int64, "r_half": pl.Float64, "reliability": pl.Float64,
          "note": pl.Utf8}


def odd_even(traces: pl.DataFrame) -> pl.DataFrame:
    """One row per model x task (traces: the censoring policy's); items need a sample in each half."""
    halves = (traces.with_columns(half=pl.col("sample_idx") % 2)
              .group_by("model", "task", "item_id", "half").agg(pl.col("cost").mean())
              .with_columns(pl.col("cost").log1p())
              .pivot(on="half", index=["model", "task", "item_id"], values="cost"))
    rows = []
    for (model, task), cell in sorted(traces.partition_by("model", "task", as_dict=True).items()):
        both = halves.filter((pl.col("model") == model) & (pl.col("task") == task))
        both = both.drop_nulls(["0", "1"]) if {"0", "1"} <= set(both.columns) else both.clear()
        r = pearson(both["0"].to_numpy(), both["1"].to_numpy())[0] if both.height >= MIN_ITEMS else math.nan
        note = None if both.height >= MIN_ITEMS else f"fewer than {MIN_ITEMS} items with a sample in each half"
        if note is None and not np.isfinite(r):
            note = "a half is constant across items"
        rows.append({"model": model, "task": task, "n_items": both.height, "r_half": r,
                     "reliability": spearman_brown(r) if np.isfinite(r) else math.nan, "note": note})
    return pl.DataFrame(rows, schema=SCHEMA)


def sections(report, compact: bool = False) -> List[Section]:
    return [Section(
        "Cost reliability, one odd-even split per cell (Spearman-Brown corrected)",
        ["model", "task", "items", "r between halves", "reliability", "note"],
        [[r["model"], r["task"], str(r["n_items"]), fmt(r["r_half"]), fmt(r["reliability"]), r["note"] or ""]
         for r in report.split_half.iter_rows(named=True)])]


ANALYSIS = Analysis(
    "split_half", ("kept_traces",), lambda kept_traces: odd_even(kept_traces), default=False,
    methods=(("split_half", "per cell: log(1 + mean cost) per item over even- and over odd-numbered samples, "
                            "Pearson r across the items with both, Spearman-Brown 2r / (1 + r)"),),
    to_json=lambda report: records(report.split_half), render=sections)
