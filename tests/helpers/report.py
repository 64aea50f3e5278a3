"""A simulated study replayed through the real command line as one `-m` sweep."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cogdistill.report.synthetic import write_replay_inputs


def replay_sweep(root: Path, study, name: str, bootstrap: int, timeout: float = 900):
    """Replays a simulated study as one `-m` sweep (experiment `name`) into a fresh MLflow store
    under root; returns the sweep's environment (its MLFLOW_TRACKING_URI names the store) and stdout."""
    inputs = write_replay_inputs(study, root / "inputs")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'store' / 'mlflow.db'}",
           "COGDISTILL_CACHE_DIR": str(root / "cache"), "COGDISTILL_OUTPUT_DIR": str(root / "outputs")}
    proc = subprocess.run(
        [sys.executable, "-m", "cogdistill", "-m", "engine=replay", f"engine.path={inputs.traces}",
         f"model={','.join(inputs.models)}", f"task=[{','.join(inputs.tasks)}]",
         f"hydra.searchpath=[file://{inputs.conf_dir}]", f"data.mirror={inputs.mirror}",
         f"analysis.bootstrap={bootstrap}", f"study={name}"],
        cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return env, proc.stdout


def run_r(code: str, tmp_path: Path, frame, *packages: str) -> dict:
    """Run R code on `frame` (written as data.csv, passed as the first argument) and return the
    JSON on its last output line; skips (or, in CI, fails) where R or a package is missing."""
    import json

    from helpers.r import require_r

    require_r(*packages)
    csv, script = tmp_path / "data.csv", tmp_path / "ref.R"
    frame.write_csv(csv)
    script.write_text(code)
    res = subprocess.run(["Rscript", str(script), str(csv)], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-4000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def replay_effort_sweep(root: Path, study, name: str, levels, bootstrap: int = 200, timeout: float = 900):
    """A simulated effort study (report.synthetic.simulate_effort: one config, models `<config>@<level>`)
    replayed as one sweep over `effort=<levels>`: one model config, its records named by level.
    Returns the sweep's environment and stdout."""
    import polars as pl

    inputs = write_replay_inputs(study, root / "inputs")
    for stale in (inputs.conf_dir / "model").glob("*:*.yaml"):
        stale.unlink()  # the levels are effort options of one config, not configs
    config = study.models["config"][0]
    (inputs.conf_dir / "model" / f"{config}.yaml").write_text(  # harmony: a protocol with effort levels
        f"name: {config}\nhf_id: synthetic/{config}\nrole: control\nfamily: sim\nprotocol: harmony\n"
        "think_start: null\nthink_end: null\nchat: false\n")
    records = pl.read_parquet(inputs.traces)
    records.with_columns(budget_hit=study.traces["budget_hit"]).write_parquet(inputs.traces)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'store' / 'mlflow.db'}",
           "COGDISTILL_CACHE_DIR": str(root / "cache"), "COGDISTILL_OUTPUT_DIR": str(root / "outputs")}
    proc = subprocess.run(
        [sys.executable, "-m", "cogdistill", "-m", "engine=replay", f"engine.path={inputs.traces}",
         f"model={config}", f"effort={','.join(levels)}", f"task=[{','.join(inputs.tasks)}]",
         f"hydra.searchpath=[file://{inputs.conf_dir}]", f"data.mirror={inputs.mirror}",
         f"analysis.bootstrap={bootstrap}", f"study={name}"],
        cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return env, proc.stdout
