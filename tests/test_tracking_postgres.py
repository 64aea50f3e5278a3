"""MLflow on a real database: a throwaway PostgreSQL (helpers.postgres) behind a real `mlflow server`
(helpers.mlflow_server), as docs/scale-out.md's production shape. Four jobs at once log to it as one
sweep; the report built from it equals the one built from the default sqlite store over the same
replayed traces, and the rows really are in PostgreSQL. Then as a hostile user: the database down
when a job starts, a wrong password in a database URI."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Tuple

import pytest

from helpers.mlflow_server import serve_mlflow
from helpers.postgres import PASSWORD, serve_postgres

# a real PostgreSQL and a real `mlflow server` (starting both: ~20 s on 2 busy cores)
pytestmark = [pytest.mark.integration, pytest.mark.slow]

STUDY = "pg-study"


@pytest.fixture(scope="module")
def postgres():
    with serve_postgres() as pg:
        yield pg


@pytest.fixture(scope="module")
def pg_server(postgres, tmp_path_factory):
    """`mlflow server` with PostgreSQL behind it and a local folder as its artifact store."""
    folder = tmp_path_factory.mktemp("pg-mlflow")
    with serve_mlflow(["server", "--backend-store-uri", postgres.uri, "--artifacts-destination",
                       str(folder / "artifacts")], folder / "mlflow-server.log") as url:
        yield SimpleNamespace(url=url, artifacts=folder / "artifacts")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A simulated teacher, base, student and control over 2 tasks x 60 items x 2 samples, as replay inputs."""
    from cogdistill.report.synthetic import simulate, write_replay_inputs

    return write_replay_inputs(simulate(n_models=4, n_tasks=2, n_items=60, n_samples=2, seed=3),
                               tmp_path_factory.mktemp("pg-inputs"))


def job_args(inputs, models: List[str], study: str = STUDY) -> List[str]:
    return ["engine=replay", f"engine.path={inputs.traces}", f"model={','.join(models)}",
            f"task=[{','.join(inputs.tasks)}]", f"hydra.searchpath=[file://{inputs.conf_dir}]",
            f"data.mirror={inputs.mirror}", "analysis.bootstrap=100", "analysis.report=false", f"study={study}"]


def environment(root: Path, **extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "COGDISTILL_MLFLOW_SERVER")}
    return {**env, "COGDISTILL_CACHE_DIR": str(root / "cache"), "COGDISTILL_OUTPUT_DIR": str(root / "outputs"),
            **extra}


