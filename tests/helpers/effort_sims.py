"""Simulated effort studies as arrays, for the calibration of the effort analysis (size, power, BF01,
the verdict's confusion table): tests/test_effort_calibration.py and benchmarks/effort_calibration.py.

The structure is report.synthetic.EffortTruth's: at level l and item i (z_i: human difficulty),
    log cost_il = rho_l z_i + sqrt(1 - rho_l^2) (sqrt(s) u_i + sqrt(1 - s) e_il)
so r(cost_l, difficulty) = rho_l and an item effect u_i (share s) makes the levels correlate.
"""

from __future__ import annotations

import math
from typing import Dict, Sequence, Tuple

import numpy as np
import polars as pl

# (name, per-level rho): the truth of r(delta, difficulty) is > 0 for a dial, 0 for a ceiling, < 0 reversed
TRUTHS: Dict[str, Tuple[float, ...]] = {"dial": (0.2, 0.5, 0.8), "ceiling": (0.5, 0.5, 0.5),
                                        "reversed": (0.8, 0.5, 0.2)}


def draw(rng: np.random.Generator, n: int, rhos: Sequence[float], share: float = 0.5) -> Tuple[np.ndarray, np.ndarray]:
    """(costs n x k, difficulty n) for one study."""
    z, u = rng.standard_normal(n), rng.standard_normal(n)
    costs = np.column_stack([rho * z + math.sqrt(1 - rho**2) * (math.sqrt(share) * u + math.sqrt(1 - share)
                                                                  * rng.standard_normal(n)) for rho in rhos])
    return costs, z


def as_rows(costs: np.ndarray, difficulty: np.ndarray, levels: Sequence[str]) -> pl.DataFrame:
    """The rows stats.effort.level_interaction reads (item_id, level, log_cost, human_difficulty)."""
    n = difficulty.size
    return pl.DataFrame({"item_id": np.tile([f"i{i:04d}" for i in range(n)], len(levels)),
                         "level": np.repeat(list(levels), n), "log_cost": costs.T.ravel(),
                         "human_difficulty": np.tile(difficulty, len(levels))})
