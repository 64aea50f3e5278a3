"""A replay sweep's wall time, this checkout against another one side by side: what a user waits
for when a sweep's traces already exist (the per-job fixed costs: start-up, tracking, figures).

    python benchmarks/replay_sweep.py [--size 20x8x400x4] [--repeat 3] [--before /path/to/other/checkout]

--size is models x tasks x items x samples (20x8x400x4: 20 jobs, 256,000 traces, the sweep that
benchmarks/report_scale.py's populate() runs). Each run is
`python -m cogdistill -m engine=replay ... study=scale analysis.bootstrap=100 analysis.report=false`
into a fresh MLflow store; --before runs the same command with PYTHONPATH at that checkout (a git
worktree of an earlier commit), alternating with this one, so both see the same machine load.
Prints the median per checkout, seconds per job and the ratio; writes benchmarks/results/replay_sweep.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def sweep_once(code: Path, inputs, root: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(code), "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'store' / 'mlflow.db'}",
           "COGDISTILL_CACHE_DIR": str(root / "cache"), "COGDISTILL_OUTPUT_DIR": str(root / "outputs")}
    began = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "cogdistill", "-m", "engine=replay", f"engine.path={inputs.traces}",
         f"model={','.join(inputs.models)}", f"task=[{','.join(inputs.tasks)}]",
         f"hydra.searchpath=[file://{inputs.conf_dir}]", f"data.mirror={inputs.mirror}", "study=scale",
         "analysis.bootstrap=100", "analysis.report=false"],
        cwd=root, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if proc.returncode:
        sys.exit(f"{code}: exit {proc.returncode}\n" + proc.stdout[-3000:] + proc.stderr[-3000:])
    return seconds


def main() -> None:
    from cogdistill.report.synthetic import simulate, write_replay_inputs

    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="20x8x400x4", help="models x tasks x items x samples")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--before", type=Path, help="another checkout to time side by side (e.g. a git worktree)")
    args = ap.parse_args()
    m, t, i, s = (int(x) for x in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="replay-sweep-"))
    inputs = write_replay_inputs(simulate(m, t, i, s, seed=1), work / "inputs")
    codes = {"this checkout": REPO, **({"before": args.before.resolve()} if args.before else {})}
    times: dict = {name: [] for name in codes}
    for n in range(args.repeat):
        for name, code in codes.items():
            root = work / f"{name.replace(' ', '-')}-{n}"
            root.mkdir()
            times[name].append(sweep_once(code, inputs, root))
            print(f"run {n + 1}/{args.repeat} {name:<14} {times[name][-1]:7.1f} s", flush=True)
    rows = {name: {"median_s": statistics.median(ts), "per_job_s": statistics.median(ts) / m, "runs_s": ts}
            for name, ts in times.items()}
    print(f"\nreplay sweep {args.size} ({m} jobs, {m * t * i * s:,} traces), median of {args.repeat}:")
    for name, row in rows.items():
        print(f"  {name:<14} {row['median_s']:7.1f} s  = {row['per_job_s']:5.2f} s per job")
    if "before" in rows:
        ratio = rows["this checkout"]["median_s"] / rows["before"]["median_s"]
        print(f"  ratio this/before: {ratio:.2f} (x{1 / ratio:.1f} faster)")
    out = HERE / "results" / "replay_sweep.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"size": args.size, "repeat": args.repeat, **rows}, indent=2))
    print(out)


if __name__ == "__main__":
    main()
