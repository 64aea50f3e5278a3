"""Bias of the cost's split-half reliability by simulation (issue 22, item 6): Spearman-Brown's
factor 2 (before) against the correction for the halves' real lengths (reliability.unequal_halves,
now), on the same splits of the same simulated studies.

    python benchmarks/cost_reliability.py [--items 60,400,2000] [--samples 2,3,4,5] [--reps 300]

Each item's cost per sample is mu_i + e (mu_i ~ N(2000, 200), e ~ N(0, 400): one sample's
reliability .2), rounded to tokens. The truth is the definition of the reliability of the report's
cost log(1 + mean of k samples): the correlation of two independent replicates of it over 400,000
simulated items. Seed 7 for the studies, 123 for the truth. Prints the bias (estimate - truth) of
each estimator with its SE.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import polars as pl

from cogdistill.stats.reliability import model_split_half, sample_halves, spearman_brown

MU, S_ITEM, S_NOISE = 2000.0, 200.0, 400.0


def costs(rng, n_items: int, k: int) -> pl.DataFrame:
    means = rng.normal(MU, S_ITEM, n_items)
    cost = np.rint(np.clip(means[:, None] + rng.normal(0, S_NOISE, (n_items, k)), 1, None))
    return pl.DataFrame({"item_id": np.repeat([f"i{j:05d}" for j in range(n_items)], k),
                         "sample_idx": np.tile(np.arange(k), n_items), "cost": cost.ravel()})


def truth(k: int, n: int = 400_000) -> float:
    rng = np.random.default_rng(123)
    means = rng.normal(MU, S_ITEM, n)
    twice = [np.log1p(np.rint(np.clip(means[:, None] + rng.normal(0, S_NOISE, (n, k)), 1, None)).mean(axis=1))
             for _ in range(2)]
    return float(np.corrcoef(*twice)[0, 1])


def factor_two(frame: pl.DataFrame, k: int, n_splits: int, seed: int) -> float:
    """The estimator before issue 22: per split, Pearson r of log(1 + half means), 2r / (1 + r), mean."""
    cost = frame.sort("item_id", "sample_idx")["cost"].to_numpy().reshape(-1, k)
    halves = sample_halves(np.full(cost.shape[0], k), n_splits, seed)
    a = np.log1p((cost * halves).sum(axis=2) / (k // 2))
    b = np.log1p((cost * ~halves).sum(axis=2) / (k - k // 2))
    r = np.array([np.corrcoef(x, y)[0, 1] for x, y in zip(a, b)])
    return float(np.mean(spearman_brown(r)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", default="60,400,2000")
    ap.add_argument("--samples", default="2,3,4,5")
    ap.add_argument("--reps", type=int, default=300)
    args = ap.parse_args()
    print(f"{'items':>6} {'k':>2} {'truth':>7} {'before':>16} {'now':>16}")
    for n_items in (int(x) for x in args.items.split(",")):
        for k in (int(x) for x in args.samples.split(",")):
            true = truth(k)
            rng = np.random.default_rng(7)
            before, now = [], []
            for i in range(args.reps):
                frame = costs(rng, n_items, k)
                now.append(model_split_half(frame, seed=i)["reliability"])
                before.append(factor_two(frame, k, 100, seed=i))
            cells = [f"{np.mean(v) - true:+.4f} ± {np.std(v, ddof=1) / math.sqrt(len(v)):.4f}" for v in (before, now)]
            print(f"{n_items:>6} {k:>2} {true:7.4f} {cells[0]:>16} {cells[1]:>16}")


if __name__ == "__main__":
    main()
