"""Stores that hang, refuse or break, and report arguments that would, for the job and the report
alike (issue 23): a closed port, a server that answers /health and leaves POSTs hanging, a server
that is not MLflow's, a database with a wrong password or a closed port, a sqlite store on a
read-only or full file system (new and existing), a database that dies mid-run, a run of an unknown
format, a mistyped store path for the report, a study file linked out of its folder, out-of-range
report arguments. Each ends in seconds with exit 2 and one `error:` line naming the store or the
argument and the fix: no MLflow traceback, no retry warnings. Real processes, real servers on
127.0.0.1, real tmpfs mounts (root), a real PostgreSQL stopped mid-run."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from helpers.procs import fill

STUDY = "hostile"
# what MLflow prints while it retries or fails, which must never reach the user
NOISE = ("Traceback", "WARNING mlflow", "ERROR mlflow", "will be retried", "Retrying (Retry(", "internal error")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A simulated teacher over 2 tasks x 30 items, as replay inputs: a real job in a few seconds."""
    from cogdistill.report.synthetic import simulate, write_replay_inputs

    return write_replay_inputs(simulate(n_models=1, n_tasks=2, n_items=30, n_samples=1, seed=5),
                               tmp_path_factory.mktemp("hostile-inputs"))


def job_args(inputs, *extra: str, study: str = STUDY) -> List[str]:
    return ["engine=replay", f"engine.path={inputs.traces}", f"model={inputs.models[0]}",
            f"task=[{','.join(inputs.tasks)}]", f"hydra.searchpath=[file://{inputs.conf_dir}]",
            f"data.mirror={inputs.mirror}", "analysis.bootstrap=50", "analysis.report=false", f"study={study}",
            *extra]


def environment(root: Path, **extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "COGDISTILL_MLFLOW"))}
    return {**env, "COGDISTILL_CACHE_DIR": str(root / "cache"), "COGDISTILL_OUTPUT_DIR": str(root / "outputs"),
            **extra}


