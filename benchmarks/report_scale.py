"""How long a user waits for the comparison report from MLflow, and how much memory it takes: this
version against an earlier one, side by side on the same store.

    python benchmarks/report_scale.py [--sizes 16x,64x] [--repeats 3] [--base HEAD | --before DIR]
                                      [--store-cache DIR] [--bootstrap 2000]

Sizes: 1x = 5 models x 2 tasks x 400 items x 4 samples, 4x = 10x4x400x4, 16x = 20x8x400x4 (256,000
traces), 64x = 40x16x400x4 (1,024,000 traces); or MxTxIxS.

How a store is made: a simulated study (cogdistill.report.synthetic, seed 1) is written as replay
inputs and run through the real pipeline, `python -m cogdistill -m engine=replay model=... task=[...]
study=scale` (a replay sweep into a fresh sqlite MLflow store, one job per model). That takes minutes
(16x: ~5 min here), so with --store-cache DIR the store of each size is kept in DIR/<size>/ (with
populated.json: the command, its time and the code revision) and reused by later runs. A 64x sweep
(40 jobs of 16 tasks) ran 3 jobs in 11 min on 2 shared CPUs, i.e. hours: there, 64x was measured
without MLflow instead, `python -m cogdistill.report --synthetic 40x16x400x4` under GNU time.

Each version (the working tree, and --before DIR or --base REV in a temporary git worktree) then
builds the report from that store in its own process, --repeats times, alternating versions: the
process's wall time from start to exit (imports included, as `python -m cogdistill.report` takes),
the stages inside it (load from MLflow, analyses, figures, Markdown + JSON, the study/ copy) and its
peak RSS (ru_maxrss from wait4). Prints medians, ratios and the targets of issue 15 (16x under 10 s,
64x under 40 s); writes benchmarks/results/report_scale.json.
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
SIZES = {"1x": "5x2x400x4", "4x": "10x4x400x4", "16x": "20x8x400x4", "64x": "40x16x400x4"}
TARGET_S = {"16x": 10.0, "64x": 40.0}

# Run inside each version's process: only APIs both versions have (from_mlflow, build, write_all,
# markdown, Study.write), in the order write_report runs them.
TIMER = r"""
import json, os, sys, tempfile, time
t_start = time.perf_counter()
def cpu():  # this process and the children it has reaped (the report forks for figures and bootstraps)
    return sum(os.times()[:4])
from pathlib import Path
from cogdistill.console import quiet_third_party
from cogdistill.report import build
from cogdistill.report.figures import write_all
from cogdistill.report.render import markdown
from cogdistill.report.study import from_mlflow

quiet_third_party()
uri, n_boot = sys.argv[1], int(sys.argv[2])
t = {"imports_s": time.perf_counter() - t_start, "imports_cpu_s": cpu()}
def lap(name, since=[time.perf_counter(), cpu()]):
    # wall and CPU seconds of a stage: CPU time is what a loaded, shared machine distorts least
    now = [time.perf_counter(), cpu()]
    t[name + "_s"], t[name + "_cpu_s"] = now[0] - since[0], now[1] - since[1]
    since[:] = now
lap("start")
try:  # as python -m cogdistill.report: the runs read in a forked process while this one imports the rest
    from cogdistill.report.__main__ import warm_imports
    from cogdistill.report.parallel import in_background
    reading = in_background(from_mlflow, uri, "scale")
    warm_imports(figures=True)
    study = reading()
except ImportError:  # the earlier version: one process
    study = from_mlflow(uri, "scale")
