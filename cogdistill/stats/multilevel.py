"""The fits and tests of the report's design-respecting models (cogdistill.report.multilevel builds
their designs): the multilevel meta-analysis of Fisher z with known sampling variances, the item-level
mixed model with Satterthwaite's df, Wald tests and contrasts of their estimates. Both fits are
cogdistill.stats.mixed's profiled REML."""

from __future__ import annotations

import contextlib
import math

import numpy as np

from cogdistill.stats import mixed

NAN = float("nan")
Z95 = 1.959963984540054  # qnorm(0.975), metafor's and lme4's normal intervals


def finite_or_nan(x) -> float:
    return float(x) if x is not None and math.isfinite(float(x)) else NAN


def wald_test(est: float, se: float, df: float = NAN) -> dict:
    """Wald test and 95% interval: against t(df) where df is given (finite, > 0), else the normal.
    `z` is the statistic est / se either way (the key readers of report.json version 1 know); `df`
    is NaN for a normal test. NaN throughout when the SE is not positive."""
    from scipy import stats
    df = finite_or_nan(df)
    if not (math.isfinite(est) and math.isfinite(se) and se > 0):
        return {"estimate": finite_or_nan(est), "se": finite_or_nan(se), "z": NAN, "df": df, "p": NAN,
                "ci_low": NAN, "ci_high": NAN}
    z = est / se
    if math.isfinite(df) and df > 0:
        p, crit = float(2 * stats.t.sf(abs(z), df)), float(stats.t.ppf(0.975, df))
    else:
        p, crit = float(2 * stats.norm.sf(abs(z))), Z95
    return {"estimate": float(est), "se": float(se), "z": float(z), "df": df, "p": p,
            "ci_low": float(est - crit * se), "ci_high": float(est + crit * se)}


def contrast(beta: np.ndarray, cov: np.ndarray, c: np.ndarray) -> tuple[float, float]:
    """c'beta and its SE sqrt(c' cov c) (0 where rounding makes the variance negative)."""
    return float(c @ beta), math.sqrt(max(float(c @ cov @ c), 0.0))


def covariance_correlation(S: np.ndarray) -> float:
    """The correlation of a 2 x 2 covariance matrix; NaN when a variance is 0."""
    return S[0, 1] / math.sqrt(S[0, 0] * S[1, 1]) if S[0, 0] > 0 and S[1, 1] > 0 else NAN


def one_blas_thread():
    """The report's matrices are small: BLAS threads only contend (10x slower on 2 busy cores; the
    bootstrap's product burned twice the CPU for no gain in wall time). The report is built under it."""
    try:
        from threadpoolctl import threadpool_limits
        return threadpool_limits(1)
    except ImportError:
        return contextlib.nullcontext()


def meta_reml(y: np.ndarray, v: np.ndarray, X: np.ndarray, factors) -> dict:
    """REML with known sampling variances v of y, fixed effects X and crossed random intercepts
    `factors` [(name, level codes)], as an LMM with sigma = 1 after whitening by 1/sqrt(v).

    With y* = y/sqrt(v), X* = X/sqrt(v), Z* = Z/sqrt(v): V = diag(v)^1/2 (I + Z*GZ*') diag(v)^1/2, so
    -2 l_R = log|diag(v)| + log|A| + log|R_X|^2 + r2 (+ constants), A and R_X those of the LMM's
    penalised least squares with Lambda = diag(sqrt(sigma2)); stats.mixed's fitter, so the cost of
    an evaluation grows with cells x levels, not cells^3. Tests use t with k - p df (metafor's
    test = "t", dfs = "residual"): with about ten models a normal z overstates the evidence.
    """
    w = 1.0 / np.sqrt(v)
    terms = [mixed.Term(name, codes, w[:, None]) for name, codes in factors]
    s0 = max(np.var(y) - v.mean(), 0.01) / max(len(terms), 1)  # a moment guess, split evenly
    with one_blas_thread():
        fit = mixed.fit(y * w, X * w[:, None], terms, known_scale=True, start=np.full(len(terms), s0 ** 0.5))
    k, p = X.shape
    ll = -0.5 * ((k - p) * math.log(2 * math.pi) - np.linalg.slogdet(X.T @ X)[1] + np.log(v).sum()
                 + fit["deviance"])
    theta = np.asarray(fit["theta"], float)
    return {"sigma2": {t.name: float(theta[t.at] ** 2) for t in fit["terms"]}, "beta": fit["beta"],
            "cov": fit["cov"], "loglik": float(ll), "converged": fit["converged"], "message": fit["message"],
            "df": float(k - p)}


def lmm_fit_and_terms(y: np.ndarray, X: np.ndarray, terms: list[mixed.Term]) -> tuple[dict, list[mixed.Term]]:
    """The REML fit and Satterthwaite's df of every fixed effect and role slope (slope_contrasts), in
    the fitting process: the df need the criterion, which does not travel back from a forked child."""
    with one_blas_thread():
        fit = mixed.fit(y, X, terms, reml=True)
        p = X.shape[1]
        contrasts = np.vstack([np.eye(p), slope_contrasts(p)]) if p else np.zeros((0, 0))
        fit["df"] = mixed.satterthwaite_df(fit, contrasts) if p else np.zeros(0)
    fit.pop("criterion")
    return fit, fit["terms"]


def slope_contrasts(p: int) -> np.ndarray:
    """Rows picking each role's hd_z slope in a design of p columns laid out as (Intercept), hd_z,
    the role dummies, the hd_z:role interactions: hd_z (the reference role), then hd_z + hd_z:role[r].
    The interactions are the last (p - 2) / 2 columns."""
    n_other = (p - 2) // 2
    rows = [np.eye(p)[1]]
    for k in range(n_other):
        c = np.eye(p)[1].copy()
        c[2 + n_other + k] = 1.0
        rows.append(c)
    return np.array(rows)
