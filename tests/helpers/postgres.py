"""A throwaway PostgreSQL server on 127.0.0.1, for as long as a `with` block lasts.

Debian's binaries (/usr/lib/postgresql/<version>/bin, package `postgresql`); initdb refuses to run
as root, so as root the server runs as the `postgres` system user in a folder that user owns.
No system cluster (pg_ctlcluster) is touched: its data, port and socket are all in the folder.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

from helpers.openai_server import free_port

USER, PASSWORD, DATABASE = "cogdistill", "s3cret-pw", "mlflow"


@dataclass
class Postgres:
    bindir: Path
    folder: Path  # data/, the unix socket, the log
    port: int
    as_owner: List[str]  # the prefix that runs a command as the server's owner
    server: Optional[subprocess.Popen] = None

    @property
    def uri(self) -> str:
        """What `mlflow server --backend-store-uri` takes (TCP, password authentication)."""
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def pid(self) -> Optional[int]:
        return self.server.pid if self.server is not None and self.server.poll() is None else None

    def start(self, timeout: float = 60) -> None:
        # a plain `postgres` (not pg_ctl, which daemonises): the pid we start is the server's, the one to stop
        log = self.folder / "postgres.log"
        self.server = subprocess.Popen(
            [*self.as_owner, str(self.bindir / "postgres"), "-D", str(self.folder / "data"), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.folder}",
             # a throwaway database: no durability, less disk traffic on a shared machine
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
            stdout=open(log, "a"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while subprocess.run([str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"]).returncode:
            assert self.server.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"postgres did not start in {timeout:.0f} s: {log.read_text()[-3000:]}"
            time.sleep(0.2)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: abort transactions, disconnect clients), then SIGKILL to its whole
        session (its backends) if anything lingers."""
        if self.server is None:
            return
        _signal_and_wait(self.server.pid, signal.SIGINT, 20)
        with contextlib.suppress(OSError):
            os.killpg(self.server.pid, signal.SIGKILL)
        self.server.wait(timeout=10)
        self.server = None

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """The database stopped for the block, then started again on the same port and data."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def psql(self, sql: str, database: str = DATABASE) -> List[List[str]]:
        """One statement as the superuser, over the unix socket; its rows (fields split on |)."""
        proc = subprocess.run([*self.as_owner, str(self.bindir / "psql"), "-h", str(self.folder), "-p", str(self.port),
                               "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return [line.split("|") for line in proc.stdout.splitlines()]


def bindir() -> Optional[Path]:
    """The newest installed PostgreSQL's bin folder, else None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def require_postgres() -> Path:
    """The bin folder; skips where PostgreSQL is absent, or fails in CI (COGDISTILL_REQUIRE_SERVICES=1,
    set by .ci/run, which installs it)."""
    found = bindir()
    if found is None:
        missing = "PostgreSQL is not installed (Debian: apt-get install postgresql)"
        (pytest.fail if os.environ.get("COGDISTILL_REQUIRE_SERVICES") == "1" else pytest.skip)(missing)
    try:
        import psycopg  # noqa: F401 - SQLAlchemy 2.1's driver for postgresql:// URIs
    except ImportError:
        (pytest.fail if os.environ.get("COGDISTILL_REQUIRE_SERVICES") == "1" else pytest.skip)(
            "psycopg is not installed (pip install -e '.[dev]')")
    return found


def _owner_prefix(folder: Path) -> List[str]:
    """Root hands the folder to the `postgres` user and runs the server as it; anyone else is themself."""
    if os.geteuid() != 0:
        return []
    shutil.chown(folder, "postgres", "postgres")
    # setpriv execs (runuser forks and waits): the pid we start is the server's own, the one to stop
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _signal_and_wait(pid: int, sig: int, grace_s: float) -> None:
    for s in (sig, signal.SIGKILL):
        try:
            os.kill(pid, s)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not _alive(pid):
            return


@contextlib.contextmanager
def serve_postgres() -> Iterator[Postgres]:
    """initdb; postgres on a free port of 127.0.0.1 and a unix socket in its folder; a password user
    owning a database `mlflow`. Stopped by its pid, and its folder removed, at the end (failed or not)."""
    bindir = require_postgres()
    folder = Path(tempfile.mkdtemp(prefix="cogdistill-pg-"))  # not under pytest's tmp: root-only (0700)
    pg = Postgres(bindir, folder, free_port(), _owner_prefix(folder))
    try:
        pwfile = folder / "superuser.pw"  # initdb wants one where any connection takes a password
        pwfile.write_text(PASSWORD + "\n")
        if pg.as_owner:
            shutil.chown(pwfile, "postgres", "postgres")
        # trust on the unix socket only, in a folder only its owner may enter; TCP takes a password
        init = subprocess.run([*pg.as_owner, str(bindir / "initdb"), "-D", str(folder / "data"), "-U", "postgres",
                               "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                               "--no-sync"],
                              capture_output=True, text=True, timeout=120)
        assert init.returncode == 0, init.stdout + init.stderr
        pg.start()
        pg.psql(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'", database="postgres")
        pg.psql(f"CREATE DATABASE {DATABASE} OWNER {USER}", database="postgres")
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)
