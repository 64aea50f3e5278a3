"""Effect sizes and tests of differences: the paired t (and Wilcoxon) test, Cohen's d with a
pooled SD, the geometric mean of ratios."""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import numpy as np

from cogdistill.stats.correlation import is_constant

NAN = float("nan")


def paired_test(a: Sequence[float], b: Sequence[float]) -> Dict[str, Any]:
    """Paired t test (and Wilcoxon) of a - b over the pairs where both are defined."""
    from scipy.stats import ttest_rel, wilcoxon

    pairs = np.array([(x, y) for x, y in zip(a, b) if x is not None and y is not None
                      and np.isfinite(x) and np.isfinite(y)], float).reshape(-1, 2)
    n = len(pairs)
    out = {"n_pairs": n, "mean_a": NAN, "mean_b": NAN, "mean_diff": NAN, "t": NAN, "df": n - 1, "p": NAN,
           "wilcoxon_p": NAN, "note": None}
    if n == 0:
        out["note"] = "no pair with both r defined"
        return out
    diff = pairs[:, 0] - pairs[:, 1]
    out.update(mean_a=float(pairs[:, 0].mean()), mean_b=float(pairs[:, 1].mean()), mean_diff=float(diff.mean()))
    if n < 2:
        out["note"] = "one pair: a t test needs at least 2"
    elif is_constant(diff):
        out["note"] = "every pair differs by the same amount: the t test is undefined"
    else:
        res = ttest_rel(pairs[:, 0], pairs[:, 1])
        out.update(t=float(res.statistic), p=float(res.pvalue))
        if np.any(diff != 0):
            out["wilcoxon_p"] = float(wilcoxon(diff).pvalue)
    return out


def geometric_mean(values: Sequence[Optional[float]]) -> float:
    vals = np.array([v for v in values if v is not None and np.isfinite(v) and v > 0], float)
    return float(np.exp(np.log(vals).mean())) if vals.size else NAN


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """(mean a - mean b) / pooled SD."""
    if len(a) < 2 or len(b) < 2:
        return NAN
    pooled = math.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    return float((a.mean() - b.mean()) / pooled) if pooled > 0 else NAN
