"""Reasoning effort as a design factor: does alignment change with effort, or does effort only set
how long a model reasons? ("Effort as Ceiling, Not Dial", arXiv 2605.16938.)

The same model config runs at several effort levels; each level is a model of the study. Pure
functions over arrays and polars frames (the report composes them in cogdistill/report/effort.py):

  level order       none < budget=N (ascending N) < minimal < low < medium < high < other < default
  omnibus           z_cost ~ level * z_rt + (1 | item) against z_cost ~ level + z_rt + (1 | item),
                    both by maximum likelihood (lme4::lmer(REML = FALSE)): log cost and human
                    difficulty are z-scored within level, so each level's slope is about its r and
                    the interaction is "the r's differ"; a likelihood-ratio test (df k - 1) and
                    BF01 = exp((BIC_with - BIC_without) / 2) (Wagenmakers 2007, Psychon. Bull. Rev.
                    14:779), BIC counting parameters as lme4 (fixed effects + 2 variances)
  ceiling or dial   per item, delta = log cost at the highest level - at the lowest; r(delta,
                    human difficulty) > 0 (p < .05): the extra effort goes to harder items (a dial);
                    otherwise it scales every item alike (a ceiling); mean delta is that scaling
  manipulation      per level: did the level move the cost (mean, median), how often did budget
                    forcing cut the reasoning, how many traces were censored
  holm              Holm's step-down adjustment for the pairwise tests between levels

A number that cannot be computed is NaN with a `note`; degenerate input never raises.
"""

from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import polars as pl

from cogdistill.stats import correlation as stats

NAN = float("nan")
DEFAULT_LEVEL = "default"  # a models row without `effort`: the model's own default, no manipulation
_BUDGET = re.compile(r"^budget\s*=\s*(\d+)$")
_RANKS = {"none": 0, "minimal": 2, "low": 3, "medium": 4, "high": 5, DEFAULT_LEVEL: 7}
_BUDGET_RANK, _OTHER_RANK = 1, 6
MIN_MODEL_ITEMS = 5  # the mixed models: fewer shared items cannot separate item and residual variance
DIAL = "dial (effort goes to harder items)"
CEILING = "ceiling (effort scales all items alike)"
OMNIBUS_METHOD = ("z_cost ~ level * z_rt + (1 | item) vs z_cost ~ level + z_rt + (1 | item), ML "
                  "(lme4::lmer(REML = FALSE)); log(1 + cost) and human difficulty z-scored within level "
                  "(sample SD) over the items every level has; LR chi2 on k - 1 df; BF01 = exp((BIC_with - "
                  "BIC_without) / 2), parameters = fixed effects + item and residual variance")


# ---- levels ------------------------------------------------------------------------------------

def normalise_level(effort: Optional[str]) -> str:
    """The level name a models row's `effort` stands for: null is the model's default,
    `budget = 64` is `budget=64`, named levels are lower case."""
    if effort is None or not str(effort).strip():
        return DEFAULT_LEVEL
    text = str(effort).strip().lower()
    match = _BUDGET.match(text)
    return f"budget={int(match.group(1))}" if match else text


def budget_of(level: str) -> Optional[int]:
    """N of `budget=N`, else None."""
    match = _BUDGET.match(normalise_level(level))
    return int(match.group(1)) if match else None


def level_key(level: str) -> Tuple[int, int, str]:
    """Sort key: a level with less reasoning sorts first; unknown names sit after high, before default."""
    name = normalise_level(level)
    budget = budget_of(name)
    if budget is not None:
        return _BUDGET_RANK, budget, name
    return _RANKS.get(name, _OTHER_RANK), 0, name


def order_levels(levels: Sequence[str]) -> List[str]:
    return sorted({normalise_level(level) for level in levels}, key=level_key)


def is_known_level(level: str) -> bool:
    return level_key(level)[0] != _OTHER_RANK


# ---- multiplicity ------------------------------------------------------------------------------

def holm(pvalues: Sequence[Optional[float]]) -> List[float]:
    """Holm's step-down adjusted p-values over the defined ones; NaN stays NaN (as R's
    p.adjust(method = "holm"))."""
    p = np.array([NAN if v is None else float(v) for v in pvalues], float)
    out = np.full(p.shape, NAN)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size:
        order = ok[np.argsort(p[ok], kind="stable")]
        scaled = p[order] * (ok.size - np.arange(ok.size))
        out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out.tolist()


# ---- the mixed models --------------------------------------------------------------------------

