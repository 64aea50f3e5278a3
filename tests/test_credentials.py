"""Credentials in every shape they hide in: a store address with a password (in the userinfo, with
an '@' inside, or as ?password=) is masked wherever it is shown or written, and a setting named
like a credential (hf_token, x-token, api_key, client_secret, ...) is refused before Hydra saves it,
while the house's own names (max_tokens, reasoning_tokens, tokenizer, ...) pass.

The end-to-end test runs a real sweep and `cogdistill-report --parent latest` against a real
PostgreSQL (tests/helpers/postgres.py) and greps every file they write, and the database, for the
password and every 6-character piece of it."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import typing
from pathlib import Path
from typing import Dict, Iterable, List
from urllib.parse import quote

import pytest
import yaml

from cogdistill.config.overrides import check_overrides
from cogdistill.config.schema import CONF_DIR, REPO_ROOT, ConfigError
from cogdistill.secrets import is_credential_name, mask_uri, uri_secrets
from helpers.errors import expect


def fragments(secret: str, width: int = 6) -> List[str]:
    """The secret and every piece of it `width` long: what a cut or split copy would still hold."""
    return [secret] + [secret[i:i + width] for i in range(len(secret) - width + 1)]


def leaks(text: str, secrets: Iterable[str]) -> List[str]:
    return sorted({f for s in secrets for f in fragments(s) if f in text})


# --- masking addresses ---------------------------------------------------------------------------

# (address, its secrets, what must still be shown)
URIS = [
    ("postgresql://user:Hunter2Pass@db.example:5432/mlflow", ["Hunter2Pass"],
     ["postgresql://user:", "db.example:5432/mlflow"]),
    # an '@' inside the password: SQLAlchemy's parser takes the tail for the host, urllib's the head for nothing
    ("postgresql://user:SECRETx@PASSXtail@db.example/mlflow", ["SECRETx@PASSXtail", "PASSXtail"],
     ["@db.example/mlflow"]),
    ("postgresql://user:Se%40cret99@db.example/mlflow", ["Se%40cret99", "Se@cret99"], ["user:", "@db.example/mlflow"]),
    ("mysql+pymysql://user:p@ss/w0rd!x@10.0.0.7:3306/db", ["p@ss/w0rd!x", "w0rd!x"], ["10.0.0.7:3306/db"]),
    ("postgresql://user:what?ever123@db.example/mlflow", ["what?ever123"], ["@db.example/mlflow"]),
    ("postgresql://db.example/mlflow?password=QueryPass77&sslmode=require", ["QueryPass77"],
     ["sslmode=require", "db.example/mlflow"]),
    ("postgresql://db.example/mlflow?sslmode=require&PASSWORD=UpperCase77", ["UpperCase77"], ["sslmode=require"]),
    ("postgresql://db.example/mlflow?PassWord=MixedCase77", ["MixedCase77"], ["db.example"]),
    ("postgresql://u@db.example/mlflow?pass=ShortKey88;pwd=OtherKey99", ["ShortKey88", "OtherKey99"], ["u@db.example"]),
    ("postgresql://db.example/mlflow?sslpassword=ClientCert55&sslmode=verify-full", ["ClientCert55"],
     ["sslmode=verify-full"]),
    ("https://mlflow.example/api?token=TokTokTok123&x-token=XTokValue45&X-API-Key=KeyValue678",
     ["TokTokTok123", "XTokValue45", "KeyValue678"], ["https://mlflow.example/api?"]),
    ("https://bucket.example/o?X-Amz-Signature=SigSigSig42&X-Amz-Credential=AKIDcred77&x%2Dtoken=Escaped55",
     ["SigSigSig42", "AKIDcred77", "Escaped55"], ["https://bucket.example/o?"]),
    ("postgresql://db.example/mlflow?password=Enc%26oded%3D1", ["Enc&oded=1", "Enc%26oded%3D1"], ["db.example"]),
    ("https://x-access-token:ghs_abcdefghijklmnopqrstuvwxyz012345@github.com/o/r.git",
     ["ghs_abcdefghijklmnopqrstuvwxyz012345"], ["@github.com/o/r.git"]),
    ("https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/o/r", ["ghp_abcdefghijklmnopqrstuvwxyz0123456789"],
     ["@github.com/o/r"]),
    ("host=db.example dbname=mlflow password=LibpqPass42 user=me", ["LibpqPass42"], ["host=db.example", "user=me"]),
]


@pytest.mark.parametrize("uri,secrets,kept", URIS, ids=[u[0][:40] for u in URIS])
def test_mask_uri_hides_every_credential_and_keeps_the_address(uri, secrets, kept):
    shown = mask_uri(uri)
    assert leaks(shown, secrets) == [], shown
    assert "***" in shown
    for part in kept:
        assert part in shown, shown
    # the credentials it reports are those to mask in other text (a driver's error quoting the host)
    assert all(any(s in found or found in s for found in uri_secrets(uri)) for s in secrets), uri_secrets(uri)


@pytest.mark.parametrize("uri", ["sqlite:////home/me/mlruns/mlflow.db", "sqlite:////tmp/a@b/mlflow.db",
                                 "http://127.0.0.1:5000", "https://mlflow.example/some/path@v2",
                                 "postgresql://user@db.example:5432/mlflow?sslmode=require&connect_timeout=10",
                                 "file:///srv/mlruns", "databricks"])
def test_an_address_without_credentials_is_shown_unchanged(uri):
    assert mask_uri(uri) == uri
    assert uri_secrets(uri) == []


def test_a_database_error_quoting_the_tail_of_an_at_password_is_masked():
    """`user:SECRET@TAIL@host`: SQLAlchemy reads host `TAIL@host`, and the driver's error quotes it."""
    pytest.importorskip("psycopg")
    from cogdistill.tracking.store import TrackingError, probe_database

    password = "Lead9Part@Tail7Part"
    uri = f"postgresql://user:{password}@127.0.0.1:1/mlflow"
    msg = expect(TrackingError, lambda: probe_database(uri, timeout_s=5), "cannot connect to the MLflow database")
    assert leaks(msg, [password, "Lead9Part", "Tail7Part"]) == [], msg


