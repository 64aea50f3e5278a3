"""How differently two models allocate effort over the same items: the Jensen-Shannon divergence
between two samples' histograms, its paired bootstrap CI and its permutation p (with the p's Monte
Carlo SE). The resamples and permutations are vectorised over bin indices: only bin counts matter.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

NAN = float("nan")


MIN_EFFORT_ITEMS = 5  # a distribution of relative effort over fewer items is not one


def js_bins(pooled: np.ndarray) -> np.ndarray:
    """Shared bin edges from the pooled sample: Freedman-Diaconis width, between 2 and
    sqrt(n) bins (more bins than that leave most of them empty at the item counts of a task)."""
    n = pooled.size
    low, high = float(pooled.min()), float(pooled.max())
    iqr = float(np.subtract(*np.percentile(pooled, [75, 25])))
    width = 2 * iqr / n ** (1 / 3) if iqr > 0 else (high - low)
    k = int(np.clip(math.ceil((high - low) / width) if width > 0 else 2, 2, max(2, math.floor(math.sqrt(n)))))
    return np.linspace(low, high, k + 1)


def js_divergence(p_samples: np.ndarray, q_samples: np.ndarray, edges: Optional[np.ndarray] = None) -> float:
    """Jensen-Shannon divergence (bits, 0..1) between two samples' histograms over shared bins.
    Unlike KL it needs no smoothing constant (the mixture is positive wherever either is), is
    symmetric and bounded, so 0.2 means the same at any item count."""
    p_samples, q_samples = np.asarray(p_samples, float), np.asarray(q_samples, float)
    if p_samples.size == 0 or q_samples.size == 0:
        return NAN
    if edges is None:
        edges = js_bins(np.concatenate([p_samples, q_samples]))
    if edges[-1] <= edges[0]:
        return 0.0  # both samples are one and the same value
    p = np.histogram(np.clip(p_samples, edges[0], edges[-1]), edges)[0].astype(float)
    q = np.histogram(np.clip(q_samples, edges[0], edges[-1]), edges)[0].astype(float)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return max(0.0, (kl(p) + kl(q)) / 2)


def _js_rows(p_bins: np.ndarray, q_bins: np.ndarray, k: int) -> np.ndarray:
    """js_divergence for many resamples at once: p_bins, q_bins are (resamples, n) bin indices."""
    rows = np.arange(p_bins.shape[0])[:, None] * k
    p = np.bincount((rows + p_bins).ravel(), minlength=rows.size * k).reshape(-1, k).astype(float)
    q = np.bincount((rows + q_bins).ravel(), minlength=rows.size * k).reshape(-1, k).astype(float)
    p /= p.sum(axis=1, keepdims=True)
    q /= q.sum(axis=1, keepdims=True)
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum(axis=1)
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum(axis=1)
    return np.maximum(0.0, (kl_p + kl_q) / 2)


def _bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """np.histogram's bins (the last one closed) as an index per value."""
    return np.clip(np.searchsorted(edges, np.clip(values, edges[0], edges[-1]), side="right") - 1, 0, len(edges) - 2)


def js_bootstrap_ci(p_samples: np.ndarray, q_samples: np.ndarray, *, n_boot: int = 500, ci: float = 0.95,
                    seed: int = 0) -> tuple[float, float]:
    """Percentile CI of js_divergence, resampling items (paired: the two samples are the same
    items) with the bins of the full sample held fixed."""
    n = len(p_samples)
    if n < MIN_EFFORT_ITEMS or n_boot < 1:
        return NAN, NAN
    edges = js_bins(np.concatenate([p_samples, q_samples]))
    if edges[-1] <= edges[0]:
        return 0.0, 0.0
    p_bin, q_bin = _bin_index(p_samples, edges), _bin_index(q_samples, edges)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    values = _js_rows(p_bin[idx], q_bin[idx], len(edges) - 1)
    alpha = (1 - ci) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high)


JS_PERMUTATIONS = 2000  # Monte Carlo SE of p near .05: sqrt(.05 * .95 / 2000) = .0049 (200 gave .015)


