"""Paths and human data: the repository, the real data mirror (when present), synthetic trial files."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import List

REPO = Path(__file__).resolve().parents[2]
SHARED_MIRROR = REPO.parent / "shared" / "reference-data"


def real_mirror() -> Path | None:
    env = os.environ.get("COGDISTILL_DATA_MIRROR")
    for candidate in (Path(env) if env else None, SHARED_MIRROR):
        if candidate and (candidate / "soh-multiplication" / "consolidated_mult_data.csv").is_file():
            return candidate
    return None


def write_mult_trials(path: Path, problems: List[tuple], trials_per_item: int = 12, seed: int = 0) -> None:
    """Trial rows in the soh-multiplication layout; RT grows with the product."""
    rng = random.Random(seed)
    lines = ["typedAnswer,multiplyRT,multiplyCorr,problem,OperandType,productType,participant,group"]
    for a, b in problems:
        for t in range(trials_per_item):
            correct = 1 if t % 6 else 0
            rt = 0.8 + 0.05 * a * b + rng.random() * 0.3
            lines.append(f"{a * b if correct else a * b + 1},{rt:.4f},{correct},{a} x {b} =,smallFirst,smallProd,{1000 + t},ABC")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