def random_intercept_ml(y: np.ndarray, X: np.ndarray, groups: np.ndarray) -> Dict[str, Any]:
    """Maximum-likelihood fit of y = X beta + u_group + e, u ~ N(0, tau2), e ~ N(0, sigma2).

    Profiled over gamma = tau2 / sigma2: within a group of m rows V = I + gamma 11', so
    V^(-1/2) subtracts (1 - 1/sqrt(1 + m gamma)) times the group mean and log|V| = log(1 + m gamma);
    beta and sigma2 then come from least squares on the whitened rows. One parameter: a grid
    (the boundary gamma = 0 included) then Brent's method around its best point."""
    from scipy.optimize import minimize_scalar

    _, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    n = y.size

    def deviance(theta: float) -> Tuple[float, np.ndarray, float]:
        gamma = theta * theta
        shrink = (1 - 1 / np.sqrt(1 + sizes * gamma))[inverse]
        y_mean = np.bincount(inverse, y) / sizes
        x_mean = np.stack([np.bincount(inverse, col) for col in X.T], axis=1) / sizes[:, None]
        yw, Xw = y - shrink * y_mean[inverse], X - shrink[:, None] * x_mean[inverse]
        beta, *_ = np.linalg.lstsq(Xw, yw, rcond=None)
        rss = float(((yw - Xw @ beta) ** 2).sum())
        dev = n * math.log(2 * math.pi * rss / n) + n + float(np.log1p(sizes * gamma).sum())
        return dev, beta, rss / n

    grid = np.concatenate([[0.0], np.logspace(-3, 2, 41)])
    devs = [deviance(t)[0] for t in grid]
    best = int(np.argmin(devs))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
    theta = grid[best]
    if hi > lo:
        res = minimize_scalar(lambda t: deviance(t)[0], bounds=(lo, hi), method="bounded",
                              options={"xatol": 1e-12, "maxiter": 500})
        if res.fun < devs[best]:
            theta = float(res.x)
    dev, beta, sigma2 = deviance(theta)
    return {"deviance": dev, "loglik": -dev / 2, "beta": beta, "sigma2": sigma2, "tau2": theta * theta * sigma2,
            "n_params": X.shape[1] + 2, "n_obs": n, "n_groups": sizes.size,
            "bic": dev + (X.shape[1] + 2) * math.log(n)}


def _zscore(column: str) -> pl.Expr:
    value = pl.col(column)
    return (value - value.mean().over("level")) / value.std().over("level")


def level_frame(rows: pl.DataFrame, levels: Sequence[str]) -> Tuple[pl.DataFrame, Optional[str]]:
    """The rows the mixed models read (item_id, level, log_cost, human_difficulty): the items with
    human data and a complete cost at every level, z-scored within level; or why there are none."""
    usable = rows.filter(pl.col("level").is_in(list(levels)) & pl.col("log_cost").is_not_null()
                         & pl.col("human_difficulty").is_not_null()
                         & pl.col("log_cost").is_finite() & pl.col("human_difficulty").is_finite())
    shared = usable.group_by("item_id").agg(pl.col("level").n_unique().alias("k")).filter(pl.col("k") == len(levels))
    frame = usable.join(shared.select("item_id"), on="item_id").with_columns(
        z_cost=_zscore("log_cost"), z_rt=_zscore("human_difficulty")).sort("level", "item_id")
    n_items = shared.height
    if n_items < MIN_MODEL_ITEMS:
        return frame, f"{n_items} item(s) with human data and a complete cost at every level: needs {MIN_MODEL_ITEMS}"
    if not (frame["z_cost"].is_finite().all() and frame["z_rt"].is_finite().all()):
        return frame, "the cost (or human difficulty) is constant at some level: nothing to z-score"
    return frame, None