def run(command: List[str], root: Path, env, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python <command>` in root; the seconds it took in `.seconds`."""
    root.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, *command], cwd=root, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        said = "".join(b.decode(errors="replace") for b in (exc.stdout, exc.stderr) if b)
        pytest.fail(f"{command[:2]} still running after {timeout:g} s:\n{said[-4000:]}")
    proc.seconds = time.monotonic() - began
    return proc


def job(inputs, root: Path, env, *extra: str, timeout: float = 120):
    return run(["-m", "cogdistill", *job_args(inputs, *extra)], root, env, timeout)


def report(uri: str, root: Path, env, *extra: str, timeout: float = 120):
    return run(["-m", "cogdistill.report", "--experiment", STUDY, "--tracking-uri", uri, "--no-figures",
                "--bootstrap", "50", "--out", str(root / "report"), *extra], root, env, timeout)


def one_error(proc, *needles: str, within: float = 30) -> str:
    """Exit 2, one `error:` line holding every needle, none of MLflow's noise, in `within` seconds."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-4000:]
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out[-4000:]
    for needle in needles:
        assert needle in out, out[-4000:]
    for noise in NOISE:
        assert noise not in out, out[-4000:]
    assert proc.seconds < within, f"{proc.seconds:.1f} s:\n{out[-4000:]}"
    print(f"[{proc.seconds:.1f} s] {errors[0][:160]}")  # with -s: how long each refusal took
    return out


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed once the block ends: nothing listens there


@contextlib.contextmanager
def http_server(kind: str) -> Iterator[str]:
    """A server on 127.0.0.1 that is not a working MLflow: `hang` answers GET /health and never
    answers a POST; `html` answers every request with a web page; `missing` with 404."""
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self):
            if kind == "hang" and self.command == "POST":
                release.wait(120)  # holds the connection open, silent, until the test ends
                return
            if kind == "missing" or (kind == "hang" and self.path != "/health"):
                self.send_error(404)
                return
            body = b"<html><body>OK</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def remount(where: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], check=True)


# ------------------------------------------------------------------ 10: servers that are not there or not MLflow

def test_the_report_on_a_closed_port_fails_at_once(tmp_path):
    port = closed_port()
    proc = report(f"http://127.0.0.1:{port}", tmp_path, environment(tmp_path))
    one_error(proc, f"cannot reach the MLflow tracking server at http://127.0.0.1:{port}", "Connection refused",
              within=15)


@pytest.mark.slow  # the probe waits its 10 s for each command
@pytest.mark.parametrize("command", ["report", "job"])
def test_a_server_that_answers_health_but_leaves_posts_hanging(inputs, tmp_path, command):
    with http_server("hang") as url:
        env = environment(tmp_path, MLFLOW_TRACKING_URI=url)
        proc = report(url, tmp_path, env) if command == "report" else job(inputs, tmp_path, env)
    one_error(proc, f"MLflow tracking server at {url} answers /health but not the MLflow API", "waited up to 10 s",
              within=40)


@pytest.mark.parametrize("kind", ["html", "missing"])
def test_a_server_that_is_not_mlflow(tmp_path, kind):
    with http_server(kind) as url:
        proc = report(url, tmp_path, environment(tmp_path))
    one_error(proc, f"{url} is not an MLflow tracking server", "--tracking-uri", within=15)


# ------------------------------------------------------------------ 11: a database the report cannot use

def test_the_report_on_a_closed_database_port_fails_at_once(tmp_path):
    pytest.importorskip("psycopg")
    password = "pw-never-shown-42"
    uri = f"postgresql://cogdistill:{password}@127.0.0.1:{closed_port()}/mlflow"
    proc = report(uri, tmp_path, environment(tmp_path))
    out = one_error(proc, "cannot connect to the MLflow database", "Connection refused", within=15)
    assert password not in out


# ------------------------------------------------------------------ 12: sqlite stores on read-only or full disks

@pytest.mark.slow  # two jobs, ~8 s each
def test_a_new_store_on_a_read_only_or_full_disk(inputs, tmp_path, tmpfs):
    read_only, full = tmpfs("ro", "2m"), tmpfs("full", "1m")
    remount(read_only, "ro")
    fill(full)
    for where, what in ((read_only, "read-only"), (full, "full")):
        env = environment(tmp_path, MLFLOW_TRACKING_URI=f"sqlite:///{where / 'mlflow.db'}")
        one_error(job(inputs, tmp_path, env), f"cannot write the MLflow store sqlite:///{where / 'mlflow.db'}", what,
                  "MLFLOW_TRACKING_URI")
        assert not (where / "mlflow.db").exists()


@pytest.mark.slow  # three jobs and a report, ~30 s
def test_an_existing_store_read_only_then_full(inputs, tmp_path, tmpfs):
    store = tmpfs("store", "8m")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    env = environment(tmp_path, MLFLOW_TRACKING_URI=uri)
    first = job(inputs, tmp_path, env, f"tracking.artifact_root={tmp_path / 'artifacts'}")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    remount(store, "ro")
    one_error(job(inputs, tmp_path, env, "model.max_tokens=10"), f"cannot write the MLflow store {uri}", "read-only")
    # reading needs no write: the report reads the read-only store
    read = report(uri, tmp_path, env)
    assert read.returncode == 0, read.stdout[-3000:] + read.stderr[-3000:]
    remount(store, "rw")
    fill(store)
    one_error(job(inputs, tmp_path, env, "model.max_tokens=10"), f"cannot write the MLflow store {uri}", "full")


def test_the_report_never_creates_a_store(tmp_path):
    db = tmp_path / "nonexistent" / "dir" / "x.db"
    proc = report(f"sqlite:///{db}", tmp_path, environment(tmp_path))
    one_error(proc, f"no MLflow store at sqlite:///{db}", "does not exist", "four slashes", within=15)
    assert not (tmp_path / "nonexistent").exists()
    not_mlflow = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(not_mlflow)) as con:
        con.execute("CREATE TABLE notes (text)")
    proc = report(f"sqlite:///{not_mlflow}", tmp_path, environment(tmp_path))
    one_error(proc, f"{not_mlflow} is a sqlite database but not an MLflow store", within=15)
    with contextlib.closing(sqlite3.connect(not_mlflow)) as con:  # untouched: no MLflow tables were added
        assert [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["notes"]


# ------------------------------------------------------------------ 15: a run of an unknown format

@pytest.mark.slow  # two jobs, ~15 s
def test_a_job_does_not_resume_a_run_of_an_unknown_format(inputs, tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    env = environment(tmp_path, MLFLOW_TRACKING_URI=uri)
    first = job(inputs, tmp_path, env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name(STUDY).experiment_id])
    # what a newer cogdistill left unfinished: the same job's run, in a format this version does not know
    client.set_tag(run.info.run_id, "cogdistill.run_format", "99")
    client.update_run(run.info.run_id, status="FAILED")
    one_error(job(inputs, tmp_path, env), f"MLflow run {run.info.run_id}", "run format 99", "tracking.experiment=")
    (after,) = client.search_runs([client.get_experiment_by_name(STUDY).experiment_id])
    assert after.data.tags["cogdistill.run_format"] == "99" and after.info.status == "FAILED"


# ------------------------------------------------------------------ the report's own arguments and folders

@pytest.mark.parametrize("args, needle", [
    (["--bootstrap", "-5"], "argument --bootstrap: '-5'"),
    (["--seed", "-1"], "argument --seed: '-1'"),
    (["--synthetic", "100000x100000x100000x100000"], "more than a report holds in memory"),
    (["--synthetic", "0x2x30x1"], "at least 1"),
])
def test_report_arguments_out_of_range(tmp_path, args, needle):
    if "--synthetic" not in args:
        args = ["--synthetic", "4x2x30x1", *args]
    proc = run(["-m", "cogdistill.report", *args, "--no-figures", "--out", str(tmp_path / "r")], tmp_path,
               environment(tmp_path), timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and needle in out and "Traceback" not in out, out
    assert proc.seconds < 15 and not (tmp_path / "r").exists()


def test_a_study_file_linked_out_of_its_folder_is_refused_unread(tmp_path):
    from cogdistill.report.synthetic import simulate

    folder = simulate(n_models=3, n_tasks=1, n_items=20, seed=1).write(tmp_path / "study")
    (folder / "humans.parquet").unlink()
    secret = tmp_path / "elsewhere" / "private.csv"
    secret.parent.mkdir()
    secret.write_text("first-line-that-must-not-show,x\n1,2\n")
    (folder / "humans.csv").symlink_to(secret)
    proc = run(["-m", "cogdistill.report", "--folder", str(folder), "--no-figures", "--out", str(tmp_path / "r")],
               tmp_path, environment(tmp_path), timeout=60)
    out = one_error(proc, f"{folder / 'humans.csv'}: a link to {secret}, outside the study folder", within=20)
    assert "first-line-that-must-not-show" not in out
    # a link that stays inside the folder is the folder's own file
    (folder / "humans.csv").unlink()
    (folder / "kept.csv").write_text(secret.read_text())
    (folder / "humans.csv").symlink_to(folder / "kept.csv")
    proc = run(["-m", "cogdistill.report", "--folder", str(folder), "--no-figures", "--out", str(tmp_path / "r")],
               tmp_path, environment(tmp_path), timeout=60)
    assert "outside the study folder" not in proc.stdout + proc.stderr and "humans.csv" in proc.stdout + proc.stderr


# ------------------------------------------------------------------ 11 and 13 on a real PostgreSQL

@pytest.fixture(scope="module")
def postgres():
    from helpers.postgres import serve_postgres

    with serve_postgres() as pg:
        yield pg


GATE = """
import os, time
from pathlib import Path
import cogdistill.tracking.run_format as _rf
_log_task = _rf.log_task
def log_task(*args, **kwargs):  # the job waits here, its first task's traces done, until the test says go
    gate = Path(os.environ["COGDISTILL_TEST_GATE"])
    (gate / "reached").touch()
    deadline = time.monotonic() + 120
    while not (gate / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return _log_task(*args, **kwargs)
_rf.log_task = log_task
"""


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def api_answers(url: str) -> bool:
    request = urllib.request.Request(f"{url}/api/2.0/mlflow/experiments/search", data=b'{"max_results": 1}',
                                     method="POST", headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=5).close()
        return True
    except OSError:
        return False


@pytest.mark.integration
@pytest.mark.slow  # a real PostgreSQL
def test_the_report_with_a_wrong_database_password_fails_in_seconds(postgres, tmp_path):
    from helpers.postgres import PASSWORD

    wrong = "not-" + PASSWORD
    out = one_error(report(postgres.uri.replace(PASSWORD, wrong), tmp_path, environment(tmp_path)),
                    "password authentication failed", within=20)
    assert wrong not in out


@pytest.mark.integration
@pytest.mark.slow  # a real PostgreSQL (and `mlflow server`): ~30-60 s
@pytest.mark.parametrize("via", ["server", "database"])
def test_the_database_dies_mid_run_and_the_job_ends_in_seconds_then_resumes(postgres, inputs, tmp_path, via):
    """Through a tracking server (the production shape) or with the database as MLFLOW_TRACKING_URI."""
    from helpers.mlflow_server import serve_mlflow
    from helpers.postgres import PASSWORD

    study = f"{STUDY}-{via}"
    gate = tmp_path / "gate"
    gate.mkdir()
    with contextlib.ExitStack() as stack:
        if via == "server":
            url = stack.enter_context(serve_mlflow(["server", "--backend-store-uri", postgres.uri,
                                                    "--artifacts-destination", str(tmp_path / "artifacts")],
                                                   tmp_path / "mlflow-server.log"))
            env = environment(tmp_path, COGDISTILL_MLFLOW_SERVER=url, COGDISTILL_TEST_GATE=str(gate))
            args, shown = job_args(inputs, "tracking=server", study=study), url
        else:
            env = environment(tmp_path, MLFLOW_TRACKING_URI=postgres.uri, COGDISTILL_TEST_GATE=str(gate))
            args = job_args(inputs, f"tracking.artifact_root={tmp_path / 'artifacts'}", study=study)
            shown = postgres.uri.replace(PASSWORD, "***")
        proc = subprocess.Popen([sys.executable, "-c", GATE + "\nimport runpy, sys\nsys.argv[0] = 'cogdistill'\n"
                                 "runpy.run_module('cogdistill', run_name='__main__')\n", *args],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_until(lambda: (gate / "reached").exists() or proc.poll() is not None, 120, "the first task logged")
            assert proc.poll() is None, proc.stdout.read()[-4000:]
            postgres.stop()  # the database dies (a tracking server stays up)
            (gate / "go").touch()
            began = time.monotonic()
            said, _ = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if postgres.pid is None:
                postgres.start()
        failed = subprocess.CompletedProcess(args, proc.returncode, said, "")
        failed.seconds = time.monotonic() - began
        out = one_error(failed, f"the MLflow store {shown} stopped answering", "run the same command again",
                        within=30)
        assert PASSWORD not in out
        if via == "server":
            wait_until(lambda: api_answers(url), 60, "the tracking server answering again")
        del env["COGDISTILL_TEST_GATE"]
        again = run(["-m", "cogdistill", *args], tmp_path, env)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    # nothing lost: the job resumed its one run and finished it with both tasks
    rows = postgres.psql("SELECT r.status, count(*) FROM runs r JOIN experiments e ON e.experiment_id = "
                         f"r.experiment_id WHERE e.name = '{study}' GROUP BY r.status")
    assert rows == [["FINISHED", "1"]]
    tasks = postgres.psql("SELECT count(*) FROM latest_metrics m JOIN runs r ON r.run_uuid = m.run_uuid JOIN "
                          f"experiments e ON e.experiment_id = r.experiment_id WHERE e.name = '{study}' "
                          "AND m.key LIKE 'n_items/%'")
    assert tasks == [[str(len(inputs.tasks))]]

