"""Linear mixed models by profiled (RE)ML: the one fitter behind the report's role contrasts, its
item-level model and the effort analysis.

    y = X beta + Z b + e,   b ~ N(0, sigma^2 Lambda Lambda'),   e ~ N(0, sigma^2 I)

Lambda is block diagonal: one small lower-triangular factor T per random-effect term, repeated over
the term's levels, and theta stacks the T's in lme4's order. For a given theta, beta and sigma come
out of one penalised least-squares solve, so only theta is optimised (Bates, Maechler, Bolker &
Walker 2015, J. Stat. Softw. 67(1), sections 3.2-3.4; `profiled_deviance`, eqs. 34 and 41).

Why the optimiser is more than one L-BFGS-B call: on theta (a standard-deviation scale) the
deviance is even in each diagonal element, so its gradient is exactly zero on the boundary
theta_d = 0. A gradient method that reaches 0 stops there and calls it convergence although the
deviance falls inward (seen: an item variance of 0 where lme4 found 0.0094, the criterion 20 above
lme4's). `minimise` therefore
  1. optimises the diagonal elements on the variance-ratio scale (theta_d^2, bounded at 0, where the
     gradient at the boundary is the true one-sided slope) from lme4's start and, when that ends on
     the boundary, again from inside it, keeping the better;
  2. polishes with Nelder-Mead (derivative-free) where L-BFGS-B's line search gives up;
  3. checks the result against nearby points: each coordinate a small step either way, and every
     diagonal element on or near 0 along a ladder of positive values. A point that improves the
     criterion restarts the local search from there; `converged` is True only when the check holds.

`satterthwaite_df` gives the denominator degrees of freedom of a contrast of beta as lmerTest does
(Kuznetsova, Brockhoff & Christensen 2017, J. Stat. Softw. 82(13)), for t tests in place of z.

Pure functions over numpy arrays; the report's modules build the designs and read the fits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

NAN = float("nan")
# The check: a probe must lower the criterion by more than this (relative to its size) to count.
# A deviance of ~1e4 is known to ~1e-8 in float64; 1e-10 relative stays above that noise.
CHECK_RTOL = 1e-10
LADDER = (1e-8, 1e-6, 1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.3, 1.0, 3.0)  # theta_d^2 probed near a boundary
MAX_RESTARTS = 8


# ---- random-effect terms -------------------------------------------------------------------------

@dataclass
class Term:
    """One random-effect term: `codes` (level of each row, 0..n_levels-1) and `M` (n x k, the row's
    covariates for this term: a column of ones for an intercept, [1, x] for intercept and slope)."""
    name: str
    codes: np.ndarray
    M: np.ndarray
    n_levels: int = 0
    at: int = 0  # offset of this term's block in theta
    tri: List[Tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.codes = np.asarray(self.codes, np.int64)
        self.M = np.asarray(self.M, float).reshape(self.codes.size, -1)
        self.n_levels = self.n_levels or (int(self.codes.max()) + 1 if self.codes.size else 0)
        k = self.M.shape[1]
        # lme4's theta layout: the lower triangle of T, column by column
        self.tri = [(i, j) for j in range(k) for i in range(j, k)]

    @property
    def k(self) -> int:
        return self.M.shape[1]

    def factor(self, theta: np.ndarray) -> np.ndarray:
        """T (lower triangular): Var(b of one level) = sigma^2 T T'."""
        T = np.zeros((self.k, self.k))
        for (i, j), t in zip(self.tri, theta[self.at:self.at + len(self.tri)]):
            T[i, j] = t
        return T

    def z(self, n: int):
        """The term's columns of Z, level-major (level l, column j at l*k + j)."""
        from scipy import sparse
        cols = (self.codes[:, None] * self.k + np.arange(self.k)[None, :]).ravel()
        return sparse.csc_matrix((self.M.ravel(), (np.repeat(np.arange(n), self.k), cols)),
                                 shape=(n, self.n_levels * self.k))


def order_terms(terms: Sequence[Term]) -> List[Term]:
    """lme4's order, most levels first (theta follows it), with each term's offset in theta set:
    eliminating that block-diagonal term first leaves fill-in only in the small block of the others."""
    ordered = sorted(terms, key=lambda t: -t.n_levels)
    at = 0
    for term in ordered:
        term.at = at
        at += len(term.tri)
    return ordered


def diagonal_mask(terms: Sequence[Term]) -> np.ndarray:
    """True where theta holds a diagonal element of some T (bounded at 0); False off the diagonal."""
    return np.array([i == j for t in terms for i, j in t.tri], bool)