def _designs(frame: pl.DataFrame, levels: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
    """Treatment coding, the first (lowest) level the reference: without and with level x z_rt."""
    z = frame["z_rt"].to_numpy()
    dummies = [(frame["level"] == level).cast(pl.Float64).to_numpy() for level in levels[1:]]
    without = np.column_stack([np.ones(frame.height), *dummies, z])
    return without, np.column_stack([without, *[d * z for d in dummies]])


def level_interaction(rows: pl.DataFrame, levels: Sequence[str]) -> Dict[str, Any]:
    """The omnibus test and BF01 for "r does not change across levels" (module docstring).
    rows: item_id, level, log_cost, human_difficulty for one config x task."""
    from scipy.stats import chi2

    levels = list(levels)
    out: Dict[str, Any] = {"method": OMNIBUS_METHOD, "levels": levels, "n_items": 0, "n_obs": 0,
                           "loglik_without": NAN, "loglik_with": NAN, "bic_without": NAN, "bic_with": NAN,
                           "n_params_without": NAN, "n_params_with": NAN, "chi2": NAN, "df": len(levels) - 1,
                           "p": NAN, "bf01": NAN, "slopes": {}, "var_item": NAN, "var_residual": NAN, "note": None}
    if len(levels) < 2:
        out["note"] = "fewer than 2 levels: nothing to compare"
        return out
    frame, note = level_frame(rows, levels)
    out.update(n_items=frame["item_id"].n_unique() if frame.height else 0, n_obs=frame.height)
    if note:
        out["note"] = note
        return out
    y, groups = frame["z_cost"].to_numpy(), frame["item_id"].to_numpy()
    X0, X1 = _designs(frame, levels)
    without, with_ = random_intercept_ml(y, X0, groups), random_intercept_ml(y, X1, groups)
    lr = max(with_["loglik"] - without["loglik"], 0.0) * 2  # nested: a negative LR is optimiser noise
    base = with_["beta"][len(levels)]  # the reference level's z_rt slope
    slopes = {levels[0]: float(base), **{level: float(base + b) for level, b in
                                         zip(levels[1:], with_["beta"][len(levels) + 1:])}}
    out.update(loglik_without=without["loglik"], loglik_with=with_["loglik"], bic_without=without["bic"],
               bic_with=with_["bic"], n_params_without=without["n_params"], n_params_with=with_["n_params"],
               chi2=lr, p=float(chi2.sf(lr, len(levels) - 1)),
               bf01=_exp_half(with_["bic"] - without["bic"]), slopes=slopes,
               var_item=with_["tau2"], var_residual=with_["sigma2"])
    return out


def _exp_half(x: float) -> float:
    return math.exp(min(x / 2, 700.0))  # beyond e^700 a float overflows; that BF is "overwhelming" anyway


# ---- ceiling or dial ---------------------------------------------------------------------------

def ceiling_or_dial(delta: np.ndarray, difficulty: np.ndarray, *, low: str, high: str, n_boot: int = 2000,
                    ci: float = 0.95, seed: int = 0, alpha: float = 0.05) -> Dict[str, Any]:
    """Per item delta = log cost at `high` - at `low`: r(delta, human difficulty) with its bootstrap
    CI and p, the verdict, and the mean delta (the overall scaling, exp(mean) as a ratio)."""
    from scipy.stats import t as t_dist

    delta, difficulty = np.asarray(delta, float), np.asarray(difficulty, float)
    n = delta.size
    out: Dict[str, Any] = {"low": low, "high": high, "n_items": int(n), "r": NAN, "p": NAN, "ci_low": NAN,
                           "ci_high": NAN, "mean_delta": NAN, "mean_delta_ci_low": NAN, "mean_delta_ci_high": NAN,
                           "ratio": NAN, "verdict": None, "note": None}
    if n:
        out["mean_delta"] = float(delta.mean())
        out["ratio"] = math.exp(out["mean_delta"])
    if n >= 2 and delta.std(ddof=1) > 0:
        half = float(t_dist.ppf(0.5 + ci / 2, n - 1)) * float(delta.std(ddof=1)) / math.sqrt(n)
        out.update(mean_delta_ci_low=out["mean_delta"] - half, mean_delta_ci_high=out["mean_delta"] + half)
    r, p = stats.pearson(difficulty, delta)
    if not math.isfinite(r):
        out["note"] = (f"{n} item(s) with a cost at both levels and human data: r needs 3 that vary" if n < 3
                       else "delta or human difficulty is constant over the items: r is undefined")
        return out
    low_ci, high_ci, ci_note = stats.bootstrap_r_ci_checked(difficulty, delta, n_boot=n_boot, ci=ci, seed=seed)
    out.update(r=r, p=p, ci_low=low_ci, ci_high=high_ci, note=f"no CI: {ci_note}" if ci_note else None,
               verdict=DIAL if r > 0 and p < alpha else CEILING)
    return out


# ---- manipulation check ------------------------------------------------------------------------

def manipulation(traces: pl.DataFrame) -> Dict[str, Any]:
    """What one level did to the cost, over all its traces (censored ones count at their cut: the
    check is how long the model reasoned, not an item's complete cost). budget_hit_fraction is
    NaN when no trace carries a budget (budget_hit null throughout: no budget forcing)."""
    cost = traces["cost"].cast(pl.Float64).drop_nulls() if traces.height else pl.Series([], dtype=pl.Float64)
    hit = traces["budget_hit"] if "budget_hit" in traces.columns else pl.Series([None] * traces.height, dtype=pl.Boolean)
    censored = traces["censored"].fill_null(False) if "censored" in traces.columns else pl.Series([], dtype=pl.Boolean)
    sources = (sorted(traces["cost_source"].drop_nulls().unique().to_list())
               if "cost_source" in traces.columns else [])
    n = traces.height
    return {"n_traces": n, "cost_mean": float(cost.mean()) if cost.len() else NAN,
            "cost_median": float(cost.median()) if cost.len() else NAN,
            "budget_hit_fraction": float(hit.fill_null(False).sum()) / n if n and hit.null_count() < n else NAN,
            "censored_fraction": float(censored.sum()) / n if n else NAN,
            "cost_source": ", ".join(sources) or None}