lap("load")
with tempfile.TemporaryDirectory() as out:
    from cogdistill.report import figures as F
    scatter, hook = [], {}
    if hasattr(F, "draw_in_background"):  # as write_report: the scatter grid drawn during the analyses
        hook = {"on_alignment": lambda items, al: scatter.append(F.draw_in_background(
            F.scatter_plan(items, al, study.models, Path(out) / "figures" / "scatter_grid.png")))}
    report = build(study, n_boot=n_boot, **hook)
    lap("analyses")
    pngs = write_all(report, Path(out) / "figures", **({"scatter": scatter[0]} if scatter else {}))
    lap("figures")
    (Path(out) / "report.md").write_text(markdown(report, {p.stem: p.name for p in pngs}))
    report.write_json(Path(out) / "report.json")
    lap("md_json")
    study.write(Path(out) / "study")
    lap("study_copy")
t["traces"] = study.traces.height
t["figures"] = len(pngs)
t["own_cpu_s"], t["children_cpu_s"] = sum(os.times()[:2]), sum(os.times()[2:4])
t["stages"] = report.timings
print("TIMINGS " + json.dumps(t))
"""
STAGES = ("imports_s", "load_s", "analyses_s", "figures_s", "md_json_s", "study_copy_s")


def populate(size: str, root: Path) -> dict:
    """A replay sweep of the simulated study into root/store (sqlite); returns how it was made."""
    from cogdistill.report.synthetic import simulate, write_replay_inputs

    m, t, i, s = (int(x) for x in size.split("x"))
    inputs = write_replay_inputs(simulate(m, t, i, s, seed=1), root / "inputs")
    uri = f"sqlite:///{root / 'store' / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "COGDISTILL_CACHE_DIR": str(root / "cache"),
           "COGDISTILL_OUTPUT_DIR": str(root / "outputs")}
    command = [sys.executable, "-m", "cogdistill", "-m", "engine=replay", f"engine.path={inputs.traces}",
               f"model={','.join(inputs.models)}", f"task=[{','.join(inputs.tasks)}]",
               f"hydra.searchpath=[file://{inputs.conf_dir}]", f"data.mirror={inputs.mirror}", "study=scale",
               "analysis.bootstrap=100", "analysis.report=false"]
    began = time.perf_counter()
    proc = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(proc.stdout[-3000:] + proc.stderr[-3000:])
    rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    made = {"size": size, "uri": uri, "populate_s": time.perf_counter() - began, "revision": rev,
            "command": " ".join(command[1:])}
    (root / "populated.json").write_text(json.dumps(made, indent=2))
    return made


def store_for(size: str, cache: Path | None) -> dict:
    root = (cache / size) if cache else Path(tempfile.mkdtemp(prefix=f"report-scale-{size}-"))
    marker = root / "populated.json"
    if marker.is_file():
        made = json.loads(marker.read_text())
        print(f"{size}: reusing the store in {root} (populated in {made['populate_s']:.0f} s by {made['command'][:60]}...)")
        return {**made, "cached": True}
    root.mkdir(parents=True, exist_ok=True)
    print(f"{size}: populating {root} through a replay sweep ...", flush=True)
    return {**populate(size, root), "cached": False}


def run_once(source: Path, uri: str, n_boot: int) -> dict:
    """One report in a fresh process of `source`'s code: its stages, wall time and peak RSS."""
    env = {**os.environ, "PYTHONPATH": str(source), "MLFLOW_TRACKING_URI": uri}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        began = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", TIMER, uri, str(n_boot)], cwd=source, env=env,
                                stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode:
        sys.exit(f"{source}: exit {proc.returncode}\n{stderr[-3000:]}")
    line = next(x for x in stdout.splitlines() if x.startswith("TIMINGS "))
    return {**json.loads(line[len("TIMINGS "):]), "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mib": usage.ru_maxrss / 1024}


def median_row(runs: list) -> dict:
    keys = ("wall_s", "cpu_s", "own_cpu_s", "children_cpu_s", "peak_rss_mib", *STAGES, *(s.replace("_s", "_cpu_s") for s in STAGES))
    return {k: statistics.median(r[k] for r in runs) for k in keys} | {"traces": runs[0]["traces"],
                                                                           "figures": runs[0]["figures"]}


