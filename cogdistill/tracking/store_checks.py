"""Whether an MLflow store can be used, asked before MLflow is: MLflow retries a store it cannot
reach or open for minutes (HTTP calls about 4 minutes, a sqlite or database engine about 100 s),
printing retry warnings and tracebacks, and then fails with its own exception. Each check here
fails in seconds with one TrackingError naming the store and the fix; tracking/store.py runs them
(`check_store`) for the job, the sweep and the report, and turns a store that dies mid-run into one
line (`store_down`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Optional

from cogdistill.errors import CogdistillError
from cogdistill.secrets import mask, mask_uri, uri_secrets


class TrackingError(CogdistillError):
    """An MLflow store that cannot be used (reached, read, written); the message names it and the fix."""


# MLflow's own defaults retry an unanswered HTTP call for about 4 minutes (7 retries, backoff factor
# 2, 120 s per request): a server or its database that dies mid-run would hold a job that long. A
# user who wants MLflow's patience sets these variables (docs/scale-out.md,
# "Process boundaries: signals, sweeps, concurrent jobs, servers").
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
# MLflow logs a database error with its traceback (mlflow.store.db.utils) and each engine retry
# as a warning before raising; the error we raise names the store and the fix instead.
QUIET_LOGGERS = ("mlflow.store.db.utils", "mlflow.store.tracking.sqlalchemy_store", "mlflow.utils.rest_utils",
                 "mlflow.tracking._tracking_service.client")


def prepare_mlflow() -> None:
    """MLflow's HTTP retries bounded (HTTP_DEFAULTS, unless set) and its store tracebacks silenced,
    for the rest of the process (its reader processes, forked later, inherit both)."""
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


MIN_FREE_BYTES = 1 << 20  # below this a job's first run (a few hundred KB of rows) would not fit


def probe_sqlite(db: Path, uri: str, *, write: bool) -> None:
    """A sqlite store: for a reader it must exist and be an MLflow store; for a writer its folder is
    created, and the file system must be writable and not full. Checked on the file system, since
    MLflow retries opening a store it cannot open for about 100 s before it says why."""
    import sqlite3
    from urllib.parse import quote

    if not write:
        if not db.is_file():
            what = "is a folder" if db.is_dir() else "does not exist"
            raise TrackingError(
                f"no MLflow store at {uri}: {db} {what}. Check the path (an absolute one takes four slashes: "
                "sqlite:////path/to/mlflow.db) in --tracking-uri or MLFLOW_TRACKING_URI, or run the study first "
                "(python -m cogdistill ...); a report never creates a store.")
        try:
            with contextlib.closing(sqlite3.connect(f"file:{quote(str(db))}?mode=ro", uri=True)) as con:
                tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.Error as exc:
            raise TrackingError(f"{db} (MLflow store {uri}) cannot be read as a sqlite database ({exc}): point "
                                "--tracking-uri or MLFLOW_TRACKING_URI at the mlflow.db a study wrote.") from None
        if not {"experiments", "runs"} <= tables:
            raise TrackingError(f"{db} is a sqlite database but not an MLflow store (no experiments or runs table): "
                                "point --tracking-uri or MLFLOW_TRACKING_URI at the mlflow.db a study wrote.")
        return
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrackingError(f"cannot create the MLflow store folder {db.parent} ({exc.strerror}): "
                            "set MLFLOW_TRACKING_URI or tracking.uri to a writable place.") from None
    fs = os.statvfs(db.parent)
    if fs.f_flag & os.ST_RDONLY:
        problem = "the store is read-only (its file system is mounted read-only)"
    elif not os.access(db.parent, os.W_OK) or (db.exists() and not os.access(db, os.W_OK)):
        problem = "the store is read-only (no write permission)"
    elif fs.f_bavail * fs.f_frsize < MIN_FREE_BYTES:
        problem = "the disk holding the store is full"
    else:
        return
    raise unwritable(uri, problem)


def probe_server(uri: str, timeout_s: float = 10.0) -> None:
    """A tracking server that does not answer (a closed port, or one that accepts and then stays
    silent), a server that is not MLflow's, and one whose database is down, fail in seconds with the
    fix, not after MLflow's minutes of retries (or with its HTTP error as an internal error)."""
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    shown = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    try:
        urllib.request.urlopen(f"{shown}/health", timeout=timeout_s).close()  # noqa: S310 - http(s) only
    except urllib.error.HTTPError:
        pass  # it answered: a server is there (a proxy may guard /health); the API call below says which
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__
        raise TrackingError(
            f"cannot reach the MLflow tracking server at {shown} ({reason}; waited up to {timeout_s:g} s). Start it "
            "(`make ui`, or `mlflow server --port PORT`), or point MLFLOW_TRACKING_URI / tracking.uri / --tracking-uri "
            "at a running one, or unset MLFLOW_TRACKING_URI to log to the local store mlruns/.") from None
    # /health answers without the database behind the server; a down database answers 503 to every
    # call, which MLflow's client retries. One call that needs the database tells, and it is a POST as
    # most of MLflow's are: a server (or proxy) that answers GETs and leaves POSTs hanging is found here.
    api = f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search"
    request = urllib.request.Request(api, data=b'{"max_results": 1}', method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as resp:  # noqa: S310 - http(s) only
                body = resp.read(1 << 20)
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                raise
            time.sleep(1.0)  # once: a server whose database just restarted fails a call on a stale connection
            with urllib.request.urlopen(request, timeout=timeout_s) as resp:  # noqa: S310
                body = resp.read(1 << 20)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            raise TrackingError(
                f"the MLflow tracking server at {shown} answers, but its backend store does not (HTTP {exc.code}: "
                f"{_server_message(exc)}). Start the database behind `mlflow server --backend-store-uri ...` or fix "
                "its user and password there, then run this again.") from None
        if exc.code in (401, 403):
            return  # a server behind authentication: MLflow's own calls send the credentials
        raise _not_mlflow(shown, f"HTTP {exc.code} to the MLflow API") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__
        raise TrackingError(
            f"the MLflow tracking server at {shown} answers /health but not the MLflow API ({reason}; waited up to "
            f"{timeout_s:g} s for POST {urlsplit(api).path}). See the server's log: its backend store (the "
            "database behind `mlflow server --backend-store-uri`) may be down or slow, or the server or a proxy in "
            "front of it hangs; restart them, or point MLFLOW_TRACKING_URI / tracking.uri / --tracking-uri at "
            "another server.") from None
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise _not_mlflow(shown, "an answer that is not MLflow's JSON")


def _not_mlflow(shown: str, what: str) -> TrackingError:
    return TrackingError(
        f"{shown} is not an MLflow tracking server (it gave {what}). Check the host and port in "
        "MLFLOW_TRACKING_URI / tracking.uri / --tracking-uri (`mlflow server --port PORT` prints its address).")


def _server_message(exc) -> str:
    """The first line of an MLflow server's JSON error ("message"), else of its body."""
    try:
        body = exc.read().decode("utf-8", "replace")
    except OSError:
        return exc.reason or "no message"
    try:
        body = json.loads(body).get("message", body)
    except (ValueError, AttributeError):
        pass
    return (str(body).strip().splitlines() or ["no message"])[0][:300]


def unwritable(uri: str, what: str) -> TrackingError:
    return TrackingError(
        f"cannot write the MLflow store {mask_uri(uri)}: {what}. Free space or fix its permissions, or log "
        "elsewhere: MLFLOW_TRACKING_URI=sqlite:////writable/folder/mlflow.db (or tracking.uri=...). Finished "
        "generations are cached: re-running resumes.")


def store_down(exc: BaseException, uri: str) -> Optional[TrackingError]:
    """A TrackingError for a tracking server or database that stopped answering (after MLflow's
    bounded retries, HTTP_DEFAULTS), else None: MLflow wraps both in a plain MlflowException."""
    code = getattr(exc, "error_code", "")
    text = str(exc)
    if code != "TEMPORARILY_UNAVAILABLE" and not text.startswith("API request to") \
            and type(exc).__name__ != "OperationalError":
        return None
    reason = mask((text.strip().splitlines() or ["no message"])[0], uri_secrets(uri))  # masked, then cut
    reason = reason if len(reason) <= 300 else reason[:300] + "..."
    return TrackingError(
        f"the MLflow store {mask_uri(uri)} stopped answering ({reason}). Start the tracking server or "
        "its database again (or fix the network), then run the same command again: finished generations are "
        "cached and the job resumes its run.")
