"""More of the bad-input catalogue (tests/test_bad_inputs.py holds the first part): out-of-range
settings, secrets in logged settings, settings Hydra would silently ignore, command-line syntax,
file:// sources and absurd replayed counts. Each case asserts the culprit and the fix in the message.
"""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys

import pytest

from cogdistill.config.schema import REPO_ROOT, ConfigError
from cogdistill.config.validate import config_warnings, validate
from cogdistill.config.overrides import check_overrides
from cogdistill.traces.replay import ReplayError
from cogdistill.tasks.sources import DataSourceError, fetch
from helpers.config import compose
from helpers.errors import expect
from helpers.tasks import mult_config
from helpers.traces import counts, replay, write as write_traces

SECRET = "sk-TESTSECRET0123456789abcdefXYZ"


def files_holding(root, needle: str):
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


# --- A. numeric settings out of range, NaN and infinity ---------------------------------------

@pytest.mark.parametrize("overrides, needles", [
    (["sampling.temperature=-1"], ["sampling.temperature=-1.0", "must be 0 or more", "the default is 0.0"]),
    (["sampling.top_p=0"], ["sampling.top_p=0.0", "more than 0 and at most 1"]),
    (["sampling.top_p=1.5"], ["sampling.top_p=1.5", "more than 0 and at most 1"]),
    (["sampling.n=1001"], ["sampling.n=1001", "at most 1000 samples per item"]),
    (["sampling.max_tokens=2000000"], ["sampling.max_tokens=2000000", "at most 1,000,000"]),
    (["model.max_tokens=2000000"], ["demo-smollm2-135m.yaml", "max_tokens: 2000000", "model.max_tokens=4096"]),
    (["analysis.ci=1.5"], ["analysis.ci=1.5", "between 0 and 1", "0.95"]),
    (["analysis.ci=0"], ["analysis.ci=0.0", "between 0 and 1"]),
    (["analysis.bootstrap=-1"], ["analysis.bootstrap=-1", "0 (no bootstrap CI)"]),
    (["data.download_timeout_s=0"], ["data.download_timeout_s=0.0", "more than 0 seconds", "the default is 60.0"]),
    (["engine=openai", "engine.concurrency=0"], ["engine.concurrency=0", "at least 1", "the default is 8"]),
    (["engine=openai", "engine.timeout_s=0"], ["engine.timeout_s=0.0", "more than 0 seconds"]),
    (["engine=openai", "engine.max_retries=-1"], ["engine.max_retries=-1", "0 or more", "the default is 6"]),
    (["engine=openai", "engine.backoff_s=-1"], ["engine.backoff_s=-1.0", "0 or more"]),
    (["engine=transformers", "engine.batch_size=0"], ["engine.batch_size=0", "at least 1", "the default is 16"]),
    (["engine=vllm", "engine.tensor_parallel_size=0"], ["engine.tensor_parallel_size=0", "at least 1"]),
    (["engine=vllm", "engine.gpu_memory_utilization=1.5"], ["engine.gpu_memory_utilization=1.5",
                                                            "more than 0 and at most 1", "the default is 0.9"]),
    (["engine=vllm", "engine.chunk_size=0"], ["engine.chunk_size=0", "at least 1", "the default is 64"]),
    (["sampling.temperature=nan"], ["sampling.temperature is not a finite number", "give a number"]),
    (["task.multiplication.difficulty.rt_max=inf"], ["task.multiplication.difficulty.rt_max is not a finite number"]),
])
def test_out_of_range_settings_name_the_field_and_the_range(overrides, needles):
    expect(ConfigError, lambda: validate(compose(overrides)), *needles)


def test_engine_kwargs_out_of_range_name_the_model_file(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "fast.yaml").write_text("name: fast\nhf_id: x/y\nrole: control\nfamily: f\n"
                                                  "engine_kwargs:\n  vllm: {chunk_size: 0}\n")
    expect(ConfigError, lambda: validate(compose([f"hydra.searchpath=[file://{tmp_path}]", "model=fast"])),
           "fast.yaml", "engine_kwargs.vllm.chunk_size=0", "at least 1", "the default is 64")


def test_bootstrap_zero_means_no_ci_and_is_accepted():
    assert validate(compose(["analysis.bootstrap=0"])).analysis.bootstrap == 0


# --- B. secrets in logged settings -------------------------------------------------------------

