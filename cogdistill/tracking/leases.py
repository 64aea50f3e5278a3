"""Who owns a running job: the lease on a RUNNING MLflow run and the job lock.

A RUNNING run is *live* while its owner process is: each run carries its owner (host, pid and
the process's start time, so a reused pid is not mistaken for it) and a heartbeat tag refreshed
every HEARTBEAT_S (`Lease`). A job resumes only runs that are not live; an identical job started
while another is running stops with a message instead of adopting its run (`JobLock`, a file lock
in the cache folder, decides between two started at the same moment on one machine).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Optional

from cogdistill.tracking.run_format import Tag
from cogdistill.tracking.store_checks import TrackingError

log = logging.getLogger(__name__)


class JobAlreadyRunning(TrackingError):
    pass


def _process_start(pid: int) -> Optional[str]:
    """The process's start time in clock ticks since boot (/proc), or None: with the pid it names
    one process for good, where a pid alone may be reused by another after a reboot or a kill."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _owner() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_process_start(pid) or ''}"


class Lease:
    """Ownership of a RUNNING run: an owner tag and a heartbeat tag refreshed by a daemon thread."""

    HEARTBEAT_S = 20.0
    STALE_S = 90.0  # a run whose heartbeat is older than this, on another host, is taken for dead

    def __init__(self, client, run_id: str):
        self._client, self.run_id = client, run_id
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._client.set_tag(self.run_id, Tag.OWNER, _owner())
        self._beat()
        self._thread = threading.Thread(target=self._loop, name="cogdistill-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        self._client.set_tag(self.run_id, Tag.HEARTBEAT, f"{time.time():.0f}")

    def _loop(self) -> None:
        while not self._stop.wait(self.HEARTBEAT_S):
            try:
                self._beat()
            except Exception:  # noqa: BLE001 - a missed beat is harmless; the job's own calls report errors
                log.debug("heartbeat failed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()

    @classmethod
    def is_live(cls, run) -> bool:
        """Whether a run is RUNNING under a process that still runs (see the module docstring)."""
        if run.info.status != "RUNNING":
            return False
        owner = run.data.tags.get(Tag.OWNER, "")
        host, _, rest = owner.partition(":")
        pid, _, started = rest.partition(":")
        if host == socket.gethostname() and pid.isdigit():
            return _process_start(int(pid)) == started if started else _pid_alive(int(pid))
        try:
            return time.time() - float(run.data.tags.get(Tag.HEARTBEAT, "0")) < cls.STALE_S
        except ValueError:
            return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobLock:
    """An exclusive lock on one job (its key and its sweep) for as long as the job runs. The kernel
    releases it when the process ends in any way (SIGKILL included), so it never goes stale."""

    def __init__(self, folder: Path, name: str):
        import fcntl

        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{name}.lock"
        self._fh = open(self.path, "a+")
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.seek(0)
            holder = self._fh.read().strip() or "another process"
            self._fh.close()
            raise JobAlreadyRunning(
                f"an identical job is already running ({holder}). Wait for it to finish (its results land in its "
                "MLflow run and the shared generation cache), or stop it and run this again to resume.") from None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
        self._fh.flush()

    def release(self) -> None:
        if not self._fh.closed:
            self._fh.close()
