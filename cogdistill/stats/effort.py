"""Reasoning effort as a design factor: does alignment change with effort, or does effort only set
how long a model reasons? ("Effort as Ceiling, Not Dial", arXiv 2605.16938.)

The same model config runs at several effort levels; each level is a model of the study. Pure
functions over arrays and polars frames (the report composes them in cogdistill/report/effort.py):

  level order       none < budget=N (ascending N) < minimal < low < medium < high < other < default
  omnibus           do the levels' r(log cost, human difficulty) differ? Steiger's (1980) test of
                    equal dependent correlations on the items every level has (Fisher z, their
                    covariance from the levels' intercorrelation): chi2 on k - 1 df, right-sized for any
                    shared r; BF01 = exp((df log n_items - chi2) / 2) (BIC, Wagenmakers 2007). The
                    mixed model z_cost ~ level * z_rt + (1 | item) (ML, stats.mixed) describes the
                    per-level slopes; it is not the test (z-scoring within level hides each r's
                    sampling variance, so its LR test was conservative as r grew and its BIC BF
                    leaned toward "no change")
  ceiling or dial   per item, delta = log cost at the highest level - at the lowest; r(delta, human
                    difficulty) with p, BF01 and a verdict of four: dial (r > 0, p < .05), reversed
                    (r < 0, p < .05), ceiling (BF01 >= 3: evidence of no relation), undecided (neither);
                    mean delta is the overall scaling
  manipulation      per level: did the level move the cost (mean, median), how often did budget
                    forcing cut the reasoning, how many traces were censored
  holm              Holm's step-down adjustment (the report's families: docs, multiplicity)

A number that cannot be computed is NaN with a `note`; degenerate input never raises.
"""

from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import polars as pl

from cogdistill.stats import correlation as stats
from cogdistill.stats.fisher import R_CLIP, fisher_z

NAN = float("nan")
DEFAULT_LEVEL = "default"  # a models row without `effort`: the model's own default, no manipulation
_BUDGET = re.compile(r"^budget\s*=\s*(\d+)$")
_RANKS = {"none": 0, "minimal": 2, "low": 3, "medium": 4, "high": 5, DEFAULT_LEVEL: 7}
_BUDGET_RANK, _OTHER_RANK = 1, 6
MIN_MODEL_ITEMS = 5  # the mixed models: fewer shared items cannot separate item and residual variance
DIAL = "dial (effort goes to harder items)"
REVERSED = "reversed (effort goes to easier items)"
CEILING = "ceiling (effort scales all items alike)"
UNDECIDED = "undecided (the data cannot tell)"
BF_THRESHOLD = 3.0  # BF01 at which "no relation" counts as evidence (Jeffreys' "moderate")
OMNIBUS_METHOD = ("equality of k dependent correlations r(log(1 + cost) at a level, human difficulty) over the "
                  "items every level has (Steiger 1980, pooled): Wald chi2 of Fisher-z differences on k - 1 df; "
                  "BF01 = exp((df log n_items - chi2) / 2) (BIC, unit-information prior); slopes: z_cost ~ "
                  "level * z_rt + (1 | item), ML, a description")


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


# ---- does r change with effort? -------------------------------------------------------------------

def equal_r_test(costs: np.ndarray, difficulty: np.ndarray) -> Dict[str, Any]:
    """H0: r(cost_1, d) = ... = r(cost_k, d) for k costs measured on the same n items, each correlated
    with one human difficulty d (Steiger 1980, Psychol. Bull. 87:245, equality of dependent
    correlations with a common variable, in the pooled form his simulations favour).

    z_j = atanh r_j. Under H0 every r_j equals rho (estimated by the mean r_j), and the z_j have
    covariance Phi / (n - 3) with Phi_jh = psi_jh / (1 - rho^2)^2,
        psi_jh = r_jh (1 - 2 rho^2) - rho^2 (1 - 2 rho^2 - r_jh^2) / 2,
    r_jh the correlation of the two levels' costs over the items (Pearson & Filon 1898). The Wald
    statistic of the k - 1 differences from the first level is chi2 on k - 1 df. Unlike a mixed model
    on z-scored costs, it carries the sampling variance of each r, (1 - rho^2)^2 / n, so its size is
    right for any shared rho (docs: The comparison report, reasoning effort)."""
    from scipy.stats import chi2

    costs, difficulty = np.asarray(costs, float), np.asarray(difficulty, float)
    n, k = costs.shape
    out: Dict[str, Any] = {"chi2": NAN, "df": k - 1, "p": NAN, "bf01": NAN, "rho_pooled": NAN, "n_items": int(n),
                           "r": [NAN] * k, "note": None}
    if k < 2:
        out["note"] = "fewer than 2 levels: nothing to compare"
        return out
    if n < MIN_MODEL_ITEMS:
        out["note"] = f"{n} item(s) with human data and a complete cost at every level: needs {MIN_MODEL_ITEMS}"
        return out
    if not np.all(np.column_stack([costs, difficulty]).std(axis=0) > 0):
        out["note"] = "the cost (or human difficulty) is constant at some level: r is undefined"
        return out
    R = np.corrcoef(np.column_stack([costs, difficulty]), rowvar=False)
    r = np.clip(R[:k, k], -R_CLIP, R_CLIP)  # clipped before the pooled r too, as z is
    z = fisher_z(r)
    rho = float(r.mean())  # Steiger's pooled r: the plain mean of the r's
    rjh = R[:k, :k]
    phi = (rjh * (1 - 2 * rho**2) - 0.5 * rho**2 * (1 - 2 * rho**2 - rjh**2)) / (1 - rho**2) ** 2
    np.fill_diagonal(phi, 1.0)
    D = np.hstack([-np.ones((k - 1, 1)), np.eye(k - 1)])
    d, S = D @ z, D @ phi @ D.T
    out.update(r=r.tolist(), rho_pooled=rho)
    try:
        stat = float(d @ np.linalg.solve(S, d)) * (n - 3)
    except np.linalg.LinAlgError:
        stat = NAN
    if not (math.isfinite(stat) and stat >= 0 and np.linalg.eigvalsh(S).min() > 1e-12):
        out["note"] = "two levels' costs are (nearly) perfectly correlated: the test is undefined"
        return out
    out.update(chi2=stat, p=float(chi2.sf(stat, k - 1)), bf01=bic_bf01(stat, k - 1, n))
    return out


