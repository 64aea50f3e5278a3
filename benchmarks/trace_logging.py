"""What logging each generation as an MLflow trace (tracking.log_traces=true) costs a job: the same
job with trace logging off and on, side by side, alternating, in fresh MLflow stores.

    python benchmarks/trace_logging.py                 # the 717-item job (all ten tasks), replayed
    python benchmarks/trace_logging.py --default       # `python -m cogdistill` (needs a warm generation cache)
    python benchmarks/trace_logging.py --repeats 5 --args "sampling.n=2"

The 717-item job is the default model (demo-smollm2-135m) over the paper's ten tasks with
engine=replay: records as long as SmolLM2's (up to its 256-token budget, about 4.5 characters a
token), so no generation runs and what differs between the two runs is the logging. --default
runs the default job as a user would; with every generation cached (run it once first), the
same holds. Each run is a fresh `python -m cogdistill` process (start-up and imports included:
the whole job is what a user waits for) with its own sqlite store. The issue's rule: trace logging
stays off by default if it slows such a job by more than 10%.
Writes benchmarks/results/trace_logging.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
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
TASKS = ["multiplication", "relational-3ps", "relational-4ps", "relational-carddir", "relational-smalllarge",
         "syllogisms-wiens2021", "syllogisms-ragni2016", "tower-of-london", "crt", "arc"]
MODEL = "demo-smollm2-135m"
WORDS = "so we first need to look at the problem then check each step and the answer follows from it".split()


def replay_records(mirror: str, out: Path, seed: int = 0) -> int:
    """Records for every item of the ten tasks, with texts and counts like SmolLM2's; their number."""
    import polars as pl
    from hydra import compose, initialize_config_dir

    from cogdistill.config.schema import CONF_DIR, cache_dir
    from cogdistill.config.validate import register_schemas, validate
    from cogdistill.tasks.load import load_task

    register_schemas()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        job = validate(compose("config", [f"model={MODEL}", f"task=[{','.join(TASKS)}]", f"data.mirror={mirror}"]))
    rng = random.Random(seed)
    rows = []
    for cfg in job.task.values():
        task = load_task(cfg, mirror=mirror, cache=cache_dir(job), timeout_s=60)
        for item_id, target in zip(task.items["item_id"], task.items["target"]):
            tokens = rng.randint(20, 250)
            rows.append({"task": task.name, "item_id": item_id, "sample_idx": 0,
                         "reasoning_text": " ".join(rng.choice(WORDS) for _ in range(int(tokens * 0.8))),
                         "answer_text": f"Answer: {target}", "reasoning_tokens": tokens, "answer_tokens": 4,
                         "prompt_tokens": 60, "finish_reason": "length" if tokens > 245 else "stop",
                         "latency_s": tokens / 40})
    pl.DataFrame(rows).write_parquet(out)
    return len(rows)


