"""Start-up cost: what a user waits for before any work, against a bare `python -c pass`.

    python benchmarks/startup.py [--repeat 5]

Times (median of --repeat runs, wall and CPU) `python -m cogdistill --help`, composing and printing
a config (`--cfg job`), planning a job (`engine=dry`, which also reads the human data) and importing
the report CLI, and checks which heavy modules each one imported: torch, vllm, mlflow, transformers
must load only where used (a job that generates, tracks or reports). Beside them, a bare Hydra app
(benchmarks/bare_hydra_app.py, over a copy of conf/ without cogdistill's schemas and plugins) does
`--help` and `--cfg job`, and the ratios cogdistill / bare Hydra are printed (target <= 1.5).
The cases run interleaved, so that the machine's load falls on all of them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BARE_CONF = Path(tempfile.gettempdir()) / "cogdistill-bare-hydra-conf"

HEAVY = ("torch", "vllm", "mlflow", "transformers", "matplotlib", "scipy")
PROBE = ("import sys, runpy; sys.argv = {argv!r}\n"
         "try:\n    runpy.run_module({module!r}, run_name='__main__')\n"
         "except SystemExit:\n    pass\n"
         "print('HEAVY=' + ','.join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)")

CASES = {
    "python -c pass": None,
    "bare Hydra app --help": ("bare", ["--help"]),
    "bare Hydra app --cfg job": ("bare", ["--cfg", "job"]),
    "python -m cogdistill --help": ("cogdistill", ["cogdistill", "--help"]),
    "python -m cogdistill --cfg job": ("cogdistill", ["cogdistill", "--cfg", "job"]),
    "python -m cogdistill engine=dry (plan, reads human data)": ("cogdistill", ["cogdistill", "engine=dry"]),
    "python -m cogdistill.report --help": ("cogdistill.report", ["cogdistill.report", "--help"]),
}


def once(case):
    """(wall seconds, CPU seconds, heavy modules imported) of one run of a case."""
    if case is None:
        cmd = [sys.executable, "-c", "pass"]
    elif case[0] == "bare":
        cmd = [sys.executable, str(HERE / "bare_hydra_app.py"), "--config-dir", str(BARE_CONF), *case[1]]
    else:
        cmd = [sys.executable, "-c", PROBE.format(module=case[0], argv=case[1], heavy=HEAVY)]
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HYDRA_FULL_ERROR": "1"})
    wall = time.perf_counter() - began
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        sys.exit(proc.stdout[-2000:] + proc.stderr[-2000:])
    heavy = next((line[6:] for line in proc.stderr.splitlines() if line.startswith("HEAVY=")), "")
    return wall, (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime), heavy


def main() -> None:
    sys.path.insert(0, str(HERE))
    from bare_hydra_app import make_tree

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    make_tree(BARE_CONF)
    walls = {name: [] for name in CASES}
    cpus = {name: [] for name in CASES}
    heavy = {}
    for _ in range(args.repeat):  # interleaved: a burst of load hits every case alike
        for name, case in CASES.items():
            wall, cpu, heavy[name] = once(case)
            walls[name].append(wall)
            cpus[name].append(cpu)
    rows = []
    bare = statistics.median(walls["python -c pass"])
    for name in CASES:
        seconds, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        rows.append({"command": name, "seconds": seconds, "cpu_seconds": cpu, "vs_python": seconds / bare,
                     "heavy_imports": heavy[name]})
        print(f"{name:<58} {seconds:6.2f} s wall {cpu:6.2f} s CPU  x{seconds / bare:5.1f} vs python -c pass   "
              f"heavy imports: {heavy[name] or 'none'}", flush=True)
    by = {r["command"]: r for r in rows}
    print("\ncogdistill / bare Hydra app (target <= 1.5):")
    for what in ("--help", "--cfg job"):
        ours, theirs = by[f"python -m cogdistill {what}"], by[f"bare Hydra app {what}"]
        print(f"  {what:<10} wall x{ours['seconds'] / theirs['seconds']:.2f}   CPU x{ours['cpu_seconds'] / theirs['cpu_seconds']:.2f}")
    out = HERE / "results" / "startup.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
