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