# ---- the criterion -------------------------------------------------------------------------------

class ProfiledDeviance:
    """-2 log-likelihood profiled over beta and sigma, as a function of theta.

    REML (Bates et al. 2015 eq. 41): log|L|^2 + log|R_X|^2 + (n-p)(1 + log(2 pi r2 / (n-p)));
    ML (eq. 34): log|L|^2 + n(1 + log(2 pi r2 / n)). L L' = A = Lambda'Z'Z Lambda + I. The first term
    (most levels, e.g. items) has a block-diagonal A11 (one k x k block per level), so A is factorised
    by block elimination: A11 blockwise, then the dense Schur complement of the small remaining terms,
    which is what lme4's sparse Cholesky does with the same ordering. Each evaluation works on
    q-sized cross-products formed once, so its cost does not grow with n. With known_scale, sigma is
    1 and the criterion is log|A| + log|R_X|^2 + r2 (-2 l_R up to constants): a meta-analysis with
    known sampling variances after whitening.
    """

    def __init__(self, y: np.ndarray, X: np.ndarray, terms: Sequence[Term], *, reml: bool = True,
                 known_scale: bool = False):
        from scipy import sparse
        self.X, self.terms, self.reml, self.known_scale = X, list(terms), reml, known_scale
        self.n, self.p = X.shape
        self.XtX, self.Xty, self.yty = X.T @ X, X.T @ y, float(y @ y)
        if not self.terms:
            return
        R = np.column_stack([y, X])
        big = self.terms[0]
        k1, L1 = big.k, big.n_levels
        Z1 = big.z(self.n)
        self.B1 = np.zeros((L1, k1, k1))
        np.add.at(self.B1, big.codes, big.M[:, :, None] * big.M[:, None, :])  # Z1'Z1, block by block
        self.Z1tR = np.asarray(Z1.T @ R).reshape(L1, k1, self.p + 1)
        rest = self.terms[1:]
        self.q2 = 0
        if rest:
            Z2 = sparse.hstack([t.z(self.n) for t in rest], format="csc")
            self.q2 = Z2.shape[1]
            self.C = (Z2.T @ Z1).toarray().reshape(self.q2, L1, k1)
            self.Z2tZ2, self.Z2tR = (Z2.T @ Z2).toarray(), np.asarray(Z2.T @ R)
            rows, cols, which, offset = [], [], [], 0
            for t in rest:
                for n_tri, (i, j) in enumerate(t.tri):
                    rows.append(offset + np.arange(t.n_levels) * t.k + i)
                    cols.append(offset + np.arange(t.n_levels) * t.k + j)
                    which.append(np.full(t.n_levels, t.at + n_tri))
                offset += t.n_levels * t.k
            self.lam2_rows, self.lam2_cols, self.lam2_theta = map(np.concatenate, (rows, cols, which))

    def _lambda2(self, theta: np.ndarray) -> np.ndarray:
        """Lambda of the remaining terms, dense (they have few levels): kron(I_levels, T) per term."""
        lam2 = np.zeros((self.q2, self.q2))
        lam2[self.lam2_rows, self.lam2_cols] = theta[self.lam2_theta]
        return lam2

    def _solve_a(self, theta: np.ndarray):
        """A^-1 [Lambda'Z'y, Lambda'Z'X] and log|A|, by block elimination."""
        from scipy import linalg
        T1 = self.terms[0].factor(theta)
        A11 = T1.T @ self.B1 @ T1 + np.eye(T1.shape[0])
        if T1.shape[0] == 1:  # a scalar per level (random intercepts): skip the batched LAPACK calls
            A11inv, log_det = 1.0 / A11, float(np.log(A11).sum())
        else:
            A11inv, log_det = np.linalg.inv(A11), float(np.linalg.slogdet(A11)[1].sum())
        b1 = T1.T @ self.Z1tR
        x1 = (A11inv @ b1).reshape(-1, self.p + 1)
        b1 = b1.reshape(-1, self.p + 1)
        if not self.q2:
            return b1, x1, log_det
        lam2 = self._lambda2(theta)
        W = (lam2.T @ self.C.reshape(self.q2, -1)).reshape(self.C.shape) @ T1  # A21
        WA = np.einsum("qlk,lkj->qlj", W, A11inv).reshape(self.q2, -1)  # A21 A11^-1
        W = W.reshape(self.q2, -1)
        S = lam2.T @ self.Z2tZ2 @ lam2 + np.eye(self.q2) - WA @ W.T
        cS = linalg.cho_factor(S, lower=True)
        b2 = lam2.T @ self.Z2tR
        x2 = linalg.cho_solve(cS, b2 - W @ x1)
        x1 = x1 - WA.T @ x2
        log_det += 2 * float(np.log(np.diag(cS[0])).sum())
        return np.vstack([b1, b2]), np.vstack([x1, x2]), log_det

    def __call__(self, theta: np.ndarray) -> Dict[str, Any]:
        from scipy import linalg
        theta = np.asarray(theta, float)
        if self.terms:
            b, x, log_det_a = self._solve_a(theta)
        else:
            b, x, log_det_a = np.zeros((0, self.p + 1)), np.zeros((0, self.p + 1)), 0.0
        lzx, cu, cx = b[:, 1:], x[:, 0], x[:, 1:]
        rx = linalg.cholesky(self.XtX - lzx.T @ cx, lower=False)  # R_X'R_X, the Schur complement
        beta = linalg.cho_solve((rx, False), self.Xty - lzx.T @ cu)
        u = cu - cx @ beta  # spherical random effects; b = Lambda u
        # penalised residual sum of squares ||y - X beta - Z Lambda u||^2 + ||u||^2 at the solution of
        # the normal equations, without touching the n rows (centre y first: no cancellation)
        r2 = float(self.yty - u @ b[:, 0] - beta @ self.Xty)
        log_det_x = 2 * float(np.log(np.diag(rx)).sum())
        if self.known_scale:  # sigma = 1: -2 l_R less constants
            return {"deviance": float(log_det_a + log_det_x + r2), "beta": beta, "sigma2": 1.0, "rx": rx,
                    "log_det_a": log_det_a, "log_det_x": log_det_x, "r2": r2}
        dof = self.n - self.p if self.reml else self.n
        dev = log_det_a + (log_det_x if self.reml else 0.0) + dof * (1 + math.log(2 * math.pi * r2 / dof))
        return {"deviance": float(dev), "beta": beta, "sigma2": r2 / dof, "rx": rx,
                "log_det_a": log_det_a, "log_det_x": log_det_x, "r2": r2}


