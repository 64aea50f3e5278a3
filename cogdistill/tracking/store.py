"""MLflow: where the store is, one run per job.

The sweep (cogdistill/sweep/sweeper.py) creates the experiment and the parent run once, before any job
starts, and leaves the parent's id in the sweep folder, where every job of the sweep, in this
process or another, reads it (`sweep_parent`).

A job resumes only runs whose owner process is gone, and stops when an identical job is running
(tracking/leases.py: the lease on a RUNNING run and the job lock).

Every store is checked before MLflow touches it (`check_store`, with tracking/store_checks.py), and
a store that stops answering mid-run is one line with the fix (`StoreGuard`, `SqliteRetry`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from omegaconf import DictConfig, OmegaConf

from cogdistill.config.schema import REPO_ROOT, Config, TrackingConfig
from cogdistill.errors import CogdistillError
from cogdistill.tracking.leases import JobAlreadyRunning, JobLock, Lease, _owner
from cogdistill.tracking.run_format import CONFIG_FILE, Tag
from cogdistill.tracking.store_checks import (TrackingError, prepare_mlflow, probe_server, probe_sqlite, store_down,
                                              unwritable)

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
    """The job's (and the sweep's) client: the store checked first (check_store), so that a store
    that cannot be reached or written fails in seconds with the fix, not after MLflow's retries."""
    from mlflow import MlflowClient

    uri = tracking_uri(cfg)
    check_store(uri, write=True)
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        return _create_store_once(lambda: SqliteRetry(MlflowClient(tracking_uri=uri), uri), db), uri
    return StoreGuard(MlflowClient(tracking_uri=uri), uri), uri


def reader_client(uri: str):
    """A client for a command that only reads the store (the report): the store is checked as the
    job's is, and a missing sqlite store is an error, never created (MLflow would create one)."""
    from mlflow import MlflowClient

    check_store(uri, write=False)
    return guarded(MlflowClient(tracking_uri=uri), uri)


def guarded(client, uri: str):
    """client with a store failure as one TrackingError line: a locked, read-only or full sqlite store
    (SqliteRetry), a server or database that stopped answering (StoreGuard)."""
    return SqliteRetry(client, uri) if uri.startswith("sqlite:") else StoreGuard(client, uri)


def check_store(uri: str, *, write: bool) -> None:
    """Before any MLflow call: a sqlite store that can be opened (and written, for a job), a tracking
    server that answers the MLflow API, a database that takes the connection. Bounds MLflow's HTTP
    retries and silences its store tracebacks for the rest of the process."""
    prepare_mlflow()
    if uri.startswith("sqlite:///"):
        probe_sqlite(Path(uri[len("sqlite:///"):]), uri, write=write)
    elif uri.startswith(("http://", "https://")):
        probe_server(uri)
    elif uri.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "mysql"):
        probe_database(uri)


def _create_store_once(make_client, db: Path):
    """MLflow builds a new sqlite store's tables (migrations) when a client first opens it; two
    processes doing that at once collide ("table already exists", "no such index"). One process
    at a time opens the store, under a file lock."""
    import fcntl

    lock_path = db.with_name(db.name + ".init.lock")
    try:
        fh = open(lock_path, "a")
    except OSError:
        fh = None  # a read-only folder: the store exists already or the first call says why
    try:
        if fh is not None:
            fcntl.flock(fh, fcntl.LOCK_EX)
        client = make_client()
        client.search_experiments(max_results=1)
        return client
    finally:
        if fh is not None:
            fh.close()


def shown_uri(uri: str) -> str:
    """The URI without its password or credential parameters, for messages, logs and files."""
    from cogdistill.secrets import mask_uri

    return mask_uri(uri)


def probe_database(uri: str, timeout_s: float = 10.0) -> None:
    """A database URI (MLflow logs to it directly) that refuses connections or the password fails in
    seconds, not after MLflow's 2 minutes of retries; the message never shows the password."""
    try:
        import sqlalchemy

        engine = sqlalchemy.create_engine(uri, connect_args={"connect_timeout": int(timeout_s)})
    except ImportError as exc:
        raise TrackingError(f"MLFLOW_TRACKING_URI / tracking.uri {shown_uri(uri)} needs a database driver that is not "
                            f"installed ({exc}): pip install 'psycopg[binary]' for postgresql://, 'pymysql' for "
                            "mysql+pymysql://.") from None
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.SQLAlchemyError as exc:
        from cogdistill.secrets import mask, uri_secrets

        # the driver may quote the host, which holds a password's tail when the password has an '@'
        reason = mask((str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["no message"])[0],
                      uri_secrets(uri))
        raise TrackingError(
            f"cannot connect to the MLflow database {shown_uri(uri)} ({reason}). Start the database or fix the user "
            "and password in MLFLOW_TRACKING_URI / tracking.uri, or log to a tracking server (tracking=server) or "
            "to the local store (unset MLFLOW_TRACKING_URI).") from None
    finally:
        engine.dispose()