@pytest.mark.parametrize("override, culprit", [
    (f"+engine.extra_body={{api_key: {SECRET}}}", "engine.extra_body.api_key"),
    ("+engine.extra_body.api_key=whatever", "engine.extra_body.api_key"),
    (f"++engine.extra_body={{headers: {{x: {SECRET}}}}}", "engine.extra_body.headers.x"),
    (f"engine.extra_body.note={SECRET}", "engine.extra_body.note"),
    (f"+model.engine_kwargs.openai.extra_body.authorization=Bearer_{SECRET}", "authorization"),
])
def test_secrets_on_the_command_line_are_refused_before_hydra(override, culprit):
    msg = expect(ConfigError, lambda: check_overrides(["engine=openai", override]),
                 culprit, "environment variable", "engine.api_key_env")
    assert SECRET not in msg


def test_secret_in_extra_body_is_refused_by_validate():
    msg = expect(ConfigError, lambda: validate(compose(["engine=openai", f"+engine.extra_body={{api_key: {SECRET}}}"])),
                 "engine.extra_body.api_key", "engine.api_key_env")
    assert SECRET not in msg


def test_secret_in_a_model_files_engine_kwargs_names_the_file(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "leaky.yaml").write_text(
        "name: leaky\nhf_id: x/y\nrole: control\nfamily: f\n"
        f"engine_kwargs:\n  openai: {{extra_body: {{token: {SECRET}}}}}\n")
    msg = expect(ConfigError, lambda: validate(compose([f"hydra.searchpath=[file://{tmp_path}]", "model=leaky"])),
                 "leaky.yaml", "engine_kwargs.openai.extra_body.token", "engine.api_key_env")
    assert SECRET not in msg


# --- C. settings Hydra would accept and ignore; warnings --------------------------------------

@pytest.mark.parametrize("args, needles", [
    (["+sampling.max_tokenz=5"], ["'max_tokenz' is not a key of sampling", "Did you mean sampling.max_tokens=...?"]),
    (["++model.max_tokns=5"], ["'max_tokns' is not a key of model", "Did you mean model.max_tokens=...?"]),
    (["+engine.extra_bdy={a: 1}"], ["'extra_bdy' is not a key of engine", "Did you mean engine.extra_body=...?"]),
    (["model=demo-smollm2-135m", "model=demo-qwen25-coder-0.5b"],
     ["`model` is given twice", "model=demo-smollm2-135m and model=demo-qwen25-coder-0.5b", "Keep one"]),
    (["sampling.n=2", "sampling.n=3"], ["`sampling.n` is given twice", "Keep one"]),
])
def test_ignored_or_repeated_overrides_are_refused(args, needles):
    expect(ConfigError, lambda: check_overrides(args), *needles)


def test_plus_keys_pass_below_free_form_dicts():
    check_overrides(["+engine.extra_body.foo=1", "+model.engine_kwargs.vllm.enforce_eager=true",
                     "+task.multiplication.columns.rt_ms=RT", "+experiment=demo", "+hydra.job.env_set.X=1",
                     "+task.multiplication.sources.extra={url: x, sha256: y, mirror_path: z}"])


@pytest.mark.parametrize("overrides, needles", [
    (["sampling.top_p=0.9"], ["sampling.top_p=0.9 has no effect", "greedy", "sampling.temperature above 0"]),
    (["sampling.n=4"], ["sampling.n=4 with sampling.temperature=0", "sampling.n=1"]),
])
def test_settings_without_effect_give_a_warning_not_an_error(overrides, needles):
    (warning,) = config_warnings(validate(compose(overrides)))
    assert all(n in warning for n in needles), warning


def test_no_warning_for_the_default_or_when_sampling():
    assert config_warnings(validate(compose([]))) == []
    assert config_warnings(validate(compose(["sampling.temperature=0.7", "sampling.top_p=0.9", "sampling.n=4"]))) == []


# --- D. command-line syntax: groups, types, parse errors -------------------------------------

@pytest.mark.parametrize("args, needles", [
    (["experiment=demo"], ["`experiment=demo`", "added with a `+`", "+experiment=demo"]),
    (["+experiment=dmeo"], ["no conf/experiment/dmeo.yaml", "Did you mean +experiment=demo?",
                            "closed_loop, demo, demo-effort, paper, sft-vs-rl"]),
    (["model=demo smollm2"], ["no conf/model/demo smollm2.yaml", "Did you mean model=demo-smollm2-135m?",
                              "no spaces"]),
    (["model=demo-smollm2-135m", "smollm2"], ["`smollm2` is not an override (key=value)", "no spaces"]),
    (["model.name=a b)"], ["`model.name=a b)` is not a valid override", "quote a value"]),
    (["model.max_tokens=abc"], ["model.max_tokens=abc", "expected an integer"]),
    (["model.max_tokens=10,abc"], ["model.max_tokens=10,abc", "expected an integer"]),
    (["sampling.temperature=warm"], ["sampling.temperature=warm", "expected a number"]),
    (["tracking.enabled=maybe"], ["tracking.enabled=maybe", "expected true or false"]),
    (["model.role=teachr"], ["model.role=teachr", "expected one of teacher, base", "Did you mean 'teacher'?"]),
    (["model.max_tokens=null"], ["model.max_tokens=null", "expected an integer"]),
])
def test_command_line_syntax_and_types_are_checked_before_hydra(args, needles):
    expect(ConfigError, lambda: check_overrides(args), *needles)


