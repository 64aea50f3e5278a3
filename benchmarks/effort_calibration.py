"""Calibration of the effort analysis (issue 22), by simulation, printed side by side with the
previous version (--before <checkout>: that checkout's cogdistill/stats/effort.py):

  size     rejection rate of the omnibus test at nominal .05 when every level shares r (0, .5, .7)
  power    rejection rate when r changes from .3 to .3-.7 between two levels
  bf01     how often BF01 > 3 ("evidence that r does not change") when r changes from .3 to .7
  verdict  the ceiling-or-dial verdict's confusion table on simulated dial, ceiling and reversed studies

    .venv/bin/python benchmarks/effort_calibration.py [--sims 2000] [--items 40] [--before /path/to/checkout]

Seeds are fixed (numpy default_rng(seed)); docs/report.md records a run's result.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from helpers.effort_sims import TRUTHS, as_rows, draw  # noqa: E402


def load_effort(checkout: Path | None):
    if checkout is None:
        from cogdistill.stats import effort
        return effort
    spec = importlib.util.spec_from_file_location("effort_before", checkout / "cogdistill/stats/effort.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def omnibus(E, costs, difficulty):
    levels = [f"l{j}" for j in range(costs.shape[1])]
    return E.level_interaction(as_rows(costs, difficulty, levels), levels)


def size_and_power(E, sims: int, n: int, seed: int) -> dict:
    out = {}
    rng = np.random.default_rng(seed)
    for rho in (0.0, 0.5, 0.7):
        p = [omnibus(E, *draw(rng, n, (rho, rho, rho)))["p"] for _ in range(sims)]
        out[f"size r={rho}"] = float(np.mean(np.array(p) < 0.05))
    for high in (0.3, 0.4, 0.5, 0.6, 0.7):
        res = [omnibus(E, *draw(rng, n, (0.3, high))) for _ in range(sims)]
        out[f"power .3->{high}"] = float(np.mean([r["p"] < 0.05 for r in res]))
        if high == 0.7:
            out["BF01>3 at .3->.7"] = float(np.mean([r["bf01"] > 3 for r in res]))
            out["BF01>3 and p<.05 at .3->.7"] = float(np.mean([r["bf01"] > 3 and r["p"] < 0.05 for r in res]))
    return out


def confusion(E, sims: int, sizes, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    table = {}
    for n in sizes:
        for truth, rhos in TRUTHS.items():
            verdicts = Counter()
            for _ in range(sims):
                costs, d = draw(rng, n, rhos)
                cd = E.ceiling_or_dial(costs[:, -1] - costs[:, 0], d, low="l0", high="l2", n_boot=20)
                verdicts[(cd["verdict"] or "undefined").split(" ")[0]] += 1
            table[(n, truth)] = {k: v / sims for k, v in verdicts.items()}
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sims", type=int, default=2000)
    ap.add_argument("--items", type=int, default=40)
    ap.add_argument("--verdict-sims", type=int, default=1000)
    ap.add_argument("--before", type=Path, default=None, help="a checkout of the previous version")
    args = ap.parse_args()
    versions = {"now": load_effort(None)}
    if args.before:
        versions = {"before": load_effort(args.before), **versions}
    rows = {name: size_and_power(E, args.sims, args.items, seed=22) for name, E in versions.items()}
    se = (0.05 * 0.95 / args.sims) ** 0.5
    print(f"omnibus test, {args.items} items, {args.sims} studies per row (Monte Carlo SE at .05: {se:.4f})")
    print(f"{'':28s}" + "".join(f"{name:>10s}" for name in rows))
    for key in next(iter(rows.values())):
        print(f"{key:28s}" + "".join(f"{rows[name][key]:10.3f}" for name in rows))
    print(f"\nverdict confusion ({args.verdict_sims} studies per row; rows: items x truth, columns: verdict)")
    for name, E in versions.items():
        table = confusion(E, args.verdict_sims, (6, 40, 300), seed=23)
        labels = sorted({k for row in table.values() for k in row})
        print(f"[{name}]{'':14s}" + "".join(f"{k:>11s}" for k in labels))
        for (n, truth), row in table.items():
            print(f"{n:5d} items, {truth:9s}" + "".join(f"{row.get(k, 0.0):11.3f}" for k in labels))


if __name__ == "__main__":
    main()
