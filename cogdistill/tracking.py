"""MLflow: where the store is, one run per job, and the sweep's parent run.

The sweep callback creates the experiment and the parent run once, before any job starts
(several processes creating one experiment in sqlite race), and leaves the parent's id in the
sweep folder, where every job of the sweep, in this process or another, reads it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from cogdistill.config import REPO_ROOT, Config, TrackingConfig
from cogdistill.errors import CogdistillError

PARENT_FILE = "mlflow_parent_run.json"
log = logging.getLogger(__name__)


def tracking_uri(cfg: TrackingConfig) -> str:
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if cfg.uri:
        return cfg.uri
    return f"sqlite:///{REPO_ROOT / 'mlruns' / 'mlflow.db'}"


def artifact_root(cfg: TrackingConfig, uri: str) -> Optional[str]:
    """Artifacts sit beside a local sqlite store; a tracking server decides for itself."""
    if cfg.artifact_root:
        return Path(cfg.artifact_root).expanduser().resolve().as_uri()
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        return (db.parent / "artifacts").resolve().as_uri()
    return None


def experiment_name(job_tracking: TrackingConfig, study: str) -> str:
    return job_tracking.experiment or study


def ensure_experiment(client, name: str, artifact_location: Optional[str]) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    if artifact_location:
        Path(artifact_location.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except Exception:  # another process created it between our get and create
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def _client(cfg: TrackingConfig):
    from mlflow import MlflowClient

    uri = tracking_uri(cfg)
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        return SqliteRetry(MlflowClient(tracking_uri=uri), uri), uri
    return MlflowClient(tracking_uri=uri), uri


class TrackingError(CogdistillError):
    pass


class SqliteRetry:
    """An MlflowClient on a sqlite store whose calls are retried while the database is locked.

    sqlite lets one process write at a time and MLflow waits up to 20 s for the lock per call;
    many parallel jobs can wait longer. A refused call was rolled back, so calling it again is
    safe. If the lock outlasts the retries, the error says to use a tracking server instead.
    """

    RETRIES = 4  # sleeps of about 1, 2, 4, 8 s, each after MLflow's own 20 s wait

    def __init__(self, client, uri: str):
        self._client, self._uri = client, uri

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            for attempt in range(self.RETRIES + 1):
                try:
                    return attr(*args, **kwargs)
                except Exception as exc:  # MlflowException or sqlalchemy's OperationalError
                    if "database is locked" not in str(exc):
                        raise
                    if attempt == self.RETRIES:
                        raise TrackingError(
                            f"the MLflow store {self._uri} stayed locked by other processes through "
                            f"{self.RETRIES + 1} attempts: sqlite takes one writer at a time. For many parallel "
                            "jobs, log to an MLflow server: run `mlflow server --backend-store-uri sqlite:///DB "
                            "--port 5000`, then set COGDISTILL_MLFLOW_SERVER=http://HOST:5000 and add "
                            "tracking=server (or lower hydra.launcher.max_parallel). Re-running resumes this job."
                        ) from None
                    delay = random.uniform(0.5, 1.0) * 2 ** attempt
                    log.warning("MLflow store %s is locked by another process; retrying in %.1f s", self._uri, delay)
                    time.sleep(delay)

        return call


def _finite(metrics: Dict[str, float]) -> Dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}


def flatten(prefix: str, node: Any) -> Dict[str, str]:
    if isinstance(node, dict):
        out: Dict[str, str] = {}
        for key, val in node.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), val))
        return out
    return {prefix: str(node)[:6000]}


def job_key(raw_cfg: DictConfig) -> str:
    """What identifies a job: the resolved config minus where it is stored and read from."""
    import hashlib

    data = OmegaConf.to_container(raw_cfg, resolve=True)
    for volatile in ("tracking", "data", "cache_dir"):
        data.pop(volatile, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _find_runs(client, experiment_id: str, filters: List[str]):
    return client.search_runs([experiment_id], filter_string=" and ".join(filters), max_results=50,
                              order_by=["attributes.start_time DESC"])


class JobRun:
    """One MLflow run for one job (a model over its tasks); a no-op when tracking is off.

    Resuming never duplicates: inside a sweep, a job whose key already has a run under the same
    parent reuses it (`already_finished` when that run finished); outside a sweep, an
    unfinished run (killed or failed) with the same key is reused, and a finished one is not.
    """

    def __init__(self, job: Config, raw_cfg: DictConfig, *, tags: Dict[str, str], run_name: str):
        self.enabled = job.tracking.enabled
        self.run_id: Optional[str] = None
        self.experiment_id: Optional[str] = None
        self.resumed = False
        self.already_finished = False
        if not self.enabled:
            return
        self._client, self.uri = _client(job.tracking)
        key = job_key(raw_cfg)
        tags = {**tags, "cogdistill.job_key": key}
        parent = sweep_parent()
        if parent:
            self.experiment_id = parent["experiment_id"]
            tags["mlflow.parentRunId"] = parent["run_id"]
            filters = [f"tags.`cogdistill.job_key` = '{key}'", f"tags.mlflow.parentRunId = '{parent['run_id']}'"]
        else:
            self.experiment_id = ensure_experiment(
                self._client, experiment_name(job.tracking, job.study), artifact_root(job.tracking, self.uri)
            )
            filters = [f"tags.`cogdistill.job_key` = '{key}'", "attributes.status != 'FINISHED'"]
        previous = [r for r in _find_runs(self._client, self.experiment_id, filters)
                    if parent or "mlflow.parentRunId" not in r.data.tags]
        if previous:
            self.run_id, self.resumed = previous[0].info.run_id, True
            self.already_finished = previous[0].info.status == "FINISHED"
            if not self.already_finished:
                self._client.update_run(self.run_id, status="RUNNING")
        else:
            self.run_id = self._client.create_run(self.experiment_id, run_name=run_name, tags=tags).info.run_id
        if not self.already_finished:
            self._client.log_text(self.run_id, OmegaConf.to_yaml(raw_cfg, resolve=True), "config/config.yaml")

    def log_params(self, params: Dict[str, Any]) -> None:
        if self.enabled:
            from mlflow.entities import Param

            items = [Param(k, str(v)[:6000]) for k, v in params.items()]
            for start in range(0, len(items), 100):
                self._client.log_batch(self.run_id, params=items[start:start + 100])

    def log_metrics(self, metrics: Dict[str, float]) -> None:
        if self.enabled:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            batch = [Metric(k, v, now, 0) for k, v in _finite(metrics).items()]
            if batch:
                self._client.log_batch(self.run_id, metrics=batch)

    def log_files(self, files: List[Tuple[str, Path]]) -> None:
        """files: (artifact sub-folder, local file) pairs."""
        if self.enabled:
            for folder, path in files:
                self._client.log_artifact(self.run_id, str(path), folder)

    def finish(self, status: str = "FINISHED") -> None:
        if self.enabled and self.run_id:
            self._client.set_terminated(self.run_id, status=status)


def sweep_parent() -> Optional[Dict[str, str]]:
    """The parent run of the sweep this job belongs to, if any."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return None
    marker = Path(hc.sweep.dir) / PARENT_FILE
    return json.loads(marker.read_text()) if marker.is_file() else None