def fixed_cov(rx: np.ndarray, sigma2: float) -> np.ndarray:
    """sigma^2 (R_X'R_X)^-1: the fixed effects' covariance given theta (lme4's vcov, metafor's)."""
    from scipy import linalg
    rinv = linalg.solve_triangular(rx, np.eye(rx.shape[0]))
    return sigma2 * rinv @ rinv.T


# ---- the optimiser ---------------------------------------------------------------------------------

@dataclass
class Minimum:
    theta: np.ndarray
    value: float
    converged: bool
    message: str
    evaluations: int


def minimise(f: Callable[[np.ndarray], float], theta0: np.ndarray, diagonal: np.ndarray, *,
             extra_starts: Sequence[np.ndarray] = ()) -> Minimum:
    """The minimum of f over theta with theta[diagonal] >= 0 (module docstring: why and how)."""
    theta0 = np.asarray(theta0, float)
    diagonal = np.asarray(diagonal, bool)
    calls = [0]

    def to_theta(x: np.ndarray) -> np.ndarray:
        th = np.array(x, float)
        th[diagonal] = np.sqrt(np.maximum(th[diagonal], 0.0))
        return th

    def to_x(th: np.ndarray) -> np.ndarray:
        x = np.array(th, float)
        x[diagonal] = x[diagonal] ** 2
        return x

    def g(x: np.ndarray) -> float:
        calls[0] += 1
        try:
            value = float(f(to_theta(x)))
        except (np.linalg.LinAlgError, ValueError, FloatingPointError):
            return math.inf
        return value if math.isfinite(value) else math.inf

    if theta0.size == 0:
        value = g(theta0)
        return Minimum(theta0, value, math.isfinite(value), "no variance parameters", calls[0])
    bounds = [(0.0, None) if d else (None, None) for d in diagonal]
    best_x, best = _local(g, to_x(theta0), bounds)
    # Ended on the boundary: start again from inside it (theta_d = 0.5), and keep the better end.
    on_boundary = bool(np.any(best_x[diagonal] <= 1e-4)) if diagonal.any() else False
    starts = ([np.where(diagonal, 0.25, 0.0)] if on_boundary else []) + [to_x(np.asarray(s, float))
                                                                          for s in extra_starts]
    for x0 in starts:
        x, value = _local(g, x0, bounds)
        if value < best:
            best_x, best = x, value
    if best_x is None or not math.isfinite(best):
        return Minimum(theta0, math.inf, False, "the criterion is not finite at any start", calls[0])
    for restart in range(MAX_RESTARTS + 1):
        probe_x, probe = _check(g, best_x, best, diagonal)
        if probe_x is None:
            return Minimum(to_theta(best_x), best, True,
                           f"checked: no nearby point lowers the criterion ({restart} restart(s))", calls[0])
        x, value = _local(g, probe_x, bounds)
        best_x, best = (x, value) if value < probe else (probe_x, probe)
    return Minimum(to_theta(best_x), best, False,
                   f"nearby points still lower the criterion after {MAX_RESTARTS} restarts", calls[0])