# --- credential names ----------------------------------------------------------------------------

CREDENTIALS = ["token", "hf_token", "x_token", "x-token", "X-Token", "xToken", "HF_TOKEN", "hfToken", "auth_token",
               "access_token", "id_token", "refresh_token", "use_auth_token", "api_key", "apikey", "api-key",
               "X-API-Key", "apiKey", "key", "secret_key", "private_key", "client_secret", "secret", "secrets",
               "clientSecret", "password", "db_password", "sslpassword", "PassWord", "passwd", "pwd", "passphrase",
               "Authorization", "Proxy-Authorization", "authorization", "Cookie", "cookie", "Set-Cookie", "auth",
               "basic_auth", "credentials", "bearer", "X-Amz-Signature", "X-Amz-Security-Token", "pass",
               "engine.extra_body.hf_token", "headers.x-token", "engine_kwargs.openai.extra_body.token", "api_keys",
               "extra_body.hf_token[0]"]
HOUSE_NAMES = ["max_tokens", "reasoning_tokens", "answer_tokens", "max_new_tokens", "max_completion_tokens",
               "min_tokens", "total_tokens", "prompt_tokens", "completion_tokens", "skip_special_tokens",
               "add_special_tokens", "stop_token_ids", "request_token_ids", "token_ids", "tokenizer", "tokenizers",
               "tokens_mean", "eos_token", "pad_token", "eos_token_id", "think_end", "key_column", "sort_keys",
               "job_key", "cache_key", "api_key_env", "auth_mode", "keyboard", "monkey", "hf_id", "base_url",
               "pass_at_k", "first_pass", "keys", "author", "keyword", "max_token", "top_k", "served_model",
               "chat_template_kwargs", "kv_cache_memory_bytes"]


@pytest.mark.parametrize("name", CREDENTIALS)
def test_credential_names_are_recognised(name):
    assert is_credential_name(name)


@pytest.mark.parametrize("name", HOUSE_NAMES)
def test_ordinary_names_are_not_credentials(name):
    assert not is_credential_name(name)


def _schema_names() -> set:
    from cogdistill.config import schema

    names, seen = set(), set()

    def walk(cls):
        if cls in seen or not dataclasses.is_dataclass(cls):
            return
        seen.add(cls)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            names.add(f.name)
            for arg in [hints.get(f.name), *typing.get_args(hints.get(f.name))]:
                for inner in [arg, *typing.get_args(arg)]:
                    walk(inner)

    for value in vars(schema).values():
        if isinstance(value, type):
            walk(value)
    return names


