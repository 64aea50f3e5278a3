"""How the comparison report scales: simulated sweeps of 1x, 4x and 16x size go through the real
pipeline (a replay sweep into a fresh MLflow store), then the report is built from MLflow and
timed stage by stage. 16x is 20 models x 8 tasks x 400 items x 4 samples (256,000 traces).

    python benchmarks/report_scale.py [--sizes 5x2x400x4,10x4x400x4,20x8x400x4] [--bootstrap 2000]

Prints one row per size and the time ratios to 1x; writes benchmarks/results/report_scale.json.
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

HERE = Path(__file__).resolve().parent


def populate(size: str, root: Path, env: dict) -> float:
    from cogdistill.report.synthetic import simulate, write_replay_inputs

    m, t, i, s = (int(x) for x in size.split("x"))
    inputs = write_replay_inputs(simulate(m, t, i, s, seed=1), root / "inputs")
    began = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "cogdistill", "-m", "engine=replay", f"engine.path={inputs.traces}",
         f"model={','.join(inputs.models)}", f"task=[{','.join(inputs.tasks)}]",
         f"hydra.searchpath=[file://{inputs.conf_dir}]", f"data.mirror={inputs.mirror}", "study=scale",
         "analysis.bootstrap=100", "analysis.report=false"],
        cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(proc.stdout[-3000:] + proc.stderr[-3000:])
    return time.perf_counter() - began


def time_report(uri: str, out: Path, n_boot: int) -> dict:
    from cogdistill.report import build
    from cogdistill.report.figures import write_all
    from cogdistill.report.render import markdown
    from cogdistill.report.study import from_mlflow

    t0 = time.perf_counter()
    study = from_mlflow(uri, "scale")
    t1 = time.perf_counter()
    report = build(study, n_boot=n_boot)
    t2 = time.perf_counter()
    write_all(report, out / "figures")
    markdown(report, {})
    report.write_json(out / "report.json")
    t3 = time.perf_counter()
    return {"traces": study.traces.height, "load_s": t1 - t0, "analyses_s": t2 - t1, "figures_s": t3 - t2,
            "total_s": t3 - t0, "stages": report.timings}


def warm_up(tmp: Path) -> None:
    """Import and first-call costs (mlflow, scipy, matplotlib) once, so sizes compare analysis work."""
    from cogdistill.report import write_report
    from cogdistill.report.synthetic import simulate

    write_report(simulate(3, 1, 20, 1), tmp, n_boot=10)


def main() -> None:
    from cogdistill.console import quiet_third_party

    quiet_third_party()
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="5x2x400x4,10x4x400x4,20x8x400x4")
    ap.add_argument("--bootstrap", type=int, default=2000)
    args = ap.parse_args()
    warm_up(Path(tempfile.mkdtemp(prefix="report-warm-up-")))
    rows = []
    for size in args.sizes.split(","):
        root = Path(tempfile.mkdtemp(prefix=f"report-scale-{size}-"))
        uri = f"sqlite:///{root / 'store' / 'mlflow.db'}"
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "COGDISTILL_CACHE_DIR": str(root / "cache"),
               "COGDISTILL_OUTPUT_DIR": str(root / "outputs")}
        populate_s = populate(size, root, env)
        os.environ["MLFLOW_TRACKING_URI"] = uri
        row = {"size": size, "populate_s": populate_s, **time_report(uri, root / "report", args.bootstrap)}
        rows.append(row)
        print(f"{size:>12}: {row['traces']:>7} traces | replay sweep {populate_s:6.1f} s | report from MLflow "
              f"{row['total_s']:6.1f} s (load {row['load_s']:.1f}, analyses {row['analyses_s']:.1f}, "
              f"figures {row['figures_s']:.1f})", flush=True)
    base = rows[0]
    print("\nsize ratio (traces) vs report time ratio, relative to the first size:")
    for row in rows:
        print(f"{row['size']:>12}: traces x{row['traces'] / base['traces']:5.1f}  report time "
              f"x{row['total_s'] / base['total_s']:5.2f}  analyses x{row['analyses_s'] / base['analyses_s']:5.2f}")
    out = HERE / "results" / "report_scale.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    print(f"\n{out}")


if __name__ == "__main__":
    main()