def bic_bf01(chi2_stat: float, df: int, n: int) -> float:
    """BF01 from a chi2 test by the BIC (unit-information prior; Raftery 1995, Sociol. Methodol. 25;
    Wagenmakers 2007): exp((df log n - chi2) / 2), n the number of independent units (items, not
    item x level rows: the rows of one item are not independent information)."""
    return _exp_half(df * math.log(n) - chi2_stat)


def level_frame(rows: pl.DataFrame, levels: Sequence[str]) -> Tuple[pl.DataFrame, Optional[str]]:
    """The items with human data and a complete cost at every level, wide: item_id, human_difficulty
    and one log-cost column per level; or why there are too few (naming a level with none)."""
    usable = rows.filter(pl.col("level").is_in(list(levels)) & pl.col("log_cost").is_not_null()
                         & pl.col("human_difficulty").is_not_null()
                         & pl.col("log_cost").is_finite() & pl.col("human_difficulty").is_finite())
    empty = [level for level in levels if usable.filter(pl.col("level") == level).height == 0]
    if usable.height:
        wide = usable.select("item_id", "level", "log_cost", "human_difficulty").pivot(
            on="level", index=["item_id", "human_difficulty"], values="log_cost", aggregate_function="first")
    else:
        wide = pl.DataFrame(schema={"item_id": pl.Utf8, "human_difficulty": pl.Float64})
    wide = wide.with_columns([pl.lit(None, pl.Float64).alias(lv) for lv in levels if lv not in wide.columns])
    wide = wide.drop_nulls(list(levels)).sort("item_id")
    if empty:
        return wide, (f"level(s) {empty} have no item with a complete (uncensored) cost and human data: "
                      "the levels cannot be compared on shared items")
    if wide.height < MIN_MODEL_ITEMS:
        return wide, (f"{wide.height} item(s) with human data and a complete cost at every level: needs "
                      f"{MIN_MODEL_ITEMS}")
    return wide, None


def level_slopes(wide: pl.DataFrame, levels: Sequence[str]) -> Dict[str, Any]:
    """A description, not the test: z_cost ~ level * z_rt + (1 | item) by ML (lme4::lmer(REML = FALSE)),
    cost and difficulty z-scored within level (sample SD), so each level's slope is about its r.
    Fitted by stats.mixed, whose optimum is checked; the test is equal_r_test."""
    from cogdistill.stats import mixed

    levels = list(levels)
    n = wide.height
    z_rt = _z(wide["human_difficulty"].to_numpy())
    y = np.concatenate([_z(wide[level].to_numpy()) for level in levels])
    x = np.tile(z_rt, len(levels))
    dummies = [np.repeat(np.eye(len(levels))[j], n) for j in range(1, len(levels))]
    X = np.column_stack([np.ones(y.size), *dummies, x, *[d * x for d in dummies]])
    fit = mixed.fit(y, X, [mixed.Term("item", np.tile(np.arange(n), len(levels)), np.ones((y.size, 1)))], reml=False)
    beta = fit["beta"]
    base = float(beta[len(levels)])
    slopes = {levels[0]: base, **{lvl: base + float(b) for lvl, b in zip(levels[1:], beta[len(levels) + 1:])}}
    return {"slopes": slopes, "loglik": -fit["deviance"] / 2, "var_item": float(mixed.term_covariances(fit)["item"][0, 0]),
            "var_residual": float(fit["sigma2"]), "converged": fit["converged"]}