def run(module: str, args: List[str], root: Path, env, timeout: float) -> subprocess.CompletedProcess:
    root.mkdir(parents=True, exist_ok=True)
    try:
        return subprocess.run([sys.executable, "-m", module, *args], cwd=root, env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:  # killed: say where it was
        said = "".join(b.decode(errors="replace") for b in (exc.stdout, exc.stderr) if b)
        pytest.fail(f"python -m {module} still running after {timeout:g} s:\n{said[-4000:]}")


def output(proc) -> str:
    return proc.stdout[-4000:] + proc.stderr[-4000:]


def report(uri: str, root: Path, env, *extra: str) -> dict:
    """`python -m cogdistill.report` over the newest sweep of the store at uri; its report.json."""
    proc = run("cogdistill.report", ["--experiment", STUDY, "--parent", "latest", "--tracking-uri", uri,
                                     "--out", str(root / "report"), "--no-figures", "--bootstrap", "100", *extra],
               root, env, timeout=300)
    assert proc.returncode == 0, output(proc)
    return json.loads((root / "report" / "report.json").read_text())


# the job runs' latest metrics, by model: the same query on either store (MLflow's schema)
JOB_METRICS = """SELECT r.name, m.key, m.value FROM latest_metrics m JOIN runs r ON r.run_uuid = m.run_uuid
JOIN experiments e ON e.experiment_id = r.experiment_id
JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'cogdistill.kind' AND t.value = 'job'
WHERE e.name = '{study}' AND r.status = 'FINISHED'"""


def job_metrics(rows) -> Dict[Tuple[str, str], float]:
    """{(model, metric): value}, without the wall-clock ones (the only ones two stores may differ in)."""
    return {(model, key): float(value) for model, key, value in rows if "seconds" not in key}


def test_four_parallel_jobs_log_to_postgres_and_report_as_the_sqlite_store_does(postgres, pg_server, inputs,
                                                                                tmp_path):
    models = inputs.models
    assert len(models) == 4
    # the production shape: jobs name the server (tracking=server), never the database
    pg_env = environment(tmp_path / "pg", COGDISTILL_MLFLOW_SERVER=pg_server.url)
    proc = run("cogdistill", ["-m", *job_args(inputs, models), "tracking=server", "hydra/launcher=local",
                              "hydra.launcher.max_parallel=4"], tmp_path / "pg", pg_env, timeout=300)
    assert proc.returncode == 0, output(proc)

    # the rows are in PostgreSQL: one parent and four job runs, each by its own process, all finished
    (exp_id,), = postgres.psql(f"SELECT experiment_id FROM experiments WHERE name = '{STUDY}'")
    assert postgres.psql(f"SELECT status, count(*) FROM runs WHERE experiment_id = {exp_id} GROUP BY status") == [
        ["FINISHED", "5"]]
    pids = postgres.psql("SELECT count(DISTINCT t.value) FROM tags t JOIN runs r ON r.run_uuid = t.run_uuid "
                         f"WHERE r.experiment_id = {exp_id} AND t.key = 'cogdistill.pid'")
    assert pids == [["4"]], "one process per job"
    pg_metrics = job_metrics(postgres.psql(JOB_METRICS.format(study=STUDY)))
    assert {model for model, _ in pg_metrics} == set(models)
    assert all(f"r/{task}" in {k for m, k in pg_metrics if m == model} for model in models for task in inputs.tasks)
    # ...and the files in the server's artifact store
    assert len(list(pg_server.artifacts.rglob("traces/task-*.parquet"))) == len(models) * len(inputs.tasks)

    # the report from the server, logged onto the sweep's parent run through it
    pg_report = report(pg_server.url, tmp_path / "pg", pg_env, "--log")
    assert len(list(pg_server.artifacts.rglob("report/report.json"))) == 1
    assert int(postgres.psql(f"SELECT count(*) FROM latest_metrics m JOIN runs r ON r.run_uuid = m.run_uuid "
                             f"WHERE r.experiment_id = {exp_id} AND m.key LIKE 'report/%'")[0][0]) > 10

    # the same replayed traces into the default sqlite store, one job after another
    db = tmp_path / "sqlite" / "store" / "mlflow.db"
    sq_env = environment(tmp_path / "sqlite", MLFLOW_TRACKING_URI=f"sqlite:///{db}")
    proc = run("cogdistill", ["-m", *job_args(inputs, models)], tmp_path / "sqlite", sq_env, timeout=300)
    assert proc.returncode == 0, output(proc)
    sq_report = report(f"sqlite:///{db}", tmp_path / "sqlite", sq_env)

    with sqlite3.connect(db) as con:
        sq_metrics = job_metrics(con.execute(JOB_METRICS.format(study=STUDY)).fetchall())
    assert pg_metrics.keys() == sq_metrics.keys()
    assert all(math.isclose(pg_metrics[k], sq_metrics[k], rel_tol=1e-12) for k in pg_metrics), "a metric differs"

    def cells(rep) -> Dict[Tuple[str, str], tuple]:
        return {(c["model"], c["task"]): (c["n_items"], c["r"], c["p"], c["r_ci_low"], c["r_ci_high"])
                for c in rep["alignment"]}

    assert len(cells(pg_report)) == len(models) * len(inputs.tasks)
    assert cells(pg_report) == cells(sq_report)
    assert pg_report["roles"] == sq_report["roles"] and pg_report["families"] == sq_report["families"]


def one_error_line(proc, began: float, *needles: str) -> str:
    out = output(proc)
    assert proc.returncode == 2, out
    assert "Traceback" not in out, out
    assert sum(line.startswith("error:") for line in out.splitlines()) == 1, out
    for needle in needles:
        assert needle in out, out
    assert time.monotonic() - began < 60, out
    return out


def test_the_database_down_when_a_job_starts_fails_in_seconds(postgres, pg_server, inputs, tmp_path):
    env = environment(tmp_path, COGDISTILL_MLFLOW_SERVER=pg_server.url)
    with postgres.down():  # the server stays up; /health still answers
        began = time.monotonic()
        proc = run("cogdistill", [*job_args(inputs, inputs.models[:1]), "tracking=server"], tmp_path, env,
                   timeout=60)
    one_error_line(proc, began, f"MLflow tracking server at {pg_server.url}", "backend store", "Connection refused")


def test_a_wrong_database_password_fails_in_seconds_and_is_never_shown(postgres, inputs, tmp_path):
    """A job logging straight to the database (MLFLOW_TRACKING_URI=postgresql://..., no server)."""
    wrong = "not-" + PASSWORD
    env = environment(tmp_path, MLFLOW_TRACKING_URI=postgres.uri.replace(PASSWORD, wrong))
    began = time.monotonic()
    proc = run("cogdistill", job_args(inputs, inputs.models[:1]), tmp_path, env, timeout=60)
    out = one_error_line(proc, began, "password authentication failed", "MLFLOW_TRACKING_URI")
    assert wrong not in out
    # the right password: the job logs straight into PostgreSQL, and never prints the password either
    env["MLFLOW_TRACKING_URI"] = postgres.uri
    proc = run("cogdistill", job_args(inputs, inputs.models[:1], "pg-direct"), tmp_path, env, timeout=120)
    assert proc.returncode == 0, output(proc)
    assert PASSWORD not in proc.stdout + proc.stderr, "the database password in the terminal"
    assert postgres.psql("SELECT r.status FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id "
                         "WHERE e.name = 'pg-direct'") == [["FINISHED"]]