def test_hydra_syntax_passes_unchanged():
    check_overrides(["-m", "model.max_tokens=10,12", "sampling.max_tokens=null", "model.max_tokens=${oc.env:X,64}",
                     "sampling.seed=range(1,3)", "model=glob(demo-*)", "task=[multiplication,crt]",
                     "sampling.temperature=choice(0,0.7)", "model.chat=false", "model.role=teacher", "--cfg", "job"])


# --- E. engine.extra_body without `+`, as the README writes it --------------------------------

@pytest.mark.parametrize("override, expected", [
    ("engine.extra_body={chat_template_kwargs: {enable_thinking: false}}",
     {"chat_template_kwargs": {"enable_thinking": False}}),
    ("engine.extra_body={add_special_tokens:false}", {"add_special_tokens": False}),
    ("engine.extra_body.top_k=20", {"top_k": 20}),
])
def test_extra_body_can_be_set_without_plus(override, expected):
    check_overrides(["engine=openai", override])
    assert validate(compose(["engine=openai", override])).engine.extra_body == expected


def test_other_engine_keys_stay_closed():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        compose(["engine=openai", "engine.concurrencyy=3"])


# --- F. file:// sources outside the project and the mirror need an opt-in ---------------------

def file_source(path, text=None):
    src = mult_config("0" * 64).sources["trials"]
    src.url = path.as_uri() if hasattr(path, "as_uri") else path
    if text is not None:
        src.sha256 = hashlib.sha256(text).hexdigest()
    return src


@pytest.mark.parametrize("url", ["file:///etc/passwd", f"file://{REPO_ROOT}/../../../../../../etc/passwd",
                                 "file://localhost/etc/passwd"])
def test_file_url_outside_the_project_is_refused(tmp_path, monkeypatch, url):
    monkeypatch.delenv("COGDISTILL_ALLOW_FILE_SOURCES", raising=False)
    expect(DataSourceError, lambda: fetch(file_source(url), mirror=None, cache=tmp_path / "cache", timeout_s=1,
                                          task="t"),
           url, "outside the project folder and the data mirror", "COGDISTILL_ALLOW_FILE_SOURCES=1", "data.mirror=")


def test_file_url_needs_the_opt_in_outside_the_allowed_folders(tmp_path, monkeypatch):
    monkeypatch.delenv("COGDISTILL_ALLOW_FILE_SOURCES", raising=False)
    origin = tmp_path / "home" / "data.csv"
    origin.parent.mkdir()
    origin.write_bytes(b"a,b\n1,2\n")
    src = file_source(origin, origin.read_bytes())
    expect(DataSourceError, lambda: fetch(src, mirror=None, cache=tmp_path / "cache", timeout_s=1, task="t"),
           "COGDISTILL_ALLOW_FILE_SOURCES=1")
    monkeypatch.setenv("COGDISTILL_ALLOW_FILE_SOURCES", "1")
    assert fetch(src, mirror=None, cache=tmp_path / "cache", timeout_s=1, task="t").read_bytes() == b"a,b\n1,2\n"


def test_file_url_inside_the_project_needs_no_opt_in(tmp_path, monkeypatch):
    monkeypatch.delenv("COGDISTILL_ALLOW_FILE_SOURCES", raising=False)
    inside = REPO_ROOT / "conf" / "sampling" / "greedy.yaml"
    assert fetch(file_source(inside, inside.read_bytes()), mirror=None, cache=tmp_path / "cache", timeout_s=1,
                 task="t").read_bytes() == inside.read_bytes()


# --- G. replayed counts that are no counts ----------------------------------------------------