def _yaml_keys(node) -> set:
    if isinstance(node, dict):
        return {str(k) for k in node} | {k for v in node.values() for k in _yaml_keys(v)}
    if isinstance(node, list):
        return {k for v in node for k in _yaml_keys(v)}
    return set()


def test_no_setting_of_the_project_is_taken_for_a_credential():
    """Every field of the config schema and every key of conf/ and experiments/ passes: a rule that
    refused one of them would refuse the project's own configs."""
    names = _schema_names()
    for folder in (CONF_DIR, REPO_ROOT / "experiments"):
        for path in folder.rglob("*.yaml"):
            names |= _yaml_keys(yaml.safe_load(path.read_text()))
    assert len(names) > 50 and "max_tokens" in names and "api_key_env" in names
    assert sorted(n for n in names if is_credential_name(n)) == []


KEY_FIX, STORE_FIX = "engine.api_key_env", "MLFLOW_TRACKING_URI="


@pytest.mark.parametrize("override,named,fix", [
    ("+engine.extra_body={hf_token: abc123}", "engine.extra_body.hf_token", KEY_FIX),
    ("+engine.extra_body={x_token: abc123}", "engine.extra_body.x_token", KEY_FIX),
    ("+engine.extra_body={x-token: abc123}", "engine.extra_body.x-token", KEY_FIX),
    ("+engine.extra_body={headers: {X-Api-Key: abc123}}", "X-Api-Key", KEY_FIX),
    ("+engine.extra_body={headers: {Cookie: abc123}}", "Cookie", KEY_FIX),
    ("+engine.extra_body.client_secret=abc123", "engine.extra_body.client_secret", KEY_FIX),
    ("+engine.extra_body.apikey=abc123", "engine.extra_body.apikey", KEY_FIX),
    ("+model.engine_kwargs.openai.extra_body.hfToken=abc123", "hfToken", KEY_FIX),
    ("tracking.uri=postgresql://user:Plain9Pass@db.example/mlflow", "tracking.uri", STORE_FIX),
    ("tracking.uri='postgresql://db.example/mlflow?password=Plain9Pass'", "tracking.uri", STORE_FIX),
    # unquoted, Hydra cannot parse it ('=' in a value), and its message would quote the whole argument
    ("tracking.uri=postgresql://db.example/mlflow?password=Plain9Pass", "looks like an API key or password", STORE_FIX),
])
def test_a_credential_on_the_command_line_is_refused_before_hydra_saves_it(override, named, fix):
    msg = expect(ConfigError, lambda: check_overrides([override]), named, fix)
    assert "abc123" not in msg and "Plain9Pass" not in msg


@pytest.mark.parametrize("args", [["+engine.extra_body={x-token: Plain9Value}"],
                                  ["-m", "+engine.extra_body={hf_token: Plain9Value}"]])
