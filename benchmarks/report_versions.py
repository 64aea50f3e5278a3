"""The report's build time now against an earlier commit, on the same study, side by side.

    python benchmarks/report_versions.py [--base REV] [--size 20x8x400x4] [--repeats 3]

One simulated study (16x by default: 20 models x 8 tasks x 400 items x 4 samples) is written as a
study folder; each version (REV checked out in a temporary git worktree, and the working tree)
reads it with its own `from_folder` and times `build` (the analyses) and the figures + Markdown
+ JSON, in its own process, `--repeats` times after one warm-up. Prints the medians and the
ratios now / base; writes benchmarks/results/report_versions.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# Run inside each version's process: only APIs both versions have (from_folder, build, write_all, markdown).
TIMER = r"""
import json, sys, tempfile, time
from pathlib import Path
from cogdistill.console import quiet_third_party
from cogdistill.report import build
from cogdistill.report.figures import write_all
from cogdistill.report.render import markdown
from cogdistill.report.study import from_folder

quiet_third_party()
folder, repeats, n_boot = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
study = from_folder(folder)
build(study, n_boot=10)  # warm-up: imports and first calls
rows = []
for _ in range(repeats):
    t0 = time.perf_counter()
    report = build(study, n_boot=n_boot)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        write_all(report, Path(out) / "figures")
        markdown(report, {})
        report.write_json(Path(out) / "report.json")
    rows.append({"analyses_s": t1 - t0, "figures_s": time.perf_counter() - t1})
print(json.dumps(rows))
"""


def run_version(source: Path, folder: Path, repeats: int, n_boot: int) -> list:
    env = {**os.environ, "PYTHONPATH": str(source)}
    proc = subprocess.run([sys.executable, "-c", TIMER, str(folder), str(repeats), str(n_boot)], cwd=source,
                          env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{source}: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="HEAD", help="the commit to compare with (default HEAD)")
    ap.add_argument("--size", default="20x8x400x4")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bootstrap", type=int, default=2000)
    args = ap.parse_args()
    from cogdistill.report.synthetic import simulate

    m, t, i, s = (int(x) for x in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="report-versions-") as tmp:
        folder = simulate(m, t, i, s, seed=1).write(Path(tmp) / "study")
        base_tree = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base_tree), args.base], cwd=REPO, check=True)
        try:
            results = {"base": run_version(base_tree, folder, args.repeats, args.bootstrap),
                       "now": run_version(REPO, folder, args.repeats, args.bootstrap)}
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=REPO, check=False)
    med = {v: {k: statistics.median(r[k] for r in rows) for k in ("analyses_s", "figures_s")}
           for v, rows in results.items()}
    for v in med:
        med[v]["total_s"] = med[v]["analyses_s"] + med[v]["figures_s"]
    print(f"study {args.size} ({m * t * i * s:,} traces), {args.bootstrap} bootstrap resamples, "
          f"median of {args.repeats}")
    print(f"{'':>10} {'analyses s':>11} {'figures+md+json s':>18} {'total s':>8}")
    for v in ("base", "now"):
        print(f"{v:>10} {med[v]['analyses_s']:11.2f} {med[v]['figures_s']:18.2f} {med[v]['total_s']:8.2f}")
    print(f"{'now/base':>10} {med['now']['analyses_s'] / med['base']['analyses_s']:11.2f} "
          f"{med['now']['figures_s'] / med['base']['figures_s']:18.2f} {med['now']['total_s'] / med['base']['total_s']:8.2f}")
    out = HERE / "results" / "report_versions.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"base": args.base, "size": args.size, "runs": results, "medians": med}, indent=2))
    print(out)


if __name__ == "__main__":
    main()
