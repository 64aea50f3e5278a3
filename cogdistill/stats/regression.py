"""Regressions the report reads: a least-squares line, the log-log slope of cost on human RT
(elasticity), and the log-cost premium of a wrong answer with item and model effects held fixed."""

from __future__ import annotations

import math
from typing import Any, Dict

import numpy as np
import polars as pl

NAN = float("nan")


def line(x: np.ndarray, y: np.ndarray) -> Dict[str, float]:
    """Least-squares y = intercept + slope x: slope, intercept, r2 and the slope's p (scipy's linregress).
    The caller checks that x varies (3 points or more)."""
    from scipy.stats import linregress

    res = linregress(x, y)
    return {"slope": float(res.slope), "intercept": float(res.intercept), "r2": float(res.rvalue**2),
            "p": float(res.pvalue)}


def elasticity(rt: np.ndarray, log_cost: np.ndarray) -> Dict[str, Any]:
    """Slope of log cost on log human RT over the items whose log cost is finite (1 = proportional),
    its SE and r2; NaN with a note when fewer than 3 items or either side is constant. rt > 0."""
    from scipy.stats import linregress

    x, y = np.log(rt), log_cost
    defined = np.isfinite(y)
    x, y = x[defined], y[defined]
    note = (f"{len(x)} item(s) with a complete cost: a slope needs 3" if len(x) < 3
            else "human RT is constant over the items" if np.ptp(x) == 0
            else "the cost is constant over the items" if np.ptp(y) == 0 else None)
    fit = linregress(x, y) if note is None else None
    return {"n": len(x), "slope": fit.slope if fit else NAN, "slope_se": fit.stderr if fit else NAN,
            "r2": fit.rvalue**2 if fit else NAN, "note": note}


def wrong_premium(frame: pl.DataFrame, max_iter: int = 50, tol: float = 1e-10) -> Dict[str, Any]:
    """y = item effect + model effect + beta * w over the rows of `frame` (columns model, item_id,
    y = log(1 + cost), w = 1.0 for a wrong answer): beta, its SE and d = beta / residual SD (NaN with a
    note when undefined). Fitted by Frisch-Waugh-Lovell: y and w are demeaned by item and by model
    alternately until stable (one pass suffices for a balanced design), then beta = <w, y> / <w, w>."""
    n_wrong = int(frame["w"].sum())
    out = {"beta": NAN, "se": NAN, "d": NAN, "note": None}
    if not frame["y"].is_finite().all():
        out["note"] = "a NaN or infinite cost: no fit"
        return out
    if n_wrong == 0 or n_wrong == frame.height:
        out["note"] = "no wrong trace" if n_wrong == 0 else "no right trace"
        return out
    n_items, n_models = frame["item_id"].n_unique(), frame["model"].n_unique()
    for _ in range(max_iter):
        before = frame.select("y", "w")
        for group in ("item_id", "model"):
            frame = frame.with_columns(pl.col("y", "w") - pl.col("y", "w").mean().over(group))
        change = float((frame.select("y", "w") - before).select(pl.all().abs().max()).max_horizontal()[0])
        if change < tol:
            break
    y, w = frame["y"].to_numpy(), frame["w"].to_numpy()
    ww = float(w @ w)
    dof = frame.height - 1 - n_items - n_models + 1
    if ww > 1e-12 and dof > 0:
        beta = float(w @ y) / ww
        sigma2 = float(((y - beta * w) ** 2).sum()) / dof
        out.update(beta=beta, se=math.sqrt(sigma2 / ww), d=beta / math.sqrt(sigma2) if sigma2 > 0 else NAN)
    else:
        out["note"] = ("wrongness is explained by the item and model effects (every item all wrong or all "
                       "right for each model): no within variation" if ww <= 1e-12 else "no residual degrees of freedom")
    return out