def _local(g: Callable[[np.ndarray], float], x0: np.ndarray, bounds) -> Tuple[np.ndarray, float]:
    """L-BFGS-B to tight tolerances; where its line search gives up, Nelder-Mead (derivative-free)
    from its end point. Whether the end is the optimum is for _check to say, not for either."""
    from scipy import optimize
    res = optimize.minimize(g, x0, method="L-BFGS-B", bounds=bounds,
                            options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 2000})
    x, value = np.asarray(res.x, float), float(res.fun)
    if res.success:
        return x, value
    nm = optimize.minimize(g, x, method="Nelder-Mead", bounds=bounds,
                           options={"xatol": 1e-10, "fatol": 1e-13, "maxfev": 400 * x.size,
                                    "initial_simplex": _simplex(x, bounds)})
    if nm.fun < value:
        x, value = np.asarray(nm.x, float), float(nm.fun)
    return x, value


def _simplex(x: np.ndarray, bounds) -> np.ndarray:
    """A small simplex around x that stays inside the bounds (Nelder-Mead's default one is 5% of
    each coordinate: nothing at all for a coordinate at 0)."""
    pts = [x.copy()]
    for i in range(x.size):
        step = 0.05 * abs(x[i]) if x[i] != 0 else 0.01
        pt = x.copy()
        pt[i] = x[i] + step
        if bounds[i][0] is not None and pt[i] < bounds[i][0]:
            pt[i] = x[i] - step
        pts.append(pt)
    return np.array(pts)


def _check(g, x: np.ndarray, value: float, diagonal: np.ndarray) -> Tuple[Optional[np.ndarray], float]:
    """The best nearby point that lowers g by more than the noise, or (None, value)."""
    tol = CHECK_RTOL * max(1.0, abs(value))
    best_x, best = None, value - tol
    candidates = []
    for i in range(x.size):
        for h in (1e-3, 1e-5):
            step = h * max(abs(x[i]), 1e-2)
            for sign in (1.0, -1.0):
                pt = x.copy()
                pt[i] += sign * step
                if diagonal[i] and pt[i] < 0:
                    continue
                candidates.append(pt)
        if diagonal[i] and x[i] <= 1e-4:  # on or near the boundary: look inward along a ladder
            for rung in LADDER:
                pt = x.copy()
                pt[i] = rung
                candidates.append(pt)
    for pt in candidates:
        v = g(pt)
        if v < best:
            best_x, best = pt, v
    return best_x, (best if best_x is not None else value)


# ---- fitting ---------------------------------------------------------------------------------------

def fit(y: np.ndarray, X: np.ndarray, terms: Sequence[Term], *, reml: bool = True, known_scale: bool = False,
        start: Optional[np.ndarray] = None) -> Dict[str, Any]:
    """Fit by (RE)ML. Returns theta, beta, sigma2, cov (of beta), deviance, converged, message and
    the criterion itself (`criterion`, for the Satterthwaite degrees of freedom). y is centred
    inside (X's first column must be the intercept when it has one: only beta[0] moves back)."""
    terms = order_terms(terms)
    has_intercept = X.shape[1] > 0 and np.allclose(X[:, 0], 1.0)
    shift = float(y.mean()) if has_intercept and not known_scale else 0.0
    crit = ProfiledDeviance(y - shift, X, terms, reml=reml, known_scale=known_scale)
    diagonal = diagonal_mask(terms)
    theta0 = np.where(diagonal, 1.0, 0.0) if start is None else np.asarray(start, float)  # lme4's start
    best = minimise(lambda th: crit(th)["deviance"], theta0, diagonal)
    sol = crit(best.theta)
    beta = np.array(sol["beta"], float)
    if shift:
        beta[0] += shift
    return {"theta": best.theta, "beta": beta, "sigma2": sol["sigma2"], "cov": fixed_cov(sol["rx"], sol["sigma2"]),
            "deviance": sol["deviance"], "rx": sol["rx"], "converged": best.converged, "message": best.message,
            "evaluations": best.evaluations, "terms": terms, "criterion": crit, "n_obs": X.shape[0],
            "n_fixed": X.shape[1], "reml": reml}


