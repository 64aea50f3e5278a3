"""Alignment statistics: pure functions over arrays and polars frames.

The paper's measure is the Pearson r, across a task's items, between the log token cost of an
item (mean over its samples) and the human RT of that item. We take log(1 + cost) so an item
with zero reasoning tokens stays defined; for the tens to thousands of tokens models spend, the
difference from log(cost) is negligible.

Censored traces (cut by max_tokens) have a cost that is only a lower bound. One policy decides
what they mean, here and in the report (`analysis.censored`):
  drop    an item's cost is the mean over its uncensored samples; an item with none leaves the
          cell (counted and listed in `dropped_items`);
  budget  censored samples count at the budget they hit (a sensitivity analysis).
Every number that cannot be computed is NaN with a one-line reason (`note`), never a value
computed from what happened to be left.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import polars as pl

# the Fisher-z means live in stats.fisher; named here too for this module's readers (report, tracking)
from cogdistill.stats.fisher import fisher_mean, weighted_fisher_mean  # noqa: F401

CENSORED_POLICIES = ("drop", "budget")
MIN_CI_ITEMS = 4  # below this a bootstrap over items is degenerate (3 items: CI [r, 1.0])
MAX_UNDEFINED_RESAMPLES = 0.01  # more resamples than this with a constant side: no CI


@dataclass(frozen=True)
class Alignment:
    task: str
    n_items: int  # items used for r: with human data and a defined cost
    r: float
    p: float
    rho: float
    rho_p: float
    r_ci_low: float
    r_ci_high: float
    accuracy: float  # mean correctness over all traces (censored ones included: they are answers too)
    tokens_mean: float  # mean cost per trace, over the traces the censoring policy keeps
    censored_traces: int
    censored_items: int  # items with at least one censored trace
    n_items_total: int = 0  # items the model ran
    n_items_no_human: int = 0  # items without human data (cost and accuracy only)
    n_items_dropped: int = 0  # items left out by the censoring policy (no uncensored sample)
    dropped_items: List[str] = field(default_factory=list)
    censored_policy: str = "drop"
    r_budget: float = math.nan  # r with censored costs counted at the budget (when any item was censored)
    p_budget: float = math.nan
    bf10: float = math.nan  # default Bayes factor for r (Ly et al. 2016, kappa = 1)
    detectable_r: float = math.nan  # smallest |r| with 80% power at alpha .05 for n_items
    note: Optional[str] = None  # why r is undefined, when it is
    ci_note: Optional[str] = None  # why the CI is undefined while r is defined

    def as_dict(self) -> dict:
        return asdict(self)


def is_constant(values: np.ndarray) -> bool:
    """No spread beyond floating-point noise (a mean of equal costs can differ in the last bit)."""
    values = np.asarray(values, float)
    return values.size == 0 or float(np.ptp(values)) <= 1e-9 * max(1.0, float(np.abs(values).max()))


def _defined(x: np.ndarray, y: np.ndarray) -> bool:
    """r is defined: 3+ pairs, all finite, neither side constant."""
    return len(x) >= 3 and bool(np.isfinite(x).all() and np.isfinite(y).all()) and not (
        is_constant(x) or is_constant(y))


def pearson(x: Sequence[float], y: Sequence[float]) -> Tuple[float, float]:
    """(r, two-sided p); NaN when undefined (n < 3, a constant side, NaN input). The arithmetic of
    scipy.stats.pearsonr (centred, max-scaled norms; p from the null beta(n/2 - 1, n/2 - 1) on
    [-1, 1]) without its per-call overhead (~1 ms, and a report makes ~900 calls); agreement to
    1e-12 is tested against pearsonr."""
    from scipy.special import betaincc  # not scipy.stats: its import costs ~1.5 s

    x, y = np.asarray(x, float), np.asarray(y, float)
    if not _defined(x, y):
        return math.nan, math.nan
    # pearsonr's operations in its order (axis=-1 reductions: a plain norm or dot sums differently), so
    # r is bit-identical: a cell's r feeds optimisers (role contrasts) that amplify the last bit
    xm, ym = x - np.mean(x, axis=-1, keepdims=True), y - np.mean(y, axis=-1, keepdims=True)
    xmax, ymax = np.max(np.abs(xm), axis=-1, keepdims=True), np.max(np.abs(ym), axis=-1, keepdims=True)
    normx = xmax * np.linalg.norm(xm / xmax, axis=-1, keepdims=True)
    normy = ymax * np.linalg.norm(ym / ymax, axis=-1, keepdims=True)
    r = float(np.clip(np.vecdot(xm / normx, ym / normy), -1.0, 1.0))
    ab = len(x) / 2 - 1
    return r, float(2 * betaincc(ab, ab, (abs(r) + 1) / 2))


def spearman(x: Sequence[float], y: Sequence[float]) -> Tuple[float, float]:
    """(rho, two-sided p) as scipy.stats.spearmanr: Pearson r of average ranks, p from Student's t
    with n - 2 degrees of freedom (tested against spearmanr)."""
    from scipy.special import stdtr

    x, y = np.asarray(x, float), np.asarray(y, float)
    if not _defined(x, y):
        return math.nan, math.nan
    # as spearmanr: corrcoef of the stacked rank columns (bit-identical); a numpy float, so |rho| = 1 gives t = inf
    rho = np.corrcoef(np.column_stack((_average_ranks(x), _average_ranks(y))), rowvar=False)[1, 0]
    dof = len(x) - 2
    with np.errstate(divide="ignore"):
        t = rho * np.sqrt(np.clip(dof / ((rho + 1.0) * (1.0 - rho)), 0, None))
    return float(rho), float(2 * stdtr(dof, -abs(t)))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """scipy.stats.rankdata(method='average'): ties share the mean of their ranks (1-based)."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    new = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(new) - 1
    starts = np.flatnonzero(np.r_[new, True])
    mean_rank = (starts[:-1] + starts[1:] + 1) / 2  # (first + last) / 2, 1-based
    ranks = np.empty(len(values))
    ranks[order] = mean_rank[group]
    return ranks


