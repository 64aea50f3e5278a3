"""Tests of two dependent correlations that share a variable: r(1, 2) against r(1, 3) where 2 and 3
are measured on the same n units as 1 (here: 1 = human difficulty, 2 and 3 = two models' log costs).

References: Williams' t and Steiger's z (Steiger 1980, Psychol. Bull. 87:245).
"""

from __future__ import annotations

import math

import numpy as np

NAN = float("nan")


def williams_t(r12: float, r13: float, r23: float, n: int) -> tuple[float, float]:
    """Williams' t (df = n - 3) for H0: rho12 = rho13, where variables 2 and 3 are measured on the
    same n units as variable 1 (here: 1 = human RT, 2 and 3 = two models' log costs)."""
    from scipy.stats import t as t_dist

    if n <= 3 or not all(np.isfinite([r12, r13, r23])):
        return NAN, NAN
    det = 1 - r12**2 - r13**2 - r23**2 + 2 * r12 * r13 * r23
    rbar = (r12 + r13) / 2
    denom = 2 * (n - 1) / (n - 3) * det + rbar**2 * (1 - r23) ** 3
    if denom <= 0:
        return NAN, NAN
    t = (r12 - r13) * math.sqrt((n - 1) * (1 + r23) / denom)
    return float(t), float(2 * t_dist.sf(abs(t), n - 3))


def steiger_z(r12: float, r13: float, r23: float, n: int) -> tuple[float, float]:
    """Steiger's (1980) z with the pooled correlation, for the same hypothesis as williams_t."""
    from scipy.stats import norm

    if n <= 3 or not all(np.isfinite([r12, r13, r23])):
        return NAN, NAN
    rbar = (r12 + r13) / 2
    psi = r23 * (1 - 2 * rbar**2) - 0.5 * rbar**2 * (1 - 2 * rbar**2 - r23**2)
    c = psi / (1 - rbar**2) ** 2
    z = (math.atanh(r12) - math.atanh(r13)) * math.sqrt((n - 3) / (2 - 2 * c))
    return float(z), float(2 * norm.sf(abs(z)))


PAPER_TEACHER_R, PAPER_STUDENT_R = 0.64, 0.34  # Hu et al. (arXiv 2601.05019): the difference to detect


def williams_power(n: int, r_ab: float, rho_a: float = PAPER_TEACHER_R, rho_b: float = PAPER_STUDENT_R,
                   alpha: float = 0.05) -> float:
    """Power of the two-sided test of rho_a = rho_b on n shared items when the truth is rho_a vs
    rho_b (the paper's teacher and student means) and the two costs correlate r_ab: the normal
    approximation of Steiger's (1980) z, whose noncentrality is (z_a - z_b) sqrt((n - 3) / (2 - 2c))."""
    from scipy.stats import norm

    if n <= 3:
        return NAN
    r23 = r_ab if math.isfinite(r_ab) else 0.0  # unknown: as if independent (conservative for r_ab > 0)
    rbar = (rho_a + rho_b) / 2
    psi = r23 * (1 - 2 * rbar**2) - 0.5 * rbar**2 * (1 - 2 * rbar**2 - r23**2)
    c = psi / (1 - rbar**2) ** 2
    if c >= 1:
        return NAN
    ncp = (math.atanh(rho_a) - math.atanh(rho_b)) * math.sqrt((n - 3) / (2 - 2 * c))
    crit = norm.ppf(1 - alpha / 2)
    return float(norm.sf(crit - ncp) + norm.cdf(-crit - ncp))