def _z(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / values.std(ddof=1)


def level_interaction(rows: pl.DataFrame, levels: Sequence[str]) -> Dict[str, Any]:
    """The omnibus test and BF01 for "r does not change across levels" (equal_r_test), with the
    per-level slopes of the mixed model as a description. rows: item_id, level, log_cost,
    human_difficulty for one config x task."""
    levels = list(levels)
    out: Dict[str, Any] = {"method": OMNIBUS_METHOD, "levels": levels, "n_items": 0, "n_obs": 0, "chi2": NAN,
                           "df": len(levels) - 1, "p": NAN, "p_holm": NAN, "bf01": NAN, "rho_pooled": NAN,
                           "slopes": {}, "loglik": NAN, "var_item": NAN, "var_residual": NAN, "converged": None,
                           "note": None}
    if len(levels) < 2:
        out["note"] = "fewer than 2 levels: nothing to compare"
        return out
    wide, note = level_frame(rows, levels)
    out.update(n_items=wide.height, n_obs=wide.height * len(levels))
    if note:
        out["note"] = note
        return out
    test = equal_r_test(wide.select(levels).to_numpy(), wide["human_difficulty"].to_numpy())
    out.update(chi2=test["chi2"], p=test["p"], p_holm=test["p"], bf01=test["bf01"], rho_pooled=test["rho_pooled"],
               note=test["note"])
    if test["note"] is None:
        out.update(level_slopes(wide, levels))
    return out


def _exp_half(x: float) -> float:
    return math.exp(min(x / 2, 700.0))  # beyond e^700 a float overflows; that BF is "overwhelming" anyway


# ---- ceiling or dial ---------------------------------------------------------------------------

def verdict(r: float, p: float, bf01: float, *, alpha: float = 0.05,
            bf_threshold: float = BF_THRESHOLD) -> Tuple[Optional[str], str]:
    """The verdict on r(delta, difficulty) and the evidence it rests on. p: adjusted for the family
    a reader scans (the report passes Holm's p over every ceiling-or-dial test it holds).
        dial       r > 0 and p < alpha: the extra effort goes to the harder items
        reversed   r < 0 and p < alpha: it goes to the easier ones
        ceiling    BF01 >= bf_threshold: evidence that delta does not depend on difficulty
        undecided  otherwise: the data cannot tell (too few items, or evidence too weak either way)"""
    if not (math.isfinite(r) and math.isfinite(p)):
        return None, "r undefined"
    if p < alpha:
        return (DIAL if r > 0 else REVERSED), f"r = {r:.3f}, p = {p:.3g} < {alpha:g}"
    if math.isfinite(bf01) and bf01 >= bf_threshold:
        return CEILING, f"p = {p:.3g} and BF01 = {bf01:.3g} >= {bf_threshold:g}: evidence that r is 0"
    return UNDECIDED, (f"p = {p:.3g} >= {alpha:g} and BF01 = {bf01:.3g} < {bf_threshold:g}: neither a relation "
                       "nor its absence is supported")


def ceiling_or_dial(delta: np.ndarray, difficulty: np.ndarray, *, low: str, high: str, n_boot: int = 2000,
                    ci: float = 0.95, seed: int = 0, alpha: float = 0.05) -> Dict[str, Any]:
    """Per item delta = log cost at `high` - at `low`: r(delta, human difficulty) with its bootstrap
    CI, p and BF01 (Ly et al. 2016, the report's Bayes factor for r), the verdict (`verdict`; here on
    the unadjusted p: the report re-decides it on Holm's p over its family), and the mean delta
    (the overall scaling, exp(mean) as a ratio)."""
    from scipy.stats import t as t_dist

    delta, difficulty = np.asarray(delta, float), np.asarray(difficulty, float)
    n = delta.size
    out: Dict[str, Any] = {"low": low, "high": high, "n_items": int(n), "r": NAN, "p": NAN, "p_holm": NAN,
                           "bf01": NAN, "ci_low": NAN, "ci_high": NAN, "mean_delta": NAN, "mean_delta_ci_low": NAN,
                           "mean_delta_ci_high": NAN, "ratio": NAN, "verdict": None, "verdict_reason": None,
                           "note": None}
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
        out["verdict_reason"] = out["note"]
        return out
    bf10 = stats.bayes_factor_r(r, n)
    low_ci, high_ci, ci_note = stats.bootstrap_r_ci_checked(difficulty, delta, n_boot=n_boot, ci=ci, seed=seed)
    out.update(r=r, p=p, p_holm=p, bf01=1 / bf10 if bf10 > 0 else math.inf, ci_low=low_ci, ci_high=high_ci,
               note=f"no CI: {ci_note}" if ci_note else None)
    out["verdict"], out["verdict_reason"] = verdict(r, p, out["bf01"], alpha=alpha)
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
