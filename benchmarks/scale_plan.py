"""The paper's scale on paper: per-job and per-trace costs of tracking and reporting, measured on
studies that run here, then extrapolated (docs/scale-out.md, "The paper's scale on paper").

    python benchmarks/scale_plan.py [--target 200x10000x4] [--tasks 10]

Four replay sweeps into fresh sqlite stores separate the two costs: A = 5 jobs x 16k traces,
B = 5 jobs x 64k traces (4x the items), C = 20 jobs x 16k traces (4x the jobs, a quarter of the
items), D = 20 jobs x 64k traces. Each is timed end to end (the sweep, every process included),
its store measured (the sqlite file and the artifact folder), and the report built from MLflow in
its own process, timed, with its peak resident memory. A non-negative least-squares fit of
`cost = fixed + per_job * jobs + per_trace * traces` over A-D gives the per-job and per-trace
costs; the target study (models x items x samples, the items spread over --tasks tasks, a job per
model) is then `fixed + per_job * models + per_trace * traces`. Writes
benchmarks/results/scale_plan.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# models x tasks x items per task x samples; the job is a model (all its tasks in one job)
SIZES = {"A": (5, 2, 400, 4), "B": (5, 2, 1600, 4), "C": (20, 2, 100, 4), "D": (20, 2, 400, 4)}


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def populate(size, root: Path) -> float:
    """The replay sweep of a simulated study of that size into root's store, as replay_sweep.py times it."""
    from cogdistill.report.synthetic import simulate, write_replay_inputs

    sys.path.insert(0, str(HERE))
    from replay_sweep import sweep_once

    return sweep_once(HERE.parent, write_replay_inputs(simulate(*size, seed=1), root / "inputs"), root)


# The report module run in a process that prints its own peak resident memory as it exits.
REPORT = ("import atexit, resource, runpy, sys\n"
          "atexit.register(lambda: print('PEAK_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
          "file=sys.stderr))\n"
          "sys.argv = ['cogdistill.report'] + sys.argv[1:]\n"
          "runpy.run_module('cogdistill.report', run_name='__main__')")


def report(root: Path, env: dict) -> tuple[float, float]:
    """The report from MLflow in its own process: (wall seconds, peak RSS of that process in MiB)."""
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", REPORT, "--experiment", "scale", "--parent", "latest",
                           "--out", str(root / "report")], cwd=root, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if proc.returncode:
        sys.exit(proc.stdout[-3000:] + proc.stderr[-3000:])
    peak = [line for line in proc.stderr.splitlines() if line.startswith("PEAK_KIB")][-1]
    return wall, int(peak.split()[1]) / 1024


def fit(rows: list[dict], key: str) -> dict:
    """cost = fixed + per_cell * cells + per_trace * traces (a cell: one model x task of a job),
    least squares with no negative cost (NNLS)."""
    from scipy.optimize import nnls

    design = np.array([[1.0, r["cells"], r["traces"]] for r in rows])
    y = np.array([r[key] for r in rows], float)
    scale = design.max(axis=0)  # columns of similar size, so the solver is well conditioned
    coef = nnls(design / scale, y)[0] / scale
    return {"fixed": coef[0], "per_cell": coef[1], "per_trace": coef[2]}


def predict(model: dict, cells: float, traces: float) -> float:
    return model["fixed"] + model["per_cell"] * cells + model["per_trace"] * traces


def human(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n_bytes) < 1024:
            return f"{n_bytes:,.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:,.1f} PiB"


def measure() -> list[dict]:
    rows = []
    for name, size in SIZES.items():
        root = Path(tempfile.mkdtemp(prefix=f"scale-plan-{name}-"))
        store = root / "store"
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
               "COGDISTILL_CACHE_DIR": str(root / "cache"), "COGDISTILL_OUTPUT_DIR": str(root / "outputs")}
        sweep_s = populate(size, root)
        db = (store / "mlflow.db").stat().st_size
        artifacts = folder_bytes(store) - db
        report_s, peak_mib = report(root, env)
        m, t, i, s = size
        rows.append({"size": name, "shape": f"{m}x{t}x{i}x{s}", "jobs": m, "cells": m * t, "traces": m * t * i * s,
                     "sweep_s": sweep_s, "db_bytes": db, "artifact_bytes": artifacts, "report_s": report_s,
                     "report_peak_mib": peak_mib})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default="200x10x1000x4",
                    help="models x tasks x items per task x samples (default: 200 x 10,000 items x 4 = 8M traces)")
    ap.add_argument("--from-json", type=Path, help="refit the sizes measured in an earlier run's JSON")
    args = ap.parse_args()
    rows = json.loads(args.from_json.read_text())["sizes"] if args.from_json else measure()
    for r in rows:
        r.setdefault("cells", r["jobs"] * 2)
        print(f"{r['size']} {r.get('shape', '')}: {r['traces']:>7,} traces, {r['jobs']:>3} jobs, {r['cells']:>3} cells | "
              f"sweep {r['sweep_s']:6.1f} s | store {human(r['db_bytes'])} db + {human(r['artifact_bytes'])} artifacts | "
              f"report {r['report_s']:5.1f} s, peak {r['report_peak_mib']:,.0f} MiB", flush=True)

    checks = {"16x (20x8x400x4)": (160, 256_000), "64x (40x16x400x4)": (640, 1_024_000)}
    tm, tt, ti, ts = (int(x) for x in args.target.split("x"))
    target = (tm * tt, tm * tt * ti * ts)
    plan = {}
    print("\nfitted (fixed + per cell + per trace) and extrapolated; 16x and 64x are measured by "
          "replay_sweep.py and report_scale.py, compare:")
    print(f"  {'':>16}" + "".join(f"{name:>20}" for name in [*checks, f"target {args.target}"]))
    for key, unit in (("sweep_s", "s"), ("db_bytes", "B"), ("artifact_bytes", "B"), ("report_s", "s"),
                      ("report_peak_mib", "MiB")):
        model = fit(rows, key)
        values = [predict(model, *point) for point in [*checks.values(), target]]
        plan[key] = {**model, "checks": dict(zip(checks, values)), "target": values[-1]}
        cells = "".join(f"{human(v) if unit == 'B' else f'{v:,.0f} {unit}':>20}" for v in values)
        per_cell = human(model["per_cell"]) if unit == "B" else f"{model['per_cell']:.3g} {unit}"
        per_trace = human(model["per_trace"]) if unit == "B" else f"{model['per_trace'] * 1e6:.3g} {unit} per M"
        print(f"  {key:>16}{cells}   (fixed {model['fixed']:.3g}, per cell {per_cell}, per trace {per_trace})")
    out = HERE / "results" / "scale_plan.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"sizes": rows, "target": args.target, "plan": plan}, indent=2))
    print(f"\n{out}")


if __name__ == "__main__":
    main()
