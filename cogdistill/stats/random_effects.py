"""Random-effects pooling of Fisher-z correlations: the REML estimate of the between-cell
variance tau^2 and the mean with its interval, as metafor::rma(yi, vi, method = "REML") gives.

A fixed-effect (inverse-variance) mean of a role's cells assumes every cell estimates one common
correlation, so its interval shrinks with the item count alone; the cells of a role differ (models
and tasks differ), and the random-effects interval widens by tau^2. It still treats the cells as
independent: the multilevel model (report.multilevel) is the one that models shared models and
tasks.
"""

from __future__ import annotations

import math
from typing import Dict, Sequence

import numpy as np

from cogdistill.stats.fisher import fisher_z

NAN = float("nan")
MIN_CELLS = 2  # tau^2 of one cell is not identifiable (metafor sets it to 0: the fixed-effect interval)


def _restricted_loglik(tau2: np.ndarray, y: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The restricted log-likelihood (up to a constant) at each tau^2 of an array."""
    w = 1.0 / (v[None, :] + np.asarray(tau2, float)[:, None])
    mu = (w * y).sum(axis=1) / w.sum(axis=1)
    return -0.5 * (-np.log(w).sum(axis=1) + np.log(w.sum(axis=1)) + (w * (y - mu[:, None]) ** 2).sum(axis=1))


def _score(tau2: float, y: np.ndarray, v: np.ndarray) -> float:
    """d restricted log-likelihood / d tau^2 = (y'PPy - tr P) / 2 for an intercept-only model."""
    w = 1.0 / (v + tau2)
    mu = float((w * y).sum() / w.sum())
    return 0.5 * float((w * w * (y - mu) ** 2).sum() - w.sum() + (w * w).sum() / w.sum())


def reml_tau2(y: np.ndarray, v: np.ndarray) -> float:
    """The REML estimate of tau^2 >= 0: the restricted likelihood's maximum over a log grid, then
    the root of its score in the bracket around it (Brent, to 1e-14), or 0 where it is highest
    at the boundary. A grid first, not Fisher scoring from one start: the likelihood can be flat
    near 0, where a local method stops early (DESIGN.md, known traps)."""
    from scipy.optimize import brentq

    if y.size < MIN_CELLS:
        return 0.0
    upper = 10.0 * (float(np.var(y)) + float(v.max())) + 1e-12
    grid = np.concatenate([[0.0], np.geomspace(upper * 1e-10, upper, 120)])
    ll = _restricted_loglik(grid, y, v)
    best = int(np.argmax(ll))
    if best == 0 and _score(0.0, y, v) <= 0:
        return 0.0
    low = grid[max(best - 1, 0)]
    high = grid[min(best + 1, grid.size - 1)]
    if _score(low, y, v) <= 0:
        return float(low)
    if _score(high, y, v) >= 0:
        return float(high)
    return float(brentq(_score, low, high, args=(y, v), xtol=1e-15, rtol=1e-14, maxiter=500))


def random_effects_fisher_mean(rs: Sequence[float], ns: Sequence[int], ci: float = 0.95) -> Dict[str, float]:
    """Random-effects mean of Fisher z over cells (known variance 1 / (n - 3), tau^2 by REML),
    its Wald interval mu +- z_(1+ci)/2 / sqrt(sum w), w = 1 / (v + tau^2), back-transformed to r;
    tau2 and I^2 (the share of the variation that is between cells, Higgins & Thompson 2002).
    Cells with n < 4 or undefined r carry no weight; fewer than 2 cells: undefined (NaN)."""
    from scipy.stats import norm

    pairs = [(r, n) for r, n in zip(rs, ns) if r is not None and np.isfinite(r) and n is not None and n > 3]
    out = {"r": NAN, "ci_low": NAN, "ci_high": NAN, "z": NAN, "se": NAN, "tau2": NAN, "i2": NAN,
           "n_cells": len(pairs)}
    if len(pairs) < MIN_CELLS:
        return out
    y = fisher_z([r for r, _ in pairs])
    v = np.array([1.0 / (n - 3) for _, n in pairs])
    tau2 = reml_tau2(y, v)
    w = 1.0 / (v + tau2)
    mu, se = float((w * y).sum() / w.sum()), float(1.0 / math.sqrt(w.sum()))
    half = float(norm.ppf(0.5 + ci / 2)) * se
    # I^2 with the "typical" within-cell variance of Higgins & Thompson (as metafor reports it)
    w0 = 1.0 / v
    typical = (len(pairs) - 1) * w0.sum() / (w0.sum() ** 2 - (w0 * w0).sum())
    out.update(r=math.tanh(mu), ci_low=math.tanh(mu - half), ci_high=math.tanh(mu + half), z=mu, se=se,
               tau2=tau2, i2=100.0 * tau2 / (tau2 + typical))
    return out
