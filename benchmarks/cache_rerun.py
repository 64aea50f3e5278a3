"""The demo sweep from an empty generation cache, then the same sweep again with the cache full:
the re-run's wall time as a fraction of the first run's (target: <= 2%).

    python benchmarks/cache_rerun.py [--args "task.multiplication.max_items=20 ..."]

Both runs are `python -m cogdistill -m +experiment=demo` in a fresh MLflow store and a fresh
generation cache; converted weights and downloaded data are shared with your cache (linked), so
the first run times generation, not weight conversion. The re-run still does everything but
generate: loads tokenizers, recomputes statistics, logs new runs and figures, builds the report.
Writes benchmarks/results/cache_rerun.json.

    python benchmarks/cache_rerun.py --job default [--repeat 5] [--before /path/to/other/checkout]

times the default job (`python -m cogdistill`: SmolLM2-135M on multiplication) re-run with its
generations cached (your generation cache; one warm-up run per checkout fills it), median of
--repeat runs; with --before, the same command with PYTHONPATH at that checkout, interleaved, and
the ratio. Each checkout logs to its own fresh MLflow store. Writes benchmarks/results/cache_rerun_default.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def sweep(extra: list[str], env: dict) -> tuple[float, str]:
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cogdistill", "-m", "+experiment=demo", *extra],
                          cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if proc.returncode:
        sys.exit(proc.stdout[-3000:] + proc.stderr[-3000:])
    return seconds, proc.stdout


def default_job(code: Path, root: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(code), "COGDISTILL_OUTPUT_DIR": str(root / "outputs"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'store' / 'mlflow.db'}"}
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cogdistill"], cwd=root, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if proc.returncode or ", 0 misses" not in proc.stdout:
        sys.exit(f"{code}: exit {proc.returncode}\n" + proc.stdout[-3000:] + proc.stderr[-3000:])
    return seconds


def rerun_default(repeat: int, before: Path | None) -> None:
    codes = {"this checkout": REPO, **({"before": before.resolve()} if before else {})}
    roots = {name: Path(tempfile.mkdtemp(prefix="cache-rerun-default-")) for name in codes}
    for name, code in codes.items():
        default_job(code, roots[name])  # fills the generation cache (and this checkout's task cache)
    times: dict = {name: [] for name in codes}
    for _ in range(repeat):
        for name, code in codes.items():
            times[name].append(default_job(code, roots[name]))
    print(f"default job re-run, generation cache full, median of {repeat}:")
    rows = {name: {"median_s": statistics.median(ts), "runs_s": ts} for name, ts in times.items()}
    for name, row in rows.items():
        print(f"  {name:<14} {row['median_s']:6.2f} s  (target < 3 s)")
    if before:
        print(f"  ratio this/before: {rows['this checkout']['median_s'] / rows['before']['median_s']:.2f}")
    out = HERE / "results" / "cache_rerun_default.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--args", default="", help="extra overrides for both runs")
    ap.add_argument("--job", choices=["demo", "default"], default="demo")
    ap.add_argument("--repeat", type=int, default=5, help="--job default: timed re-runs per checkout")
    ap.add_argument("--before", type=Path, help="--job default: another checkout to time side by side")
    args = ap.parse_args()
    if args.job == "default":
        rerun_default(args.repeat, args.before)
        return
    user_cache = Path(os.environ.get("COGDISTILL_CACHE_DIR", Path.home() / ".cache" / "cogdistill"))
    root = Path(tempfile.mkdtemp(prefix="cache-rerun-"))
    cache = root / "cache"
    cache.mkdir()
    for shared in ("models", "data"):  # weights and human data are not what this measures
        if (user_cache / shared).exists():
            (cache / shared).symlink_to(user_cache / shared)
    env = {**os.environ, "COGDISTILL_CACHE_DIR": str(cache), "COGDISTILL_OUTPUT_DIR": str(root / "outputs"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'store' / 'mlflow.db'}"}
    extra = shlex.split(args.args)
    first, out1 = sweep(extra, env)
    print(f"first run (empty generation cache): {first:7.1f} s", flush=True)
    second, out2 = sweep(extra, env)
    hits = [int(h) for h in re.findall(r"generation cache: (\d+) hits, 0 misses", out2)]
    print(f"re-run (full cache):                {second:7.1f} s  = {second / first:.1%} of the first run "
          f"(target <= 2%); {sum(hits)} cache hits, 0 misses in {len(hits)} jobs")
    out = HERE / "results" / "cache_rerun.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"first_s": first, "rerun_s": second, "ratio": second / first, "args": extra,
                               "rerun_hits": sum(hits)}, indent=2))


if __name__ == "__main__":
    main()