def bootstrap_r_ci(x: Sequence[float], y: Sequence[float], *, n_boot: int = 2000, ci: float = 0.95,
                   seed: int = 0) -> Tuple[float, float]:
    """Percentile CI of Pearson r, resampling items with replacement (vectorised)."""
    low, high, _ = bootstrap_r_ci_checked(x, y, n_boot=n_boot, ci=ci, seed=seed)
    return low, high


def bootstrap_r_ci_checked(x: Sequence[float], y: Sequence[float], *, n_boot: int = 2000, ci: float = 0.95,
                           seed: int = 0) -> Tuple[float, float, Optional[str]]:
    """(low, high, reason): the percentile CI, or NaNs and why there is none. Resamples with a
    constant side have no r; when more than 1% of them do, the remaining ones are not a sample
    of the statistic's distribution (they avoid exactly the items that matter), so no CI."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if n_boot < 1:
        return math.nan, math.nan, "no bootstrap resamples asked for (analysis.bootstrap=0)"
    if n < MIN_CI_ITEMS:
        return math.nan, math.nan, f"{n} item(s): a bootstrap CI needs at least {MIN_CI_ITEMS}"
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return math.nan, math.nan, "NaN or infinite input"
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    # A resample is a count per item: its sums are counts @ [x, y, x^2, y^2, xy] (one BLAS product
    # instead of gathering n_boot x n values); centring first keeps the differences exact enough.
    idx += np.arange(0, n_boot * n, n)[:, None]  # in place: one flat index per (resample, item)
    counts = np.bincount(idx.ravel(), minlength=n_boot * n)
    xc, yc = x - x.mean(), y - y.mean()
    sx, sy, sxx, syy, sxy = (counts.reshape(n_boot, n).astype(float) @ np.column_stack(
        [xc, yc, xc * xc, yc * yc, xc * yc])).T
    vx, vy, cxy = sxx - sx * sx / n, syy - sy * sy / n, sxy - sx * sy / n
    ok = (vx > 1e-10 * float(xc @ xc)) & (vy > 1e-10 * float(yc @ yc))  # a constant side, to rounding
    undefined = int((~ok).sum())
    if undefined > MAX_UNDEFINED_RESAMPLES * n_boot:
        return math.nan, math.nan, (f"bootstrap degenerate: {undefined} of {n_boot} resamples had a constant side "
                                    "(too few distinct values)")
    rs = np.clip(cxy[ok] / np.sqrt(vx[ok] * vy[ok]), -1.0, 1.0)
    alpha = (1 - ci) / 2
    low, high = np.quantile(rs, [alpha, 1 - alpha])
    if high - low <= 1e-9:
        return math.nan, math.nan, "bootstrap degenerate: every resample gave the same r"
    return float(low), float(high), None


def _check_policy(policy: str) -> None:
    if policy not in CENSORED_POLICIES:
        raise ValueError(f"censored policy {policy!r}: use one of {CENSORED_POLICIES}")


def censoring_filter(traces: pl.DataFrame, policy: str) -> pl.DataFrame:
    """The traces whose cost a policy uses: `drop` removes censored ones, `budget` keeps all."""
    _check_policy(policy)
    return traces.filter(~pl.col("censored").fill_null(False)) if policy == "drop" else traces


def mean_over_samples(traces: pl.DataFrame, cost: str, keys=("item_id",), censored: str = "budget") -> pl.DataFrame:
    """One row per item (per `keys`): mean cost over the samples the censoring policy keeps (null
    when it keeps none), its log(1 + .), accuracy over every sample, censoring counts."""
    _check_policy(censored)
    is_cens = pl.col("censored").fill_null(False)
    value = pl.col(cost).cast(pl.Float64)
    used = value.filter(~is_cens) if censored == "drop" else value
    return traces.group_by(*keys).agg(
        used.mean().alias("cost_mean"),
        pl.col("correct").cast(pl.Float64).mean().alias("model_accuracy"),
        is_cens.cast(pl.Int64).sum().alias("n_censored"),
        pl.len().alias("n_samples"),
        value.mean().alias("cost_mean_budget"),
    ).with_columns(log_cost=(pl.col("cost_mean") + 1).log(), log_cost_budget=(pl.col("cost_mean_budget") + 1).log())


def item_costs(traces: pl.DataFrame, items: pl.DataFrame, cost: str, censored: str = "drop") -> pl.DataFrame:
    """One row per item: mean cost over samples, its log, correctness, censoring, human RT."""
    return (
        items.select("item_id", "human_difficulty", "accuracy", "n_trials")
        .rename({"accuracy": "human_accuracy"})
        .join(mean_over_samples(traces, cost, censored=censored), on="item_id", how="inner")
        .sort("item_id")
    )


def _undefined_reason(n_known: int, x: np.ndarray, y: np.ndarray, n_dropped: int, n_total: int) -> Optional[str]:
    if n_total and n_dropped == n_total:
        return "every item was censored (cut by max_tokens): no complete cost; raise max_tokens"
    if n_known == 0:
        return "no human difficulty data for this task: accuracy and cost only"
    if not np.isfinite(y).all() or (y < 0).any():
        return "a NaN or negative cost: r is undefined until the traces are fixed"
    if not np.isfinite(x).all():
        return "a NaN human difficulty: r is undefined until the human data are fixed"
    if len(x) < 3:
        return f"{len(x)} item(s) with human data and a complete cost: r needs at least 3"
    if is_constant(x):
        return "every item has the same human difficulty: r is undefined"
    if is_constant(y):
        return "every item cost the same number of tokens: r is undefined"
    return None


def alignment(task: str, per_item: pl.DataFrame, traces: pl.DataFrame, cost: str, *,
              n_boot: int = 2000, ci: float = 0.95, seed: int = 0, censored: str = "drop",
              bootstrap: Callable[..., Tuple[float, float, Optional[str]]] = bootstrap_r_ci_checked) -> Alignment:
    """r and its companions for one model x task. `per_item` comes from item_costs/mean_over_samples
    with the same `censored` policy; items without human data count for accuracy and cost only.
    bootstrap: bootstrap_r_ci_checked's signature (the report defers it to batch the cells)."""
    has_cost = per_item.filter(pl.col("cost_mean").is_not_null())
    dropped = per_item.filter(pl.col("cost_mean").is_null())["item_id"].cast(pl.Utf8).sort().to_list()
    known = has_cost.filter(pl.col("human_difficulty").is_not_null())
    x = known["human_difficulty"].cast(pl.Float64).to_numpy()
    raw_cost = known["cost_mean"].to_numpy()
    y = np.log1p(np.where(raw_cost < 0, np.nan, raw_cost)) if raw_cost.size else raw_cost
    note = _undefined_reason(per_item.filter(pl.col("human_difficulty").is_not_null()).height, x, raw_cost,
                             len(dropped), per_item.height)
    r = p = rho = rho_p = low = high = bf10 = math.nan
    ci_note = None
    if note is None:
        r, p = pearson(x, y)
        rho, rho_p = spearman(x, y)
        low, high, ci_note = bootstrap(x, y, n_boot=n_boot, ci=ci, seed=seed)
        bf10 = bayes_factor_r(r, len(x))
    r_budget = p_budget = math.nan
    n_cens = int(traces["censored"].fill_null(False).sum())
    if n_cens and "cost_mean_budget" in per_item.columns:
        both = per_item.filter(pl.col("human_difficulty").is_not_null())
        r_budget, p_budget = pearson(both["human_difficulty"].cast(pl.Float64).to_numpy(),
                                     both["log_cost_budget"].to_numpy())
    used = censoring_filter(traces, censored)
    return Alignment(
        task=task, n_items=len(x),
        r=r, p=p, rho=rho, rho_p=rho_p, r_ci_low=low, r_ci_high=high,
        accuracy=float(traces["correct"].cast(pl.Float64).mean()) if traces.height else math.nan,
        tokens_mean=float(used[cost].cast(pl.Float64).mean()) if used.height else math.nan,
        censored_traces=n_cens,
        censored_items=int((per_item["n_censored"] > 0).sum()),
        n_items_total=per_item.height,
        n_items_no_human=int(per_item["human_difficulty"].is_null().sum()),
        n_items_dropped=len(dropped), dropped_items=dropped, censored_policy=censored,
        r_budget=r_budget, p_budget=p_budget, bf10=bf10,
        detectable_r=detectable_r(len(x)) if note is None else math.nan,
        note=note, ci_note=ci_note if note is None else "r is undefined",
    )