def test_the_command_refuses_a_credential_name_before_anything_is_written(isolated_env, args):
    """The real command (a job and a sweep): exit 2, one line, and the value in no file (.hydra/,
    the MLflow store) and not on the terminal."""
    proc = subprocess.run([sys.executable, "-m", "cogdistill", *args, "engine=dry"], cwd=isolated_env,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in out and "names a credential" in out, out[-2000:]
    assert "Plain9Value" not in out
    assert [p for p in isolated_env.rglob("*") if p.is_file() and b"Plain9Value" in p.read_bytes()] == []


def test_house_settings_with_token_and_key_in_their_names_pass_the_check():
    check_overrides(["+engine.extra_body={max_tokens: 64, reasoning_tokens: 32, skip_special_tokens: false}",
                     "model.max_tokens=128", "+engine.extra_body.top_k=20",
                     "tracking.uri='postgresql://user@db.example/mlflow?sslmode=require'"])


# --- end to end: a sweep and a report on a real PostgreSQL, every file and row searched ----------

# An '@' for the userinfo form (percent-encoded there: unencoded, no parser finds the host), and
# mixed case and digits so that no 6-character piece occurs by chance in a binary file
PASSWORD = "Kq7v@zW9xLm2pR8s"
USER, DATABASE = "credtest", "credstore"
STUDY = "cred-study"
SECRETS = [PASSWORD, quote(PASSWORD, safe="")]


def _run(module: str, args: List[str], root: Path, env: Dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([sys.executable, "-m", module, *args], cwd=root, env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        said = "".join(b.decode(errors="replace") for b in (exc.stdout, exc.stderr) if b)
        pytest.fail(f"python -m {module} still running after {timeout:g} s:\n{said[-4000:]}")


def _scan(root: Path) -> Dict[str, List[str]]:
    """{file: the password's pieces it holds} over every file under root (sweep folders, .hydra/,
    job logs, reports, the generation cache, MLflow's artifact store), for files holding any."""
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(files) > 20
    found = {str(p.relative_to(root)): leaks(p.read_bytes().decode("latin-1"), SECRETS) for p in files}
    return {k: v for k, v in found.items() if v}


def _logged_report(root: Path) -> str:
    """report.md as logged onto the sweep's parent run (MLflow's artifact store: ./mlruns of the cwd)."""
    (path,) = [p for p in (root / "mlruns").rglob("report/report.md")]
    return path.read_text()


def _pg_dump(pg) -> str:
    proc = subprocess.run([*pg.as_owner, str(pg.bindir / "pg_dump"), "-h", str(pg.folder), "-p", str(pg.port),
                           "-U", "postgres", DATABASE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.integration
@pytest.mark.slow  # a real PostgreSQL, a two-job sweep and a report in subprocesses (~40 s on 2 busy cores)
def test_a_database_password_is_in_no_file_artifact_row_or_output(tmp_path):
    from helpers.postgres import serve_postgres

    from cogdistill.report.synthetic import simulate, write_replay_inputs

    inputs = write_replay_inputs(simulate(n_models=2, n_tasks=1, n_items=30, n_samples=1, seed=5), tmp_path / "in")
    root = tmp_path / "work"
    root.mkdir()
    with serve_postgres() as pg:
        pg.psql(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'", database="postgres")
        pg.psql(f"CREATE DATABASE {DATABASE} OWNER {USER}", database="postgres")
        host = f"127.0.0.1:{pg.port}/{DATABASE}"
        in_userinfo = f"postgresql://{USER}:{quote(PASSWORD, safe='')}@{host}"
        as_query = f"postgresql://{USER}@{host}?password={quote(PASSWORD, safe='')}"
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "COGDISTILL_MLFLOW_SERVER")}
        env.update(COGDISTILL_CACHE_DIR=str(root / "cache"), COGDISTILL_OUTPUT_DIR=str(root / "sweeps"))

        # the sweep (jobs, parent run, its report logged to the parent) with the password in the userinfo
        sweep = _run("cogdistill", ["-m", "engine=replay", f"engine.path={inputs.traces}",
                                    f"model={','.join(inputs.models)}", f"task=[{','.join(inputs.tasks)}]",
                                    f"hydra.searchpath=[file://{inputs.conf_dir}]", f"data.mirror={inputs.mirror}",
                                    "analysis.bootstrap=50", f"study={STUDY}"],
                     root, {**env, "MLFLOW_TRACKING_URI": in_userinfo}, timeout=400)
        assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
        after_sweep = _scan(root)  # the report below logs over the sweep's report artifact
        logged_by_sweep = _logged_report(root)
        # the report over the newest sweep, logged onto it, with the password as a query parameter
        report = _run("cogdistill.report", ["--experiment", STUDY, "--parent", "latest", "--log", "--no-figures",
                                            "--bootstrap", "50", "--out", str(root / "report")],
                      root, {**env, "MLFLOW_TRACKING_URI": as_query}, timeout=300)
        assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
        dump = _pg_dump(pg)

    # not vacuous: the sweep folder, both reports and the artifact store are there, naming the store masked
    (marker,) = root.rglob("mlflow_parent_run.json")
    assert json.loads(marker.read_text())["tracking_uri"] == f"postgresql://{USER}:***@{host}"
    in_userinfo_shown = f"Source: postgresql://{USER}:***@{host}"
    as_query_shown = f"Source: postgresql://{USER}@{host}?password=***"
    assert in_userinfo_shown in (marker.parent / "report" / "report.md").read_text()
    assert in_userinfo_shown in logged_by_sweep
    assert as_query_shown in (root / "report" / "report.md").read_text()
    assert as_query_shown in _logged_report(root)
    assert list(root.rglob(".hydra/config.yaml")) and list(root.rglob("traces/*.parquet"))
    assert STUDY in dump and "cogdistill.kind" in dump  # the store's rows are in the dump

    assert after_sweep == {} and _scan(root) == {}, "the password in a file"
    assert leaks(dump, SECRETS) == [], "the password in the MLflow database"
    for proc in (sweep, report):
        assert leaks(proc.stdout + proc.stderr, SECRETS) == [], "the password on the terminal"
