"""Fisher's z for correlations: the one transform (clipped so |r| = 1 stays finite) and the means
and intervals of correlations computed through it. Every Fisher z of the package is fisher_z."""

from __future__ import annotations

import math
from typing import Dict, Sequence

import numpy as np

NAN = float("nan")
# |r| = 1 (two items, a perfect fit) would give an infinite z and swamp any mean: clipped just inside
R_CLIP = 0.999999


def fisher_z(rs) -> np.ndarray:
    """atanh(r), r clipped to +-R_CLIP; an array for a sequence or array, a 0-d array for a number."""
    return np.arctanh(np.clip(rs, -R_CLIP, R_CLIP))


def fisher_r(z: float) -> float:
    """tanh(z), the back-transform; NaN for an undefined (NaN or infinite) z."""
    return math.tanh(z) if math.isfinite(z) else NAN


def fisher_mean(rs: Sequence[float]) -> float:
    """Mean of correlations through Fisher's z (NaNs ignored)."""
    vals = np.asarray([r for r in rs if r is not None and np.isfinite(r)], float)
    if vals.size == 0:
        return math.nan
    return float(np.tanh(fisher_z(vals).mean()))


def fisher_ci(rs: Sequence[float], ci: float = 0.95) -> tuple[float, float]:
    """t interval over Fisher-z transformed correlations, back-transformed (cells are the units)."""
    from scipy.stats import t as t_dist

    z = fisher_z([r for r in rs if np.isfinite(r)])
    if z.size < 2:
        return NAN, NAN
    half = t_dist.ppf(0.5 + ci / 2, z.size - 1) * z.std(ddof=1) / math.sqrt(z.size)
    return float(np.tanh(z.mean() - half)), float(np.tanh(z.mean() + half))


def weighted_fisher_mean(rs: Sequence[float], ns: Sequence[int], ci: float = 0.95) -> Dict[str, float]:
    """Inverse-variance weighted mean of Fisher z (weights n - 3, the inverse of z's sampling
    variance) with its fixed-effect CI; cells with n < 4 or undefined r carry no weight."""
    from scipy.stats import norm

    pairs = [(r, n) for r, n in zip(rs, ns) if r is not None and np.isfinite(r) and n is not None and n > 3]
    if not pairs:
        return {"r": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n_cells": 0}
    z = fisher_z([r for r, _ in pairs])
    w = np.array([n - 3 for _, n in pairs], float)
    mean, se = float((w * z).sum() / w.sum()), float(1 / math.sqrt(w.sum()))
    half = norm.ppf(0.5 + ci / 2) * se
    return {"r": math.tanh(mean), "ci_low": math.tanh(mean - half), "ci_high": math.tanh(mean + half),
            "n_cells": len(pairs)}