def term_covariances(fitted: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """sigma^2 T T' per term name: each term's covariance matrix of its random effects."""
    theta = np.asarray(fitted["theta"], float)
    return {t.name: fitted["sigma2"] * t.factor(theta) @ t.factor(theta).T for t in fitted["terms"]}


def is_singular(fitted: Dict[str, Any], tol: float = 1e-4) -> bool:
    """lme4's isSingular(): a diagonal element of some T below tol."""
    theta = np.asarray(fitted["theta"], float)
    return bool(np.any(theta[diagonal_mask(fitted["terms"])] < tol))


# ---- degrees of freedom ------------------------------------------------------------------------------

def satterthwaite_df(fitted: Dict[str, Any], contrasts: np.ndarray) -> np.ndarray:
    """Satterthwaite's denominator df for each row c of `contrasts` (tests of c'beta), as lmerTest:
    df = 2 (c'V c)^2 / (g' A g), V = sigma^2 (R_X'R_X)^-1 as a function of the variance parameters
    (theta, sigma), g its gradient in them, A = 2 H^-1 with H the Hessian of the unprofiled REML
    deviance at the optimum. Derivatives by central differences with Richardson extrapolation.
    NaN where H is not positive definite. Needs a REML fit with an unknown scale."""
    contrasts = np.atleast_2d(np.asarray(contrasts, float))
    crit: ProfiledDeviance = fitted["criterion"]
    if crit.known_scale or not crit.reml:
        raise ValueError("satterthwaite_df needs a REML fit with sigma estimated")
    varpar = np.concatenate([np.asarray(fitted["theta"], float), [math.sqrt(fitted["sigma2"])]])
    nmp = crit.n - crit.p

    def deviance(vp: np.ndarray) -> float:
        sol = crit(vp[:-1])
        s2 = vp[-1] ** 2
        return sol["log_det_a"] + sol["log_det_x"] + nmp * math.log(2 * math.pi * s2) + sol["r2"] / s2

    def vcov(vp: np.ndarray) -> np.ndarray:
        return fixed_cov(crit(vp[:-1])["rx"], vp[-1] ** 2)

    H = _hessian(deviance, varpar)
    out = np.full(contrasts.shape[0], NAN)
    try:
        eig = np.linalg.eigvalsh(H)
        if not np.all(eig > 1e-10 * max(1.0, float(np.abs(eig).max()))):
            return out
        A = 2 * np.linalg.inv(H)
    except np.linalg.LinAlgError:
        return out
    J = _jacobian(vcov, varpar)  # (m, p, p)
    V = vcov(varpar)
    for i, c in enumerate(contrasts):
        g = np.array([c @ Jk @ c for Jk in J])
        var = float(c @ V @ c)
        denom = float(g @ A @ g)
        out[i] = 2 * var * var / denom if denom > 0 else NAN
    return out


def _steps(x: np.ndarray) -> np.ndarray:
    return 1e-4 * np.maximum(np.abs(x), 1e-1)  # numDeriv's default d = 1e-4, relative


def _hessian(f: Callable[[np.ndarray], float], x: np.ndarray) -> np.ndarray:
    def once(h: np.ndarray) -> np.ndarray:
        m = x.size
        H = np.zeros((m, m))
        f0 = f(x)
        for i in range(m):
            ei = np.zeros(m)
            ei[i] = h[i]
            H[i, i] = (f(x + ei) - 2 * f0 + f(x - ei)) / h[i] ** 2
            for j in range(i):
                ej = np.zeros(m)
                ej[j] = h[j]
                H[i, j] = H[j, i] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4 * h[i] * h[j])
        return H

    h = _steps(x)
    return (4 * once(h / 2) - once(h)) / 3  # Richardson: the h^2 error term cancels


def _jacobian(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    h = _steps(x)
    out = []
    for i in range(x.size):
        def diff(step: float) -> np.ndarray:
            e = np.zeros(x.size)
            e[i] = step
            return (f(x + e) - f(x - e)) / (2 * step)
        out.append((4 * diff(h[i] / 2) - diff(h[i])) / 3)
    return np.array(out)