@pytest.mark.parametrize("name, rows, needles", [
    ("t.jsonl", [counts("2x3", 1e30, correct=True)], ["line 1", "`reasoning_tokens` is 1e+30", "more than 1,000,000",
                                                      "fix the value"]),
    ("t.jsonl", [counts("2x3", math.nan, correct=True)], ["line 1", "`reasoning_tokens` is nan",
                                                          "non-negative integer"]),
    ("t.jsonl", [counts("2x3", 3, a=-1, correct=True)], ["line 1", "`answer_tokens` is -1", "non-negative integer"]),
    ("t.jsonl", [counts("2x3", 3, correct=True, total_tokens=math.inf)], ["`total_tokens` is inf",
                                                                          "non-negative integer"]),
    ("t.jsonl", [counts("2x3", 3, correct=True, sample_idx=10 ** 9)], ["`sample_idx` is 1000000000",
                                                                      "more than 1,000"]),
    ("t.jsonl", [counts("2x3", 3, correct=True, latency_s=-2.0)], ["`latency_s` is -2.0", "non-negative number"]),
    ("t.parquet", [counts("2x3", 1e30, correct=True)], ["row 1", "`reasoning_tokens` is 1e+30", "more than"]),
    ("t.parquet", [counts("2x3", math.nan, correct=True)], ["row 1", "`reasoning_tokens` is nan"]),
])
def test_replayed_counts_that_are_no_counts(task, tmp_path, name, rows, needles):
    path = write_traces(tmp_path / name, rows)
    expect(ReplayError, lambda: replay(path, task), name, *needles)


# --- the real command line: exit code 2, one message, no traceback ----------------------------

@pytest.mark.parametrize("args, needles", [
    (["experiment=demo"], ["+experiment=demo"]),
    (["+experiment=nope"], ["no conf/experiment/nope.yaml", "demo, demo-effort, paper"]),
    (["model=demo smollm2"], ["Did you mean model=demo-smollm2-135m?"]),
    (["+sampling.max_tokenz=5"], ["Did you mean sampling.max_tokens=...?"]),
    (["model=demo-smollm2-135m", "model=demo-qwen25-coder-0.5b"], ["`model` is given twice"]),
    (["model.max_tokens=abc"], ["expected an integer"]),
    (["sampling.temperature=-1"], ["sampling.temperature=-1.0", "must be 0 or more"]),
    (["analysis.ci=1.5"], ["analysis.ci=1.5", "between 0 and 1"]),
    ([f"+engine.extra_body={{api_key: {SECRET}}}"], ["engine.extra_body.api_key", "engine.api_key_env"]),
])
def test_cli_refuses_with_exit_2_and_no_traceback(isolated_env, args, needles):
    proc = subprocess.run([sys.executable, "-m", "cogdistill", *args, "engine=dry"], cwd=isolated_env,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-2000:]
    assert "Traceback" not in out and all(n in out for n in needles), out[-2000:]
    assert SECRET not in out and files_holding(isolated_env, SECRET) == []


# --- the environment: where things go, and who starts the jobs --------------------------------

@pytest.mark.parametrize("url", ["notaurl", "ftp://host/v1", "http:///v1"])
def test_a_base_url_that_is_no_http_url(url):
    expect(ConfigError, lambda: check_overrides(["engine=openai", f"engine.base_url={url}"]),
           "base_url", "is not an http(s) URL", "http://127.0.0.1:8000/v1")


def test_a_cache_folder_that_is_a_file(tmp_path):
    from cogdistill.config.schema import cache_dir

    (tmp_path / "afile").write_text("")
    job = validate(compose([f"cache_dir={tmp_path / 'afile' / 'sub'}"]))
    expect(ConfigError, lambda: cache_dir(job), "afile", "COGDISTILL_CACHE_DIR", "point it at a folder")


def test_a_launcher_that_cannot_start_jobs_here_is_named_with_the_way_out():
    from types import SimpleNamespace

    from cogdistill.sweep.sweeper import LauncherError, launch

    class NoCluster:
        def launch(self, batch, initial_job_idx):
            raise RuntimeError('Could not detect "srun", are you indeed on a slurm cluster?')

    expect(LauncherError, lambda: launch(SimpleNamespace(launcher=NoCluster()), [["model=a"]], 0),
           "NoCluster", "cannot start jobs here", "srun", "hydra/launcher=local")


def test_multirun_with_cfg_is_bad_input_with_the_fix(tmp_path):
    """Hydra refuses `-m` with `--cfg` by a plain ValueError: a usage mistake (exit 2), not an internal error."""
    proc = subprocess.run([sys.executable, "-m", "cogdistill", "-m", "model=demo-smollm2-135m", "--cfg", "job"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Only one of --run, --multirun, --cfg" in out and "engine=dry" in out and "drop -m" in out, out
    assert "internal error" not in out and "Traceback" not in out, out
