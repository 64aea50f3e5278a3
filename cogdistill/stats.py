"""Alignment statistics: pure functions over arrays and polars frames.

The paper's measure is the Pearson r, across a task's items, between the log token cost of an
item (mean over its samples) and the human RT of that item. We take log(1 + cost) so an item
with zero reasoning tokens stays defined; for the tens to thousands of tokens models spend, the
difference from log(cost) is negligible.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import polars as pl


@dataclass(frozen=True)
class Alignment:
    task: str
    n_items: int
    r: float
    p: float
    rho: float
    rho_p: float
    r_ci_low: float
    r_ci_high: float
    accuracy: float  # mean correctness over all traces
    tokens_mean: float  # mean cost (tokens) per trace
    censored_traces: int
    censored_items: int  # items with at least one censored trace
    note: Optional[str] = None  # why r is undefined, when it is

    def as_dict(self) -> dict:
        return asdict(self)


def _correlate(test, x: Sequence[float], y: Sequence[float]) -> Tuple[float, float]:
    """(statistic, p) of a scipy correlation test; NaN when undefined (n < 3 or a constant side)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan
    res = test(x, y)
    return float(res.statistic), float(res.pvalue)


def pearson(x: Sequence[float], y: Sequence[float]) -> Tuple[float, float]:
    from scipy.stats import pearsonr  # scipy.stats costs ~1.5 s to import: only when used

    return _correlate(pearsonr, x, y)


def spearman(x: Sequence[float], y: Sequence[float]) -> Tuple[float, float]:
    from scipy.stats import spearmanr

    return _correlate(spearmanr, x, y)


def bootstrap_r_ci(x: Sequence[float], y: Sequence[float], *, n_boot: int = 2000, ci: float = 0.95,
                   seed: int = 0) -> Tuple[float, float]:
    """Percentile CI of Pearson r, resampling items with replacement (vectorised)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if n < 3 or n_boot < 1:
        return math.nan, math.nan
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    xs, ys = x[idx], y[idx]
    xs = xs - xs.mean(axis=1, keepdims=True)
    ys = ys - ys.mean(axis=1, keepdims=True)
    denom = np.sqrt((xs**2).sum(axis=1) * (ys**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rs = (xs * ys).sum(axis=1) / denom
    rs = rs[np.isfinite(rs)]  # resamples with a constant side have no r
    if rs.size == 0:
        return math.nan, math.nan
    alpha = (1 - ci) / 2
    low, high = np.quantile(rs, [alpha, 1 - alpha])
    return float(low), float(high)


def mean_over_samples(traces: pl.DataFrame, cost: str, keys=("item_id",)) -> pl.DataFrame:
    """One row per item (per `keys`): mean cost over samples, its log(1 + .), accuracy, censoring."""
    return traces.group_by(*keys).agg(
        pl.col(cost).cast(pl.Float64).mean().alias("cost_mean"),
        pl.col("correct").cast(pl.Float64).mean().alias("model_accuracy"),
        pl.col("censored").cast(pl.Int64).sum().alias("n_censored"),
        pl.len().alias("n_samples"),
    ).with_columns(log_cost=(pl.col("cost_mean") + 1).log())


def item_costs(traces: pl.DataFrame, items: pl.DataFrame, cost: str) -> pl.DataFrame:
    """One row per item: mean cost over samples, its log, correctness, censoring, human RT."""
    return (
        items.select("item_id", "human_difficulty", "accuracy", "n_trials")
        .rename({"accuracy": "human_accuracy"})
        .join(mean_over_samples(traces, cost), on="item_id", how="inner")
        .sort("item_id")
    )


def alignment(task: str, per_item: pl.DataFrame, traces: pl.DataFrame, cost: str, *,
              n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> Alignment:
    # Items without human data (e.g. ARC without the OSF file) still count for accuracy and cost.
    known = per_item.filter(pl.col("human_difficulty").is_not_null())
    x = known["human_difficulty"].to_numpy()
    y = known["log_cost"].to_numpy()
    r, p = pearson(x, y)
    rho, rho_p = spearman(x, y)
    low, high = bootstrap_r_ci(x, y, n_boot=n_boot, ci=ci, seed=seed)
    note = None
    if known.height == 0:
        note = "no human difficulty data for this task: accuracy and cost only"
    elif len(x) < 3:
        note = f"{len(x)} item(s): r needs at least 3"
    elif np.ptp(x) == 0:
        note = "every item has the same human difficulty: r is undefined"
    elif np.ptp(y) == 0:
        note = "every item cost the same number of tokens: r is undefined"
    return Alignment(
        task=task, n_items=per_item.height, r=r, p=p, rho=rho, rho_p=rho_p,
        r_ci_low=low, r_ci_high=high,
        accuracy=float(traces["correct"].cast(pl.Float64).mean()),
        tokens_mean=float(traces[cost].cast(pl.Float64).mean()),
        censored_traces=int(traces["censored"].sum()),
        censored_items=int((per_item["n_censored"] > 0).sum()),
        note=note,
    )


def fisher_mean(rs: Sequence[float]) -> float:
    """Mean of correlations through Fisher's z (NaNs ignored)."""
    vals = np.asarray([r for r in rs if np.isfinite(r)], float)
    if vals.size == 0:
        return math.nan
    return float(np.tanh(np.arctanh(np.clip(vals, -0.999999, 0.999999)).mean()))


def plain_mean(rs: Sequence[float]) -> float:
    vals = [r for r in rs if np.isfinite(r)]
    return float(np.mean(vals)) if vals else math.nan


def cross_task_r(per_task: Dict[str, pl.DataFrame]) -> float:
    """Across tasks: task-mean log cost vs task-mean human RT (needs 3 or more tasks whose
    difficulty is an RT in seconds; pass only those)."""
    if len(per_task) < 3:
        return math.nan
    x = [float(df["human_difficulty"].mean()) for df in per_task.values()]
    y = [float(df["log_cost"].mean()) for df in per_task.values()]
    return pearson(x, y)[0]