def before_tree(args, tmp: Path) -> tuple[Path, callable]:
    if args.before:
        return Path(args.before), lambda: None
    tree = tmp / "before"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), args.base], cwd=REPO, check=True)
    return tree, lambda: subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="16x", help="comma-separated: 1x, 4x, 16x, 64x or MxTxIxS (default 16x)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--store-cache", type=Path, help="keep and reuse each size's populated store under DIR/<size>/")
    ap.add_argument("--base", default="HEAD", help="the earlier version: a commit (checked out in a temporary worktree)")
    ap.add_argument("--before", help="the earlier version: a source tree already checked out (instead of --base)")
    ap.add_argument("--after-only", action="store_true", help="time this version only (e.g. 64x, where before is slow)")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="report-scale-") as tmp:
        before, cleanup = (None, lambda: None) if args.after_only else before_tree(args, Path(tmp))
        try:
            for name in args.sizes.split(","):
                size = SIZES.get(name, name)
                store = store_for(size, args.store_cache)
                versions = {"after": REPO, **({"before": before} if before else {})}
                runs = {v: [] for v in versions}
                for k in range(args.repeats):  # alternate, so a load spike on the machine hits both
                    for v, source in versions.items():
                        runs[v].append(run_once(source, store["uri"], args.bootstrap))
                        print(f"  {name} {v} run {k + 1}: {runs[v][-1]['wall_s']:.1f} s", flush=True)
                results.append({"size": name, "shape": size, "store": store,
                                **{v: {"median": median_row(r), "runs": r} for v, r in runs.items()}})
                print_size(results[-1])
        finally:
            cleanup()
    out = HERE / "results" / "report_scale.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\n{out}")


def print_size(res: dict) -> None:
    after = res["after"]["median"]
    before = res.get("before", {}).get("median")
    print(f"\n{res['size']} ({res['shape']}, {after['traces']:,} traces), medians of "
          f"{len(res['after']['runs'])} runs; store {'reused' if res['store']['cached'] else 'populated'} "
          f"(replay sweep {res['store']['populate_s']:.0f} s)")
    if before:
        print(f"  {'stage':<14}{'wall before':>12}{'after':>8}{'ratio':>8}{'cpu before':>12}{'after':>8}{'ratio':>8}")
    else:
        print(f"  {'stage':<14}{'wall':>8}{'cpu':>8}")
    for key in ("wall_s", *STAGES):
        cpu = "cpu_s" if key == "wall_s" else key.replace("_s", "_cpu_s")
        cells = ""
        for k in (key, cpu):
            a = after[k]
            cells += f"{before[k]:>11.1f}s{a:>7.1f}s{(before[k] / a if a else float('nan')):>7.2f}x" if before \
                else f"{a:>7.1f}s"
        print(f"  {key.removesuffix('_s'):<14}{cells}")
    # forked children (bootstraps, a model fit, the scatter grid) overlap the main process: on an idle
    # 2-core machine the wall time tends to the main process's own CPU plus interpreter start
    own = after.get("own_cpu_s", float("nan"))
    print(f"  after: main process CPU {own:.1f} s + forked children {after.get('children_cpu_s', 0):.1f} s "
          "(idle 2 cores: wall ~ main process CPU + start)")
    print(f"  peak RSS: {'before ' + format(before['peak_rss_mib'], '.0f') + ' MiB, ' if before else ''}"
          f"after {after['peak_rss_mib']:.0f} MiB")
    print(f"  figures drawn: before {before['figures'] if before else '-'}, after {after['figures']}")
    target = TARGET_S.get(res["size"])
    if target:
        verdict = "met" if after["wall_s"] < target else "NOT met"
        print(f"  target: under {target:.0f} s wall -> after {after['wall_s']:.1f} s: {verdict}"
              + (f" (before {before['wall_s']:.1f} s)" if before else ""))


if __name__ == "__main__":
    main()