class SweepCallback(Callback):
    """Hydra callback: a parent MLflow run around a multirun sweep."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        tracking = OmegaConf.to_object(config.tracking)
        if not tracking.enabled or config.engine.name == "dry":  # a plan logs nothing
            return
        client, uri = _client(tracking)
        exp_id = ensure_experiment(client, experiment_name(tracking, config.study), artifact_root(tracking, uri))
        overrides = sorted(config.hydra.overrides.task)
        key = hashlib.sha256(json.dumps([str(config.study), overrides]).encode()).hexdigest()[:20]
        # The same sweep command after a kill resumes its unfinished parent: no second parent run.
        unfinished = _find_runs(client, exp_id, [f"tags.`cogdistill.sweep_key` = '{key}'",
                                                 "attributes.status != 'FINISHED'"])
        if unfinished:
            run = unfinished[0]
            client.update_run(run.info.run_id, status="RUNNING")
        else:
            run = client.create_run(
                exp_id, run_name=f"sweep {Path(str(config.hydra.sweep.dir)).name}",
                tags={"cogdistill.kind": "sweep", "cogdistill.sweep_key": key, "study": str(config.study),
                      "overrides": " ".join(overrides)[:5000]},
            )
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.NamedTemporaryFile("w", dir=sweep_dir, delete=False, suffix=".tmp")
        json.dump({"run_id": run.info.run_id, "experiment_id": exp_id, "tracking_uri": uri}, tmp)
        tmp.close()
        os.replace(tmp.name, sweep_dir / PARENT_FILE)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        marker = Path(str(config.hydra.sweep.dir)) / PARENT_FILE
        if not marker.is_file():
            return
        parent = json.loads(marker.read_text())
        from mlflow import MlflowClient

        from cogdistill.summary import log_sweep_summary

        client = MlflowClient(tracking_uri=parent["tracking_uri"])
        table = log_sweep_summary(client, parent["experiment_id"], parent["run_id"])
        if table.height and config.analysis.report:
            sweep_report(client, parent, Path(str(config.hydra.sweep.dir)) / "report", config.analysis)
        client.set_terminated(parent["run_id"], status="FINISHED")


def sweep_report(client, parent: Dict[str, str], out: Path, analysis) -> None:
    """The comparison report over the sweep's jobs, on the parent run. A failure here costs no
    finished job: it is reported with the command that rebuilds the report."""
    from rich.markup import escape

    from cogdistill.console import console
    from cogdistill.report import log_report, write_report
    from cogdistill.report.render import print_report
    from cogdistill.report.study import from_mlflow

    experiment = client.get_experiment(parent["experiment_id"]).name
    try:
        with console.status("Building the comparison report..."):
            study = from_mlflow(parent["tracking_uri"], experiment, parent["run_id"])
            report, _ = write_report(study, out, n_boot=analysis.bootstrap, seed=analysis.seed,
                                     censored=analysis.get("censored", "drop"))
        print_report(report, console)
        log_report(client, parent["run_id"], out, report)
        console.print(f"report: {out}/report.md (also under report/ on MLflow run {parent['run_id']})")
    except Exception as exc:  # noqa: BLE001 - the jobs' results are safe in MLflow whatever fails here
        console.print(f"[bold red]The comparison report failed:[/] {escape(f'{type(exc).__name__}: {exc}')}\n"
                      f"Rebuild it with: python -m cogdistill.report --experiment '{experiment}' "
                      f"--parent {parent['run_id']} --log", soft_wrap=True)
