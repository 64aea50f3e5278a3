"""Split-half reliability of human item difficulty and of a model's per-item cost; noise ceilings.

How well can a model's cost track human difficulty at all? Both are measured with noise: human
difficulty is a mean over a finite sample of participants, a sampled model's cost a mean over a
finite number of samples. The correlation between the two is bounded by
sqrt(rel_human * rel_model) (Spearman's correction for attenuation), the noise ceiling; r / ceiling
says how much of the explainable item variance the model's cost reaches.

The split scheme (permutation-based split-half, Parsons, Kruijt & Fox 2019, "Psychological
science needs a standard practice of reporting the reliability of cognitive-behavioral
measurements", AMPPS 2:378-395; the same idea as Spearman-Brown-corrected random splits in
splithalf/psych):

* humans: split the PARTICIPANTS at random into two halves (floor(P/2) and the rest); in each
  half compute every item's difficulty by the task's measure; correlate the two halves' item
  difficulties across items (Pearson, items defined in both halves only); correct for halving
  with Spearman-Brown, 2r / (1 + r). Repeat for many seeded splits and summarise the corrected
  values (mean = the reliability, median, SD, 2.5/97.5 percentiles).
* a model: split each item's SAMPLES at random into two halves (floor(k/2) and the rest), take
  the mean cost per half, log(1 + mean) (the scale the alignment statistics use), correlate
  across items, repeat. Needs >= 2 samples per item (sampling.n >= 2). With an odd k the halves
  are unequal (3 samples: 1 vs 2), and Spearman-Brown's factor 2 then underestimates (two halves
  correlate sqrt(rel_a rel_b), below the reliability of a 1.5-sample half): the correction is for
  the halves' real lengths (unequal_halves), to the reliability of the mean over all k samples,
  which is what the alignment's cost is. An ICC over single samples would answer for the mean of
  log(1 + cost), not log(1 + mean cost): biased by +.03 at 5 samples in the simulation of
  docs/report.md.

Every function is vectorised over splits: per split only a matrix product (participant x item
sums and counts) or, for medians, one pass per item over a (splits x trials) mask. The
multiplication task (14,338 trials, 239 participants, 60 items) takes well under a second for
1,000 splits.

A statistic that cannot be computed is returned as NaN with `note` saying why, never raised.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Dict, Optional

import numpy as np
import polars as pl

from cogdistill.registry import MEASURES

HUMAN_MEASURES = tuple(MEASURES)
MIN_PARTICIPANTS = 4
MIN_ITEMS = 3

NO_PARTICIPANTS = "the source has no participant ids"
NO_TRIALS = "no trial-level human data (item-level data, or no human file)"
ONE_SAMPLE = "one sample per item: cost reliability needs sampling.n >= 2"
NO_SPLIT = ("no split gave a defined correlation (fewer than 3 items defined in both halves, "
            "or constant values within a half)")


def spearman_brown(r, factor: float = 2.0):
    """Reliability of a measure `factor` times as long as one with reliability r:
    factor * r / (1 + (factor - 1) * r) (Spearman 1910; Brown 1910). factor=2: from a half to the
    whole. Works on floats and numpy arrays; r = -1 gives -inf (no finite prediction)."""
    r = np.asarray(r, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = factor * r / (1.0 + (factor - 1.0) * r)
    return float(out) if out.ndim == 0 else out


def unequal_halves(r, len_a: float, len_b: float, length: float):
    """Reliability of a measure of `length` units from the correlation r of two disjoint parts of
    len_a and len_b units (classical test theory, parallel units: a part of m units has reliability
    rel_m = m rho / (1 + (m - 1) rho), rho that of one unit, and two parts correlate
    sqrt(rel_a rel_b)). Solves r^2 = rel_a rel_b for rho (the root with r's sign), then
    Spearman-Brown to `length`. Equal halves (len_a = len_b = length / 2) give 2r / (1 + r) exactly.
    Works on floats and arrays; a negative r past what the lengths allow gives -inf."""
    r = np.asarray(r, dtype=float)
    a, b = float(len_a), float(len_b)
    r2 = r * r
    quad = a * b - r2 * (a - 1.0) * (b - 1.0)  # > 0: a + b - 1 at |r| = 1
    lin = r2 * (a + b - 2.0)
    root = np.sqrt(lin * lin + 4.0 * quad * r2)
    rho = np.where(r >= 0, lin + root, lin - root) / (2.0 * quad)
    denom = 1.0 + (length - 1.0) * rho
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(denom > 0, length * rho / np.where(denom > 0, denom, 1.0), -np.inf)
    return float(out) if out.ndim == 0 else out


def participant_halves(n_participants: int, n_splits: int, seed: int = 0) -> np.ndarray:
    """(n_splits, n_participants) booleans: True for the participants in half A of each split.

    Half A holds floor(P/2) participants drawn at random without replacement; half B the rest.
    Participants are the columns in sorted order of their ids (see human_split_half)."""
    rng = np.random.default_rng(seed)
    order = np.argsort(rng.random((n_splits, n_participants)), axis=1)
    halves = np.zeros((n_splits, n_participants), dtype=bool)
    np.put_along_axis(halves, order[:, : n_participants // 2], True, axis=1)
    return halves


def _undefined(note: str, *, n_participants: Optional[int] = None, n_items: int = 0) -> Dict:
    nan = float("nan")
    return {"reliability": nan, "median": nan, "sd": nan, "ci_low": nan, "ci_high": nan, "r_half": nan,
            "n_splits_used": 0, "n_participants": n_participants, "n_items": n_items, "note": note}


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r per row of two (splits, items) arrays over the items finite in both; NaN where
    fewer than MIN_ITEMS items remain or a half is constant."""
    valid = np.isfinite(a) & np.isfinite(b)
    n = valid.sum(axis=1)
    a0, b0 = np.where(valid, a, 0.0), np.where(valid, b, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        da = np.where(valid, a0 - (a0.sum(axis=1) / n)[:, None], 0.0)
        db = np.where(valid, b0 - (b0.sum(axis=1) / n)[:, None], 0.0)
        va, vb = (da * da).sum(axis=1), (db * db).sum(axis=1)
        r = (da * db).sum(axis=1) / np.sqrt(va * vb)
    # a half whose values are all equal (up to rounding of the mean) has no correlation
    constant = (va <= 1e-20 * (a0 * a0).sum(axis=1)) | (vb <= 1e-20 * (b0 * b0).sum(axis=1))
    r[(n < MIN_ITEMS) | constant] = np.nan
    return np.clip(r, -1.0, 1.0)


def _summary(r: np.ndarray, *, n_participants: Optional[int], n_items: int, correct=spearman_brown) -> Dict:
    """`correct` (Spearman-Brown) per split, then mean (the reliability), median, SD and 95%
    percentile interval over the splits whose correlation is defined."""
    sb = correct(r[np.isfinite(r)])
    sb = sb[np.isfinite(sb)]  # r = -1 exactly has no finite Spearman-Brown value
    if sb.size == 0:
        return _undefined(NO_SPLIT, n_participants=n_participants, n_items=n_items)
    return {
        "reliability": float(sb.mean()),
        "median": float(np.median(sb)),
        "sd": float(sb.std(ddof=1)) if sb.size > 1 else float("nan"),
        "ci_low": float(np.percentile(sb, 2.5)),
        "ci_high": float(np.percentile(sb, 97.5)),
        "r_half": float(np.mean(r[np.isfinite(r)])),
        "n_splits_used": int(sb.size),
        "n_participants": n_participants,
        "n_items": n_items,
        "note": None,
    }


def _half_means(value: np.ndarray, person: np.ndarray, item: np.ndarray, halves: np.ndarray,
                n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Per split and item, the mean value over the trials of half A and of half B."""
    n_people = halves.shape[1]
    sums = np.zeros((n_people, n_items))
    counts = np.zeros((n_people, n_items))
    np.add.at(sums, (person, item), value)
    np.add.at(counts, (person, item), 1.0)
    a = halves.astype(float)
    sum_a, count_a = a @ sums, a @ counts
    sum_b, count_b = sums.sum(axis=0) - sum_a, counts.sum(axis=0) - count_a
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count_a > 0, sum_a / count_a, np.nan), np.where(count_b > 0, sum_b / count_b, np.nan)


def _half_medians(value: np.ndarray, person: np.ndarray, item: np.ndarray, halves: np.ndarray,
                  n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Per split and item, the median value over the trials of half A and of half B.

    Trials are sorted by item, then value. For a chunk of splits, a running count of each half's
    trials along that order (cumsum of the membership mask) gives, per item, how many of its
    trials a half holds (k) and where its rank-ceil(k/2) and rank-(k//2 + 1) trials sit: the first
    position whose running count reaches them (one searchsorted over all rows at once, each row
    offset so that the flattened counts stay sorted)."""
    order = np.lexsort((value, item))
    value, person, item = value[order], person[order], item[order]
    n = value.size
    bounds = np.searchsorted(item, np.arange(n_items + 1))  # item j's trials: bounds[j]:bounds[j+1]
    n_splits = halves.shape[0]
    out = [np.full((n_splits, n_items), np.nan), np.full((n_splits, n_items), np.nan)]
    chunk = max(1, 2_000_000 // max(n, 1))
    for first in range(0, n_splits, chunk):
        rows = slice(first, min(first + chunk, n_splits))
        in_a = halves[rows][:, person]  # (splits, trials)
        s = in_a.shape[0]
        # int32 is enough: s * (n + 1) stays near 2e6 (the chunk size), far below 2**31
        row_offset = (np.arange(s, dtype=np.int32) * (n + 1))[:, None]
        for half, mask in enumerate((in_a, ~in_a)):
            cum = np.zeros((s, n + 1), dtype=np.int32)
            np.cumsum(mask, axis=1, out=cum[:, 1:])  # cum[:, t]: members among the first t trials
            before = cum[:, bounds[:-1]]
            k = cum[:, bounds[1:]] - before
            flat = (cum[:, 1:] + row_offset).ravel()  # nondecreasing within a row, rows separated
            middle = []
            for rank in ((k + 1) // 2, k // 2 + 1):
                pos = np.searchsorted(flat, (before + rank + row_offset).ravel(), side="left")
                t = np.minimum(pos, flat.size - 1).reshape(s, n_items) - np.arange(s)[:, None] * n
                middle.append(value[np.clip(t, 0, n - 1)])
            out[half][rows] = np.where(k > 0, (middle[0] + middle[1]) / 2.0, np.nan)
    return out[0], out[1]


def human_split_half(trials: pl.DataFrame, measure: str, *, n_splits: int = 1000, seed: int = 0) -> Dict:
    """Permutation split-half reliability of human item difficulty over participants.

    trials: Task.trials (item_id, participant, rt_s, correct, keep). measure: the task's
    `difficulty.measure`: mean_rt / median_rt / mean_log_rt over the `keep` trials' rt_s, or
    error_rate = 1 - mean correct over all trials with a correctness value. Trials without a
    participant id are left out.

    Returns {reliability (mean Spearman-Brown value over splits), median, sd, ci_low, ci_high
    (2.5/97.5 percentiles over splits), r_half (mean uncorrected half-half r), n_splits_used,
    n_participants, n_items, note}; note is None when defined, else the reason and every
    statistic NaN: no participant ids, fewer than 4 participants, fewer than 3 items, constant
    difficulty.
    """
    if measure not in HUMAN_MEASURES:
        raise ValueError(f"measure {measure!r}: use one of {', '.join(HUMAN_MEASURES)}")
    if trials.height == 0:
        return _undefined(NO_TRIALS, n_participants=0)
    if trials["participant"].null_count() == trials.height:
        return _undefined(NO_PARTICIPANTS, n_items=trials["item_id"].n_unique())
    rows = trials.filter(pl.col("participant").is_not_null())
    if measure == "error_rate":
        rows = rows.filter(pl.col("correct").is_not_null()).with_columns(_v=1.0 - pl.col("correct"))
    else:
        rows = rows.filter(pl.col("keep") & pl.col("rt_s").is_not_null())
        if measure == "mean_log_rt":
            rows = rows.filter(pl.col("rt_s") > 0).with_columns(_v=pl.col("rt_s").log())
        else:
            rows = rows.with_columns(_v=pl.col("rt_s"))
    n_people, n_items = rows["participant"].n_unique(), rows["item_id"].n_unique()
    if n_people < MIN_PARTICIPANTS:
        return _undefined(f"fewer than {MIN_PARTICIPANTS} participants ({n_people})",
                          n_participants=n_people, n_items=n_items)
    if n_items < MIN_ITEMS:
        return _undefined(f"fewer than {MIN_ITEMS} items ({n_items})", n_participants=n_people, n_items=n_items)
    agg = pl.col("_v").median() if measure == "median_rt" else pl.col("_v").mean()
    full = rows.group_by("item_id").agg(agg)["_v"].to_numpy()
    if np.ptp(full) <= 1e-12 * max(1.0, float(np.abs(full).max())):
        return _undefined(f"constant difficulty: every item has the same {measure} ({full[0]:.6g})",
                          n_participants=n_people, n_items=n_items)
    # participants and items as 0-based indices in sorted order of their ids
    codes = rows.select(pl.col("participant").rank("dense") - 1, pl.col("item_id").rank("dense") - 1)
    person, item = codes["participant"].to_numpy(), codes["item_id"].to_numpy()
    value = rows["_v"].cast(pl.Float64).to_numpy()
    halves = participant_halves(n_people, n_splits, seed)
    half = _half_medians if measure == "median_rt" else _half_means
    a, b = half(value, person, item, halves, n_items)
    return _summary(_rowwise_pearson(a, b), n_participants=n_people, n_items=n_items)


def model_split_half(traces: pl.DataFrame, *, n_splits: int = 100, seed: int = 0) -> Dict:
    """Split-half reliability of a model's per-item cost over its samples.

    traces: one model x task's traces with columns item_id, sample_idx, cost (tokens, >= 0;
    null costs are left out). Each item's samples are split at random into floor(k/2) and the
    rest; per half the mean cost, log(1 + mean); Pearson r across items; corrected to the mean
    over all k samples for the halves' real lengths (unequal_halves; Spearman-Brown when every k is
    even; with k varying by item, the harmonic means of the lengths); over `n_splits` seeded
    splits. Items with fewer than 2 samples are left out.

    Returns the keys of human_split_half (n_participants is None); undefined with the reason for
    one sample per item, fewer than 3 items, constant costs.
    """
    missing = [c for c in ("item_id", "sample_idx", "cost") if c not in traces.columns]
    if missing:
        raise ValueError(f"traces lack column(s) {missing}; need item_id, sample_idx, cost")
    rows = traces.select("item_id", "sample_idx", pl.col("cost").cast(pl.Float64)).filter(
        pl.col("cost").is_not_null() & pl.col("cost").is_finite())
    if (rows["cost"] < 0).any():
        raise ValueError("costs must be token counts (>= 0)")
    # numpy from here: this runs once per model x task cell of a report (hundreds of cells)
    rows = rows.sort("item_id", "sample_idx")
    item = rows["item_id"].rle_id().to_numpy()  # sorted: runs of one item are its samples
    counts = np.bincount(item)  # samples per item
    keep_item = counts >= 2
    n_items = int(keep_item.sum())
    if n_items == 0:
        return _undefined(ONE_SAMPLE if len(counts) else f"fewer than {MIN_ITEMS} items (0)", n_items=len(counts))
    if n_items < MIN_ITEMS:
        return _undefined(f"fewer than {MIN_ITEMS} items with >= 2 samples ({n_items})", n_items=n_items)
    values = rows["cost"].to_numpy()
    in_kept = keep_item[item]
    values, item = values[in_kept], np.cumsum(keep_item)[item[in_kept]] - 1  # items renumbered 0..n_items-1
    if np.all(values == values[0]):
        return _undefined(f"constant costs: every sample costs {values[0]:g}", n_items=n_items)
    # (items, K) costs padded with 0, K = the most samples of any item; items in sorted id order,
    # each item's samples in sample_idx order (rows are sorted, so a sample's slot is its rank in the item)
    k = counts[keep_item]
    starts = np.concatenate([[0], np.cumsum(k)[:-1]])
    slot = np.arange(values.size) - starts[item]
    width = int(k.max())
    cost = np.zeros((n_items, width))
    cost[item, slot] = values
    k_a = k // 2
    total = cost.sum(axis=1)
    # each part's error variance is the items' mean of sigma^2 / length: lengths enter as harmonic means
    correct = partial(unequal_halves, len_a=_harmonic(k_a), len_b=_harmonic(k - k_a), length=_harmonic(k))
    masks = _equal_k_masks(k)
    if masks is not None:  # every item has the same k: a split is one of the C(k, k/2) halves per item
        draws = np.random.default_rng(seed).integers(0, len(masks), size=(n_splits, n_items))
        sum_a = (cost @ masks.T.astype(float))[np.arange(n_items), draws]
        return _summary(_rowwise_pearson(np.log1p(sum_a / k_a), np.log1p((total - sum_a) / (k - k_a))),
                        n_participants=None, n_items=n_items, correct=correct)
    rs = []
    for in_a in _sample_half_chunks(k, n_splits, seed):
        sum_a = (cost * in_a).sum(axis=2)
        rs.append(_rowwise_pearson(np.log1p(sum_a / k_a), np.log1p((total - sum_a) / (k - k_a))))
    return _summary(np.concatenate(rs), n_participants=None, n_items=n_items, correct=correct)


def _harmonic(lengths: np.ndarray) -> float:
    return float(lengths.size / np.sum(1.0 / lengths))


def _equal_k_masks(k: np.ndarray, most: int = 5000) -> Optional[np.ndarray]:
    """Every half of k samples as a boolean row, when all items have the same k and there are at
    most `most` halves (k <= 15); else None. Drawing one per item is a uniform random half."""
    from itertools import combinations

    k = np.asarray(k)
    width = int(k.max())
    if not (k == width).all() or math.comb(width, width // 2) > most:
        return None
    halves = np.array(list(combinations(range(width), width // 2)))
    masks = np.zeros((len(halves), width), bool)
    masks[np.arange(len(halves))[:, None], halves] = True
    return masks


def _sample_half_chunks(k: np.ndarray, n_splits: int, seed: int):
    """sample_halves in chunks of splits (bounded memory); the chunks concatenate to it."""
    k = np.asarray(k)
    n_items, width = k.size, int(k.max())
    present = np.arange(width)[None, :] < k[:, None]
    masks = _equal_k_masks(k)
    if masks is not None:  # the same draws as model_split_half's fast path
        yield masks[np.random.default_rng(seed).integers(0, len(masks), size=(n_splits, n_items))]
        return
    rng = np.random.default_rng(seed)
    chunk = max(1, 4_000_000 // (n_items * width))
    for start in range(0, n_splits, chunk):
        s = min(chunk, n_splits - start)
        keys = np.where(present, rng.random((s, n_items, width)), np.inf)
        rank = np.argsort(np.argsort(keys, axis=2), axis=2)  # a random order of each item's samples
        yield rank < (k // 2)[None, :, None]


def sample_halves(k, n_splits: int, seed: int = 0) -> np.ndarray:
    """(n_splits, items, max k) booleans: True for the samples in half A of each split.

    Item i has k[i] samples in columns 0..k[i]-1 (its samples in sample_idx order; items in
    sorted order of their ids, as model_split_half sees them); half A holds floor(k[i]/2) of them
    drawn at random without replacement, half B the rest."""
    return np.concatenate(list(_sample_half_chunks(np.asarray(k), n_splits, seed)))


def noise_ceiling(rel_human: Optional[float], rel_model: Optional[float] = None) -> float:
    """The highest correlation two noisy measures can reach: sqrt(rel_human * rel_model)
    (Spearman's attenuation bound). When the model's reliability is undefined (None or NaN:
    greedy decoding, one sample per item), the ceiling uses the human reliability alone,
    sqrt(rel_human), as if the model's cost were noiseless (ceiling_note says so). NaN when the
    human reliability is undefined or either reliability is negative."""
    if not _finite(rel_human) or rel_human < 0:
        return float("nan")
    if not _finite(rel_model):
        return math.sqrt(rel_human)
    if rel_model < 0:
        return float("nan")
    return math.sqrt(rel_human * rel_model)


def ceiling_note(rel_human: Optional[float], rel_model: Optional[float] = None) -> Optional[str]:
    """Why noise_ceiling is what it is, or None for the full sqrt(rel_human * rel_model)."""
    if not _finite(rel_human):
        return "undefined: the human split-half reliability is undefined"
    if rel_human < 0:
        return "undefined: the human split-half reliability is negative"
    if not _finite(rel_model):
        return "human reliability only: the model's cost reliability is undefined (one sample per item)"
    if rel_model < 0:
        return "undefined: the model's cost reliability is negative"
    return None


def normalised_r(r: Optional[float], ceiling: Optional[float]) -> float:
    """r / ceiling: the share of the correlation the measurement noise allows that the model
    reaches. NaN when either is undefined or the ceiling is not positive. Not clipped: noise can
    put it above 1."""
    if not _finite(r) or not _finite(ceiling) or ceiling <= 0:
        return float("nan")
    return float(r) / float(ceiling)


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float, np.floating, np.integer)) and math.isfinite(x)


def cell_ceiling(r: Optional[float], human: Dict, model: Optional[Dict] = None) -> Dict:
    """For one model x task: the noise ceiling from the two split-half results (human_split_half,
    model_split_half), r / ceiling beside r, and why either is what it is."""
    rel_h = human.get("reliability") if human else None
    rel_m = model.get("reliability") if model else None
    ceiling = noise_ceiling(rel_h, rel_m)
    note = ceiling_note(rel_h, rel_m)
    if note and note.startswith("undefined: the human") and human and human.get("note"):
        note = f"undefined: human reliability: {human['note']}"
    return {"human_reliability": rel_h if _finite(rel_h) else float("nan"),
            "cost_reliability": rel_m if _finite(rel_m) else float("nan"),
            "noise_ceiling": ceiling, "r_normalised": normalised_r(r, ceiling), "ceiling_note": note}