def run_job(args: list, env: dict) -> tuple:
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cogdistill", *args], cwd=REPO, env=env, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - began
    if proc.returncode:
        sys.exit(f"job failed ({' '.join(args)}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return seconds, proc.stdout


def count_traces(uri: str) -> int:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    total, token = 0, None
    while True:
        page = client.search_traces(locations=ids, max_results=1000, page_token=token, include_spans=False)
        total += len(page)
        token = page.token
        if not token:
            return total


def logging_alone(uri: str) -> tuple:
    """(seconds, traces): log_generations alone over a finished job run's traces, into a new run of its
    store: the logging without the rest of the job, and without start-up noise."""
    import polars as pl
    from mlflow import MlflowClient

    from cogdistill.console import quiet_third_party
    from cogdistill.tracking import run_format as rf
    from cogdistill.tracking.mlflow_traces import log_generations
    from cogdistill.tracking.store import tracing_client

    quiet_third_party()  # else a progress bar per download
    client = MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()], rf.job_filter())
    with tempfile.TemporaryDirectory() as tmp:
        traces = [pl.read_parquet(client.download_artifacts(run.info.run_id, rf.trace_file(t), tmp))
                  for t in rf.run_tasks(run)]
    target = client.create_run(run.info.experiment_id).info.run_id
    began = time.perf_counter()
    tracing = tracing_client(uri)
    n = sum(len(log_generations(client, tracing, run.info.experiment_id, target, frame)) for frame in traces)
    return time.perf_counter() - began, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--default", action="store_true", help="time `python -m cogdistill` instead of the 717-item job")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--args", default="", help="extra overrides for every run")
    opts = ap.parse_args()
    mirror = os.environ.get("COGDISTILL_DATA_MIRROR") or str(REPO.parent / "shared" / "reference-data")
    root = Path(tempfile.mkdtemp(prefix="trace-logging-"))
    env = {**os.environ, "COGDISTILL_DATA_MIRROR": mirror, "COGDISTILL_OUTPUT_DIR": str(root / "outputs")}
    n = 0  # items, for the 717-item job; the default job counts its cache hits
    if opts.default:
        job, what = [], "the default job (python -m cogdistill), generations cached"
    else:
        records = root / "replay.parquet"
        n = replay_records(mirror, records)
        job = [f"model={MODEL}", f"task=[{','.join(TASKS)}]", "engine=replay", f"engine.path={records}",
               "study=trace-logging"]
        what = f"{MODEL} over the ten tasks ({n} items), replayed"
    job += shlex.split(opts.args)
    times = {"off": [], "on": []}
    items, traces = n, 0
    for repeat in range(opts.repeats):
        for mode in ("off", "on") if repeat % 2 == 0 else ("on", "off"):  # alternate: no order effect
            uri = f"sqlite:///{root / f'{mode}-{repeat}' / 'mlflow.db'}"
            seconds, out = run_job([*job, f"tracking.log_traces={'true' if mode == 'on' else 'false'}"],
                                   {**env, "MLFLOW_TRACKING_URI": uri})
            misses = sum(int(m) for m in re.findall(r"generation cache: \d+ hits, (\d+) misses", out))
            if misses:
                print(f"warning: {misses} generation(s) were not cached: this run timed generation too", flush=True)
            items = sum(int(m) for m in re.findall(r"generation cache: (\d+) hits", out)) or items
            if mode == "on":
                traces = count_traces(uri)
            times[mode].append(seconds)
            print(f"run {repeat + 1} trace logging {mode:>3}: {seconds:6.1f} s", flush=True)
    alone, logged = logging_alone(f"sqlite:///{root / 'off-0' / 'mlflow.db'}")
    off, on = statistics.median(times["off"]), statistics.median(times["on"])
    print(f"\n{what}; {opts.repeats} runs each")
    print(f"{'seconds':<16} {'off':>8} {'on':>8} {'on/off':>8} {'added':>8} {'traces':>7}")
    print(f"{'median':<16} {off:8.1f} {on:8.1f} {on / off:8.2f} {on - off:+8.1f} {traces:7d}")
    low_off, low_on = min(times["off"]), min(times["on"])
    print(f"{'fastest':<16} {low_off:8.1f} {low_on:8.1f} {low_on / low_off:8.2f} {low_on - low_off:+8.1f}")
    print(f"{'logging alone':<16} {'':8} {alone:8.1f} {(low_off + alone) / low_off:8.2f} {alone:+8.1f} {logged:7d}"
          f"   ({alone / max(logged, 1) * 1000:.1f} ms a trace; ratio against the fastest run without)")
    verdict = "within" if on / off <= 1.10 else "over"
    print(f"trace logging adds {on / off - 1:.1%} to the job (medians): {verdict} the 10% budget")
    result = {"job": what, "args": job, "repeats": opts.repeats, "seconds_off": times["off"], "seconds_on": times["on"],
              "median_off_s": off, "median_on_s": on, "ratio": on / off, "traces": traces, "items": items,
              "logging_alone_s": alone, "logging_alone_traces": logged}
    out = HERE / "results" / ("trace_logging_default.json" if opts.default else "trace_logging.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