_STORE_PROBLEMS = {
    "readonly database": "the store is read-only",
    "read-only": "the store is read-only",
    "unable to open database file": "the store cannot be opened (missing folder or no permission)",
    "database or disk is full": "the disk holding the store is full",
    "disk i/o error": "the disk holding the store failed (full or unmounted?)",
}


def store_problem(exc: BaseException, uri: str) -> Optional[TrackingError]:
    """A TrackingError with the fix for a store that cannot be written, else None."""
    text = str(exc).lower()
    for needle, what in _STORE_PROBLEMS.items():
        if needle in text:
            return unwritable(uri, what)
    return None


class StoreGuard:
    """An MlflowClient on a tracking server or database: a call that fails because the store stopped
    answering raises TrackingError (one line with the fix); `down` then says so, so that the job
    does not wait on the dead store again to mark its run FAILED."""

    def __init__(self, client, uri: str):
        self._client, self._uri = client, uri
        self.down = False

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            try:
                return attr(*args, **kwargs)
            except Exception as exc:  # MlflowException, requests' or sqlalchemy's errors
                problem = store_down(exc, self._uri)
                if problem is None:
                    raise
                self.down = True
                raise problem from None

        return call


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
                        problem = store_problem(exc, self._uri)
                        if problem is not None:
                            raise problem from None
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


def tracing_client(uri: str):
    """MLflow's client for trace spans in this store (cogdistill/tracking/mlflow_traces.py); on a
    sqlite store retried while parallel jobs hold the lock, as the run's own client is."""
    from mlflow.tracing.client import TracingClient

    client = TracingClient(uri)
    return SqliteRetry(client, uri) if uri.startswith("sqlite:") else StoreGuard(client, uri)


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
    if (data.get("effort") or {}).get("name") == "default":
        data.pop("effort")  # no effort factor: the key of runs made before it existed
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _find_runs(client, experiment_id: str, filters: List[str]):
    return client.search_runs([experiment_id], filter_string=" and ".join(filters), max_results=50,
                              order_by=["attributes.start_time DESC"])