def js_permutation_p(p_samples: np.ndarray, q_samples: np.ndarray, *, n_perm: int = JS_PERMUTATIONS,
                     seed: int = 0) -> float:
    """P-value of js_divergence against exchangeability: each item's two values swapped at
    random, (1 + #{null >= observed}) / (1 + n_perm). A bootstrap CI of a divergence never reaches
    0 (the plug-in estimate is biased up), so this, not the CI, says whether the two allocations
    differ beyond chance at this item count. Its Monte Carlo SE is permutation_mc_se(p, n_perm)."""
    n = len(p_samples)
    if n < MIN_EFFORT_ITEMS or n_perm < 1:
        return NAN
    edges = js_bins(np.concatenate([p_samples, q_samples]))
    if edges[-1] <= edges[0]:
        return 1.0
    k = len(edges) - 1
    p_bin, q_bin = _bin_index(p_samples, edges), _bin_index(q_samples, edges)
    observed = _js_swapped(p_bin, q_bin, k, np.zeros((1, n), bool))[0]
    rng = np.random.default_rng(seed)
    # one random bit per item and permutation: np.unpackbits of random bytes, 20x cheaper than random() < .5
    bits = np.frombuffer(rng.bytes(n_perm * ((n + 7) // 8)), np.uint8).reshape(n_perm, -1)
    swap = np.unpackbits(bits, axis=1, count=n).view(bool)
    null = _js_swapped(p_bin, q_bin, k, swap)
    return float((1 + np.sum(null >= observed - 1e-12)) / (n_perm + 1))


def permutation_mc_se(p: float, n_perm: int) -> float:
    """Monte Carlo standard error of a permutation p from n_perm random permutations,
    sqrt(p (1 - p) / n_perm): how far another seed's p would typically be."""
    if p is None or not math.isfinite(p) or n_perm < 1:
        return NAN
    return math.sqrt(p * (1 - p) / n_perm)


def _js_swapped(p_bin: np.ndarray, q_bin: np.ndarray, k: int, swap: np.ndarray) -> np.ndarray:
    """js_divergence after swapping each item's two values where swap (permutations, n) is True.

    Only bin counts matter: swapping item i moves one count from bin p_bin[i] to q_bin[i] in p and
    back in q (one small matrix product over the items whose bins differ), and with c log2 c
    tabulated, JS = 1 + (F(p) + F(q) - F(p + q)) / (2n), F(c) = sum c log2 c: p + q never changes."""
    n = p_bin.size
    p_count = np.bincount(p_bin, minlength=k)
    q_count = np.bincount(q_bin, minlength=k)
    moves = np.flatnonzero(p_bin != q_bin)
    step = np.zeros((moves.size, k), np.float32)  # counts up to n: exact in float32
    step[np.arange(moves.size), q_bin[moves]] += 1
    step[np.arange(moves.size), p_bin[moves]] -= 1
    moved = np.rint(swap[:, moves].astype(np.float32) @ step).astype(np.int64)
    c = np.arange(2 * n + 1, dtype=float)
    clog = c * np.log2(np.where(c > 0, c, 1.0))
    both = clog[p_count + q_count].sum()
    value = 1.0 + (clog[p_count + moved].sum(axis=1) + clog[q_count - moved].sum(axis=1) - both) / (2 * n)
    return np.maximum(0.0, value)


def effort_divergence(t_cost: np.ndarray, s_cost: np.ndarray, *, n_boot: int = 500, n_perm: int = JS_PERMUTATIONS,
                      seed: int = 0) -> dict:
    """Per item, a student's cost s_cost and its teacher's t_cost (finite, the teacher's mean > 0), both
    relative to the teacher's mean cost: the student's mean and SD, the teacher's SD, and the JS
    divergence of log(1 + relative effort) with its bootstrap CI, permutation p and the p's MC SE."""
    scale = t_cost.mean()
    t_rel, s_rel = np.log1p(t_cost / scale), np.log1p(s_cost / scale)
    low, high = js_bootstrap_ci(t_rel, s_rel, n_boot=n_boot, seed=seed)
    out = dict(effort_mean=float((s_cost / scale).mean()), effort_sd=float((s_cost / scale).std()),
               teacher_effort_sd=float((t_cost / scale).std()),
               js_teacher_student=js_divergence(t_rel, s_rel), js_ci_low=low, js_ci_high=high,
               js_p=js_permutation_p(t_rel, s_rel, n_perm=n_perm, seed=seed), js_n_perm=n_perm)
    out["js_p_mc_se"] = permutation_mc_se(out["js_p"], n_perm)
    return out