# ---- evidence: Bayes factors, power, multiplicity ------------------------------------------------

def bayes_factor_r(r: float, n: int, kappa: float = 1.0) -> float:
    """BF10 for H1: rho != 0 vs H0: rho = 0 given Pearson r over n pairs, with a stretched beta
    prior of width kappa on rho (Ly, Verhagen & Wagenmakers 2016, J. Math. Psychol. 72:19; the
    default of JASP and pingouin.bayesfactor_pearson). NaN when r is undefined or n < 3."""
    from scipy.special import betaln, gammaln, hyp2f1

    if not (math.isfinite(r) and n >= 3 and abs(r) < 1):
        return math.nan
    log_hyper = math.log(hyp2f1((n - 1) / 2, (n - 1) / 2, (n + 2 / kappa) / 2, r**2))
    log_bf = ((1 - 2 / kappa) * math.log(2) + 0.5 * math.log(math.pi) - betaln(1 / kappa, 1 / kappa)
              + gammaln((n + 2 / kappa - 1) / 2) - gammaln((n + 2 / kappa) / 2) + log_hyper)
    return float(math.exp(log_bf))


def power_r(rho: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided test of r = 0 over n items when the true correlation is rho: the
    critical r from the t distribution, then Fisher's z with its small-sample bias term (Cohen
    1988; the arithmetic of R's pwr::pwr.r.test and pingouin.power_corr)."""
    from scipy.stats import norm, t

    if n <= 3:
        return math.nan
    crit_t = t.ppf(1 - alpha / 2, n - 2)
    z_crit = math.atanh(math.sqrt(crit_t**2 / (crit_t**2 + n - 2)))
    z_rho = math.atanh(rho) + rho / (2 * (n - 1))
    return float(norm.cdf((z_rho - z_crit) * math.sqrt(n - 3)) + norm.cdf((-z_rho - z_crit) * math.sqrt(n - 3)))


@functools.lru_cache(maxsize=4096)  # a study has a few distinct item counts and many cells
def detectable_r(n: int, power: float = 0.8, alpha: float = 0.05) -> float:
    """Smallest |rho| that a two-sided test of r at `alpha` over n items detects with `power`."""
    from scipy.optimize import brentq

    if n <= 4 or power_r(0.999999, n, alpha) < power:
        return math.nan
    return float(brentq(lambda rho: power_r(rho, n, alpha) - power, 1e-9, 0.999999, xtol=1e-10))


def bh_qvalues(pvalues: Sequence[Optional[float]]) -> List[float]:
    """Benjamini-Hochberg adjusted p-values (q) over the defined p-values; NaN stays NaN
    (the same numbers as R's p.adjust(method = "BH"))."""
    p = np.array([math.nan if v is None else float(v) for v in pvalues], float)
    q = np.full(p.shape, math.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size:
        order = ok[np.argsort(p[ok])]
        m = ok.size
        adjusted = p[order] * m / np.arange(1, m + 1)
        q[order] = np.minimum(1.0, np.minimum.accumulate(adjusted[::-1])[::-1])
        q[ok] = np.maximum(q[ok], p[ok])  # q >= p exactly (p * m / m can round below p)
    return q.tolist()


def plain_mean(rs: Sequence[float]) -> float:
    vals = [r for r in rs if r is not None and np.isfinite(r)]
    return float(np.mean(vals)) if vals else math.nan


def pearson_matrix(data: np.ndarray) -> np.ndarray:
    """Pearson r between every two columns of data (rows: units); 1 on the diagonal."""
    n = data.shape[1]
    mat = np.full((n, n), math.nan)
    for i in range(n):
        for j in range(i, n):
            mat[i, j] = mat[j, i] = 1.0 if i == j else pearson(data[:, i], data[:, j])[0]
    return mat


def cross_task_r(per_task: Dict[str, pl.DataFrame]) -> float:
    """Across tasks: task-mean log cost vs task-mean human RT (needs 3 or more tasks whose
    difficulty is an RT in seconds; pass only those)."""
    usable = {}
    for name, df in per_task.items():
        df = df.filter(pl.col("human_difficulty").is_not_null() & pl.col("log_cost").is_not_null())
        if df.height:
            usable[name] = df
    if len(usable) < 3:
        return math.nan
    x = [float(df["human_difficulty"].mean()) for df in usable.values()]
    y = [float(df["log_cost"].mean()) for df in usable.values()]
    return pearson(x, y)[0]


def censoring_warning(traces: pl.DataFrame, max_tokens: int, threshold: float = 0.10) -> Optional[str]:
    """One line when more than `threshold` of a job's traces hit max_tokens, with a budget to try."""
    if not traces.height:
        return None
    share = float(traces["censored"].fill_null(False).mean())
    if share <= threshold:
        return None
    suggested = 1 << max(1, int(math.ceil(math.log2(max(max_tokens, 1) * 2))))  # the next power of two >= 2x
    return (f"{share:.0%} of the traces were cut by max_tokens={max_tokens} (censored: their cost is only a lower "
            f"bound and analysis.censored decides what they mean); rerun with sampling.max_tokens={suggested} "
            "or more")