class JobRun:
    """One MLflow run for one job (a model over its tasks); a no-op when tracking is off.

    Resuming never duplicates: inside a sweep, a job whose key already has a run under the same
    parent reuses it (`already_finished` when that run finished); outside a sweep, an
    unfinished run (killed or failed) with the same key is reused, and a finished one is not.
    A run still owned by a live process is never reused: the job stops with JobAlreadyRunning.
    """

    def __init__(self, job: Config, raw_cfg: DictConfig, *, tags: Dict[str, str], run_name: str,
                 lock_dir: Optional[Path] = None):
        self.enabled = job.tracking.enabled
        # each generation as an MLflow trace too (cogdistill/tracking/mlflow_traces.py)
        self.log_traces = self.enabled and job.tracking.log_traces
        self.run_id: Optional[str] = None
        self.experiment_id: Optional[str] = None
        self.resumed = False
        self.already_finished = False
        self._lease: Optional[Lease] = None
        self._lock: Optional[JobLock] = None
        self._client = None  # tracking off: no store, and abandon() has nothing to mark
        if not self.enabled:
            return
        self._client, self.uri = _client(job.tracking)
        self._tracking = job.tracking
        key = job_key(raw_cfg)
        tags = {**tags, Tag.JOB_KEY: key}
        parent = sweep_parent()
        if lock_dir is not None:
            scope = hashlib.sha256(f"{self.uri} {key} {parent['run_id'] if parent else ''}".encode()).hexdigest()[:24]
            self._lock = JobLock(lock_dir, scope)
        if parent:
            self.experiment_id = parent["experiment_id"]
            tags[Tag.PARENT] = parent["run_id"]
            filters = [f"tags.`{Tag.JOB_KEY}` = '{key}'", f"tags.{Tag.PARENT} = '{parent['run_id']}'"]
        else:
            self.experiment_id = ensure_experiment(
                self._client, experiment_name(job.tracking, job.study), artifact_root(job.tracking, self.uri)
            )
            filters = [f"tags.`{Tag.JOB_KEY}` = '{key}'", "attributes.status != 'FINISHED'"]
        previous = [r for r in _find_runs(self._client, self.experiment_id, filters)
                    if parent or Tag.PARENT not in r.data.tags]
        live = [r for r in previous if Lease.is_live(r) and r.data.tags.get(Tag.OWNER) != _owner()]
        if live:
            self.release()
            owner = live[0].data.tags.get(Tag.OWNER, "?").rsplit(":", 1)[0]
            raise JobAlreadyRunning(
                f"an identical job is already running (MLflow run {live[0].info.run_id}, owner {owner}). Wait for it "
                "to finish, or stop it and run this again to resume.")
        if previous:
            try:
                check_resumable(previous[0], self.uri)
            except CogdistillError:
                self.release()
                raise
            self.run_id, self.resumed = previous[0].info.run_id, True
            self.already_finished = previous[0].info.status == "FINISHED"
            if not self.already_finished:
                self._client.update_run(self.run_id, status="RUNNING")
                if Tag.FORMAT in tags:  # the resumed job logs every task again, in this version's format
                    self._client.set_tag(self.run_id, Tag.FORMAT, tags[Tag.FORMAT])
        else:
            self.run_id = self._client.create_run(self.experiment_id, run_name=run_name, tags=tags).info.run_id
        if self.already_finished:
            self.release()
            return
        self._lease = Lease(self._client, self.run_id)
        self._lease.start()
        try:
            self._artifacts(self._client.log_text, self.run_id, OmegaConf.to_yaml(raw_cfg, resolve=True),
                            CONFIG_FILE)
        except BaseException:
            self.abandon("FAILED")
            raise

    @property
    def client(self):
        """The run's MlflowClient (retried while a sqlite store is locked), for run_format's writers."""
        return self._client

    def tracing_client(self):
        return tracing_client(self.uri)

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
                self._artifacts(self._client.log_artifact, self.run_id, str(path), folder)

    def _artifacts(self, call, *args):
        """An artifact call; a full or read-only artifact folder is named as such (the errno is kept)."""
        try:
            return call(*args)
        except OSError as exc:
            shown = exc.filename or artifact_root(self._tracking, self.uri) or shown_uri(self.uri)
            where = f"the MLflow artifact store ({shown})"
            raise OSError(exc.errno, exc.strerror, where) from None

    def finish(self, status: str = "FINISHED") -> None:
        if self.enabled and self.run_id:
            if self._lease:
                self._lease.stop()
            self._client.set_terminated(self.run_id, status=status)
        self.release()

    def abandon(self, status: str) -> None:
        """finish(status) after a failure or a signal: never raises, so the original error is what the
        user sees (a store that cannot be written would fail here too)."""
        from cogdistill.exits import is_interrupt, signals_deferred

        if getattr(self._client, "down", False):  # the store stopped answering: marking the run would wait on it
            if self._lease:  # again. Its owner is gone once this process ends: a re-run resumes it.
                self._lease.stop()
            self.release()
            return
        try:
            with signals_deferred():  # a second Ctrl-C must not leave the run RUNNING
                try:
                    self.finish(status)
                except Exception as exc:  # noqa: BLE001 - see above; the error that stopped the job follows
                    from cogdistill.secrets import mask, uri_secrets

                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    log.warning("could not mark MLflow run %s %s: %s", self.run_id, status,
                                mask(first, uri_secrets(self.uri))[:200])  # masked, then cut
                    log.debug("marking the run failed", exc_info=True)
                    self.release()
        except BaseException as exc:  # a signal that arrived meanwhile: we are stopping already
            if not is_interrupt(exc):
                raise

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()


def check_resumable(run, uri: str) -> None:
    """A job resumes only a run in a format this version writes (1, logged before the version tag,
    or RUN_FORMAT): rewriting a newer run's version tag would pass its unknown layout off as ours."""
    from cogdistill.tracking.run_format import RUN_FORMAT, run_format_version

    version = run_format_version(run)  # a tag that is not a number raises RunFormatError
    if not 1 <= version <= RUN_FORMAT:
        raise TrackingError(
            f"MLflow run {run.info.run_id} in {shown_uri(uri)} is this job's earlier run, but in run format "
            f"{version} (tag {Tag.FORMAT}), which this cogdistill does not write (it writes {RUN_FORMAT}): it "
            f"will not resume it. Upgrade cogdistill, or delete that run (mlflow runs delete --run-id "
            f"{run.info.run_id}) or log to another experiment (tracking.experiment=NAME) to start afresh.")


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
