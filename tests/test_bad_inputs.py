"""The bad-input catalogue: every mistake a user can make stops with one CogdistillError (exit code 2
on the command line, no traceback) whose message names the file or field AND says the fix.

Each case asserts on substrings of the message: the culprit first, then the fix. Where r is
undefined (one item, equal costs) the job must not crash: r is NaN and a note says why.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import polars as pl
import pytest

from cogdistill.stats import correlation as stats
from cogdistill.config.schema import ConfigError, SamplingConfig, TransformersEngineConfig
from cogdistill.config.validate import validate
from cogdistill.engines.base import EngineError, Request
from cogdistill.config.overrides import check_overrides
from cogdistill.engines.tokenizer import ModelTokenizer, PromptError
from cogdistill.traces.replay import ReplayError
from cogdistill.tasks.load import load_task
from cogdistill.tasks.item_table import TaskDataError
from cogdistill.tasks.sources import DataSourceError
from cogdistill.engines.weights import WeightsError, resolve_weights
from helpers.config import compose
from helpers.errors import expect
from helpers.models import fake_vllm, model_cfg as tiny_model, requests_for
from helpers.openai_server import engine_for, ok, run
from helpers.tasks import generic_cfg, mult_config, write
from helpers.traces import IDS, counts, replay, write as write_traces


def load_generic(tmp_path, text: str, measure: str = "mean_rt", name: str = "items.csv", **kw):
    path = write(tmp_path / "m" / name, text)
    return lambda: load_task(generic_cfg(path, measure=measure, **kw), mirror=str(path.parent),
                             cache=tmp_path / "cache", timeout_s=1)


# --- human data: a generic task over a synthetic CSV ----------------------------------------

@pytest.mark.parametrize("case, text, kw, needles", [
    ("malformed CSV (ragged row)", "item_id,question,answer\nq1,a,1,extra,fields\n", {},
     ["items.csv", "not a readable CSV", "as many fields as the header"]),
    ("missing column", "item_id,question,solution\nq1,a,1\n", {},
     ["items.csv", "missing column(s) ['answer']", "columns: {answer: <your column>}"]),
    ("rt_ms column misnamed", "item_id,question,answer,RT,correct\nq1,a,1,900,1\n", {},
     ["items.csv", "no RT column (rt_s or rt_ms)", "columns: {rt_ms: <your column>}"]),
    ("non-numeric RT", "item_id,question,answer,rt_ms,correct\nq1,a,1,fast,1\n", {},
     ["items.csv", "column 'rt_ms' has non-numeric value 'fast'", "fix or drop those rows"]),
    ("missing RT value", "item_id,question,answer,rt_s,correct\nq1,a,1,,1\nq1,a,1,2.0,1\n", {},
     ["items.csv", "missing or non-numeric", "item 'q1'", "drop those rows"]),
    ("negative trial RT", "item_id,question,answer,rt_s,correct\nq1,a,1,-0.5,1\nq1,a,1,2.0,1\nq2,b,2,1.0,1\n", {},
     ["items.csv", "item 'q1' has a trial with RT -0.5", "must be positive", "difficulty.rt_min"]),
    ("zero item-level RT", "item_id,question,answer,human_rt_s\nq1,a,1,0\nq2,b,2,1.5\n", {},
     ["items.csv", "'human_rt_s' of item 'q1' is not positive", "fix the value"]),
    ("duplicate item ids", "item_id,question,answer,human_rt_s\nq1,a,1,2\nq1,b,1,3\n", {},
     ["items.csv", "item 'q1' appears on several rows", "one row per item"]),
    ("several answers for one item", "item_id,question,answer,rt_s\nq1,a,1,2\nq1,a,2,3\n", {},
     ["items.csv", "item 'q1' has several values in 'answer'", "map participants' responses to another column"]),
    ("empty task (header only)", "item_id,question,answer\n", {},
     ["task 'mine': no items", "items.csv", "not cut short"]),
    ("every trial outside the RT window", "item_id,question,answer,rt_s,correct\nq1,a,1,0.1,1\n",
     {"rt_min": 0.2}, ["items.csv", "item 'q1' has no trial left", "widen `difficulty.rt_min`"]),
    ("empty item id", "item_id,question,answer\n,a,1\nq2,b,2\n", {},
     ["items.csv", "column 'item_id' has empty values", "fill them in or drop those rows"]),
    ("accuracy as a percentage", "item_id,question,answer,accuracy\nq1,a,1,90\n", {"measure": "error_rate"},
     ["items.csv", "'accuracy' must lie in 0..1", "a proportion, not a percentage"]),
    ("both rt_s and rt_ms", "item_id,question,answer,rt_s,rt_ms\nq1,a,1,2,2000\n", {},
     ["items.csv", "both 'rt_s' and 'rt_ms'", "keep (or map) only one"]),
    ("max_items 0", "item_id,question,answer\nq1,a,1\n", {"max_items": 0},
     ["task 'mine': max_items=0", "task.mine.max_items=10"]),
    ("prompt field the file lacks", "item_id,question,answer\nq1,a,1\n", {"prompt": "{question} {operand}"},
     ["uses {operand}", "add that column to the data file or change `prompt:`"]),
    ("broken prompt template", "item_id,question,answer\nq1,a,1\n", {"prompt": "{question"},
     ["task 'mine': `prompt:` is not a valid template", "literal braces as {{ and }}"]),
])
def test_bad_human_data(tmp_path, case, text, kw, needles):
    measure = kw.pop("measure", "mean_rt")
    expect(TaskDataError, load_generic(tmp_path, text, measure, **kw), *needles)


def test_columns_mapping_to_an_absent_column(tmp_path):
    from dataclasses import replace

    path = write(tmp_path / "m" / "theirs.csv", "stim,question,answer,RT\ns1,a,1,1.5\n")
    cfg = replace(generic_cfg(path), columns={"item_id": "stim", "human_rt_s": "RT_ms"})
    expect(TaskDataError, lambda: load_task(cfg, mirror=str(path.parent), cache=tmp_path, timeout_s=1),
           "theirs.csv", "`columns.human_rt_s: RT_ms` names no column", "map it to one of those")


# --- sources: mirror, download, checksum ----------------------------------------------------

def test_checksum_mismatch_names_the_file_and_the_fix(mult_mirror, tmp_path):
    mirror, _ = mult_mirror
    expect(DataSourceError, lambda: load_task(mult_config("0" * 64), mirror=str(mirror), cache=tmp_path, timeout_s=1),
           "consolidated_mult_data.csv: sha256", "restore the original, or update `sha256:`")


def test_unreachable_url_without_a_mirror(tmp_path):
    expect(DataSourceError, lambda: load_task(mult_config("0" * 64), mirror=None, cache=tmp_path, timeout_s=1),
           "could not download http://127.0.0.1:9/unreachable.csv", "COGDISTILL_DATA_MIRROR=<dir>")


def test_malformed_url_without_a_mirror(tmp_path):
    cfg = mult_config("0" * 64)
    cfg.sources["trials"].url = "not a url"
    expect(DataSourceError, lambda: load_task(cfg, mirror=None, cache=tmp_path, timeout_s=1),
           "`url: not a url` is not a URL", "file:///absolute/path")


def test_mirror_without_the_file(tmp_path):
    expect(DataSourceError, lambda: load_task(mult_config("0" * 64), mirror=str(tmp_path), cache=tmp_path, timeout_s=1),
           "has no soh-multiplication/consolidated_mult_data.csv", "Point COGDISTILL_DATA_MIRROR")


def test_sha256_that_is_not_a_sha256(mult_mirror, tmp_path):
    mirror, _ = mult_mirror
    expect(DataSourceError, lambda: load_task(mult_config("abc"), mirror=str(mirror), cache=tmp_path, timeout_s=1),
           "`sha256: abc` is not a sha256", "sha256sum consolidated_mult_data.csv")


# --- configs and command-line overrides -----------------------------------------------------

@pytest.mark.parametrize("args, needles", [
    (["model=demo-smollm2"], ["no conf/model/demo-smollm2.yaml", "Did you mean model=demo-smollm2-135m?"]),
    (["task=[multiplicaton]"], ["no conf/task/multiplicaton.yaml", "Did you mean task=[multiplication]?"]),
    (["engine=vlm"], ["no conf/engine/vlm.yaml", "Did you mean engine=vllm?"]),
    (["modle=demo-smollm2-135m"], ["`modle`", "Did you mean model=...?"]),
    (["task.multiplication.max_itmes=3"], ["'max_itmes' is not a key of task.multiplication",
                                           "Did you mean task.multiplication.max_items=...?"]),
    (["model.weights.pth=/x"], ["'pth' is not a key of model.weights", "Did you mean model.weights.path=...?"]),
])
def test_override_typos_get_a_did_you_mean(args, needles):
    expect(ConfigError, lambda: check_overrides(args), *needles)


def test_valid_overrides_and_hydra_syntax_pass_the_precheck(tiny_conf):
    check_overrides(["-m", "model=glob(demo-*)", "task=[multiplication,crt]", "engine=replay", "engine.path=x.jsonl",
                     "task.multiplication.sources.trials.sha256=abc", "model.engine_kwargs.vllm.x=1",
                     "+experiment=demo", "hydra/launcher=local", f"hydra.searchpath=[file://{tiny_conf}]",
                     "model=tiny-random", "sampling=greedy", "--cfg", "job"])


@pytest.mark.parametrize("args, needles", [
    (["modle=demo-smollm2-135m"], ["Did you mean model=...?"]),
    (["model=demo-smollm2"], ["Did you mean model=demo-smollm2-135m?"]),
    (["engine=dry", "task.multiplication.max_items=0"], ["max_items=0 keeps no items", "positive number"]),
])
def test_cli_exits_2_with_one_message_and_no_traceback(isolated_env, args, needles):
    proc = subprocess.run([sys.executable, "-m", "cogdistill", *args], cwd=isolated_env, capture_output=True,
                          text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-2000:]
    assert "Traceback" not in out and all(n in out for n in needles), out[-2000:]


@pytest.mark.parametrize("override, needles", [
    ("task.multiplication.scorer=integr", ["task/multiplication.yaml", "scorer: integr", "Did you mean 'integer'?"]),
    ("task.multiplication.difficulty.measure=mean_rtt", ["difficulty.measure: mean_rtt", "Did you mean 'mean_rt'?"]),
    ("task.multiplication.kind=generik", ["task/multiplication.yaml", "kind: generik", "Did you mean 'generic'?"]),
    ("model.engine=vlm", ["demo-smollm2-135m.yaml", "engine: vlm", "Did you mean 'vllm'?"]),
    ("model.max_tokens=0", ["demo-smollm2-135m.yaml", "max_tokens: 0", "model.max_tokens=256"]),
    ("sampling.max_tokens=-1", ["sampling.max_tokens=-1", "at least 1, or null"]),
    ("sampling.n=0", ["sampling.n=0", "must be at least 1"]),
    ("analysis.cost=reasoning", ["analysis.cost=reasoning", "Did you mean 'reasoning_tokens'?"]),
    ("analysis.censored=dorp", ["analysis.censored=dorp", "use drop", "Did you mean 'drop'?"]),
])
def test_invalid_config_values_name_the_field_and_the_fix(override, needles):
    expect(ConfigError, lambda: validate(compose([override])), *needles)


def test_broken_model_link_names_the_file_and_suggests(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "stud.yaml").write_text("name: stud\nhf_id: x/y\nrole: student\nfamily: f\n"
                                                  "teacher: demo-qwen25-coder-0.5b\nbase: demo-smollm2-135\n")
    expect(ConfigError, lambda: validate(compose([f"hydra.searchpath=[file://{tmp_path}]", "model=stud"])),
           "stud.yaml", "`base: demo-smollm2-135` names no file", "Did you mean 'demo-smollm2-135m'?")


def test_unknown_engine_kwargs_key_names_the_model_file():
    from cogdistill.job.plan import engine_settings

    job = validate(compose([]))
    job.model.engine_kwargs = {"transformers": {"batch_sise": 4}}
    expect(ConfigError, lambda: engine_settings("transformers", job),
           "demo-smollm2-135m.yaml", "unknown key(s) ['batch_sise']", "accepts", "batch_size")


# --- models: weights, tokenizer, context ----------------------------------------------------

def test_chat_model_whose_tokenizer_has_no_chat_template(tiny_model_dir, tmp_path):
    plain = tmp_path / "no-template"
    shutil.copytree(tiny_model_dir, plain, ignore=shutil.ignore_patterns("*.safetensors", "chat_template.*"))
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    cfg = tiny_model(plain, chat=True)
    expect(PromptError, lambda: ModelTokenizer(cfg, resolve_weights(cfg, tmp_path)),
           "model 'tiny-random'", "has no chat template", "set `chat: false` in conf/model/tiny-random.yaml")


def test_local_weights_folder_without_config_json(tmp_path):
    expect(WeightsError, lambda: resolve_weights(tiny_model(tmp_path), tmp_path),
           "tiny-random.yaml", "not a Hugging Face model folder", "point `weights.path` at the folder")


@pytest.mark.parametrize("engine_name", ["transformers",
                                         pytest.param("transformers in its own process", marks=pytest.mark.slow),  # 7 s
                                         "vllm"])
def test_prompt_longer_than_the_model_context(tiny_model_dir, tmp_path, monkeypatch, engine_name):
    from cogdistill.config.schema import VllmEngineConfig
    from cogdistill.engines.factory import create_engine

    cfg = tiny_model(tiny_model_dir)
    weights = resolve_weights(cfg, tmp_path)
    tok = ModelTokenizer(cfg, weights)
    long = "Solve this multiplication problem step by step then answer " * 100
    assert len(tok.encode(tok.render(long))) > 512  # the tiny model's max_position_embeddings
    if engine_name == "vllm":
        fake_vllm(monkeypatch, max_model_len=512)
        from cogdistill.engines.vllm_engine import VllmEngine

        engine, source = VllmEngine(cfg, weights, VllmEngineConfig()), "max_model_len"
    else:
        engine = create_engine("transformers", cfg, weights, TransformersEngineConfig(),
                               isolate=engine_name != "transformers")
        source = "max_position_embeddings"
    try:
        message = expect(EngineError, lambda: engine.generate([Request(0, "short", tok.render("short")),
                                                               Request(1, long, tok.render(long))],
                                                              SamplingConfig(), 4, lambda i, g: None),
                         "prompt 1", source, "is 512", "shorten the task's `prompt:`")
        assert "Traceback" not in message
    finally:
        engine.close()


# --- replay files ---------------------------------------------------------------------------

def test_truncated_trace_file_names_the_cut_line(task, tmp_path):
    path = write_traces(tmp_path / "t.jsonl", [counts(i, 5, correct=True) for i in IDS])
    path.write_text(path.read_text()[:-25])  # a killed writer: the last line stops mid-object
    expect(ReplayError, lambda: replay(path, task), "t.jsonl", "line 6 is not valid JSON", "one JSON object per line")


@pytest.mark.parametrize("rows, needles", [
    ([counts(i, 5, task="stroop", correct=True) for i in IDS],
     ["no record is for task 'multiplication'", "['stroop']", "select one of them with task=[...]"]),
    ([counts("2x3", -3, correct=True)], ["line 1", "`reasoning_tokens` is -3", "non-negative integer"]),
    ([counts("2x3", 3, correct=True), counts("2x3", 4, correct=True)],
     ["line 2 repeats item_id '2x3'", "number repeated samples 0, 1, 2"]),
    ([counts("2x3", 3, correct="yes")], ["line 1", "`correct` is 'yes'", "use true/false"]),
])
def test_bad_replay_records(task, tmp_path, rows, needles):
    path = write_traces(tmp_path / "t.jsonl", rows)
    expect(ReplayError, lambda: replay(path, task), "t.jsonl", *needles)


# --- the openai engine against a scripted server --------------------------------------------

def test_unparseable_server_response(tiny, serve):
    server = serve(lambda body, _: ok("<html>502 bad gateway</html>"))
    expect(EngineError, lambda: run(engine_for(tiny, server), requests_for(tiny[2])[:1]),
           "/v1/chat/completions", "not JSON", "Is engine.base_url an OpenAI-compatible API")


@pytest.mark.parametrize("status", [429, 503])
def test_http_storm_is_retried_then_reported(tiny, serve, status):
    server = serve(lambda body, _: (status, {}, {"error": {"message": "overloaded"}}))
    expect(EngineError, lambda: run(engine_for(tiny, server, max_retries=2), requests_for(tiny[2])[:1]),
           "after 3 attempt(s)", f"HTTP {status}: overloaded", "lower engine.concurrency", "engine.max_retries")
    assert len(server.seen) == 3


@pytest.mark.parametrize("override, needles", [
    ("engine.api_key_env=sk-test-SECRET123", ["engine.api_key_env is not an environment variable name",
                                              "NAME the variable"]),
    ("engine.base_url=https://user:pw@host.example/v1", ["engine.base_url carries credentials",
                                                         "engine.api_key_env"]),
])
def test_secrets_in_openai_settings_are_refused(override, needles):
    msg = expect(ConfigError, lambda: validate(compose(["engine=openai", override])), *needles)
    assert "SECRET123" not in msg and "pw@" not in msg
    msg = expect(ConfigError, lambda: check_overrides(["engine=openai", override]), *needles)
    assert "SECRET123" not in msg and "pw@" not in msg


# --- r undefined: no crash, NaN r and a note ------------------------------------------------

def alignment(costs, rts):
    ids = [f"i{k}" for k in range(len(costs))]
    items = pl.DataFrame({"item_id": ids, "human_difficulty": rts, "accuracy": [1.0] * len(ids),
                          "n_trials": [10] * len(ids)})
    traces = pl.DataFrame({"item_id": ids, "total_tokens": costs, "correct": [True] * len(ids),
                           "censored": [False] * len(ids)})
    return stats.alignment("t", stats.item_costs(traces, items, "total_tokens"), traces, "total_tokens", n_boot=50)


def test_all_equal_token_counts_give_nan_r_and_a_note():
    al = alignment([7, 7, 7, 7], [1.0, 2.0, 3.0, 4.0])
    assert math.isnan(al.r) and math.isnan(al.r_ci_low) and "same number of tokens" in al.note


def test_one_item_gives_nan_r_and_a_note():
    al = alignment([7], [1.0])
    assert math.isnan(al.r) and al.n_items == 1 and "1 item(s) with human data and a complete cost: r needs at least 3" in al.note


def test_all_equal_human_rts_give_a_note():
    al = alignment([3, 9, 27], [2.0, 2.0, 2.0])
    assert math.isnan(al.r)
    assert al.note and "human" in al.note


def test_a_one_item_task_runs_end_to_end_and_logs_a_nan_free_run(isolated_env, tiny_conf, tmp_path):
    """A whole job (replayed traces, MLflow on) over a task with one item: no crash, r NaN, the note."""
    import hashlib

    from mlflow import MlflowClient

    from cogdistill.job.run import run_job

    data = write(tmp_path / "mirror" / "one.csv", "item_id,question,answer,human_rt_s\nq1,What is 2+2?,4,1.5\n")
    (tiny_conf / "task").mkdir()
    (tiny_conf / "task" / "one.yaml").write_text(
        "# @package task.one\nname: one\nkind: generic\nsources:\n  items:\n    url: file:///nowhere.csv\n"
        f"    sha256: {hashlib.sha256(data.read_bytes()).hexdigest()}\n    mirror_path: one.csv\n"
        "prompt: '{question}'\nscorer: integer\n")
    traces = write_traces(tmp_path / "traces.jsonl", [counts("q1", 5, correct=True)])
    results = run_job(compose([f"hydra.searchpath=[file://{tiny_conf}]", "model=tiny-random", "task=[one]",
                               f"data.mirror={data.parent}", "engine=replay", f"engine.path={traces}",
                               "analysis.bootstrap=50"]))
    al = results["one"]
    assert math.isnan(al.r) and "1 item(s) with human data and a complete cost: r needs at least 3" in al.note
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    (mlrun,) = client.search_runs([client.get_experiment_by_name("demo").experiment_id])
    assert mlrun.info.status == "FINISHED" and "r/one" not in mlrun.data.metrics  # NaN is left out, not logged
