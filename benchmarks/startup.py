"""Start-up cost: what a user waits for before any work, against a bare `python -c pass`.

    python benchmarks/startup.py [--repeat 5]

Times (median of --repeat runs) `python -m cogdistill --help`, composing and printing a config
(`--cfg job`), planning a job (`engine=dry`, which also reads the human data) and importing the
report CLI, and checks which heavy modules each one imported: torch, vllm, mlflow, transformers
must load only where used (a job that generates, tracks or reports).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("torch", "vllm", "mlflow", "transformers", "matplotlib", "scipy")
PROBE = ("import sys, runpy; sys.argv = {argv!r}\n"
         "try:\n    runpy.run_module({module!r}, run_name='__main__')\n"
         "except SystemExit:\n    pass\n"
         "print('HEAVY=' + ','.join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)")

CASES = {
    "python -c pass": None,
    "python -m cogdistill --help": ("cogdistill", ["cogdistill", "--help"]),
    "python -m cogdistill --cfg job": ("cogdistill", ["cogdistill", "--cfg", "job"]),
    "python -m cogdistill engine=dry (plan, reads human data)": ("cogdistill", ["cogdistill", "engine=dry"]),
    "python -m cogdistill.report --help": ("cogdistill.report", ["cogdistill.report", "--help"]),
}


def run(case, repeat: int):
    times, heavy = [], ""
    for _ in range(repeat):
        code = "pass" if case is None else PROBE.format(module=case[0], argv=case[1], heavy=HEAVY)
        began = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        times.append(time.perf_counter() - began)
        if proc.returncode:
            sys.exit(proc.stdout[-2000:] + proc.stderr[-2000:])
        heavy = next((line[6:] for line in proc.stderr.splitlines() if line.startswith("HEAVY=")), "")
    return statistics.median(times), heavy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rows = []
    bare = None
    for name, case in CASES.items():
        seconds, heavy = run(case, args.repeat)
        bare = bare or seconds
        rows.append({"command": name, "seconds": seconds, "vs_python": seconds / bare, "heavy_imports": heavy})
        print(f"{name:<58} {seconds:6.2f} s  x{seconds / bare:6.1f} vs python -c pass   "
              f"heavy imports: {heavy or 'none'}", flush=True)
    out = Path(__file__).resolve().parent / "results" / "startup.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
