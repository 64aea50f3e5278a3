"""lm-evaluation-harness samples files, written by lm-eval itself, read back as logged samples.

One module-scoped run: a real task (game-of-24, 4 items) exported with cogdistill.export.lm_eval_task,
given `repeats: 2` and two filters, evaluated by lm_eval.simple_evaluate with a registered scripted
model, and written by lm-eval's EvaluationTracker exactly as the `lm_eval --log_samples` CLI writes
it. Everything else (hostile files) is that real file damaged one way each.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from cogdistill.registry import EXPORTERS, LOG_FORMATS
from cogdistill.traces.logs import base as logs_base, lm_eval_log
from cogdistill.traces.logs.base import LogFormatError
from helpers.data import SHARED_MIRROR

MODEL = "org/scripted-r1"
N_ITEMS, REPEATS = 4, 2


def scripted(item_id: str, k: int) -> str:
    """The k-th generation for an item: the reasoning names the item, so a wrong id shows."""
    return f"<think>item {item_id}, attempt {k}: 6 * 4 = 24\n\nchecked</think>\nAnswer: {item_id} = 24"


def game_of_24(tmp: Path):
    from cogdistill.config.compose import compose_main
    from cogdistill.tasks.load import load_task

    mirror = Path(os.environ.get("COGDISTILL_DATA_MIRROR") or SHARED_MIRROR)
    if not (mirror / "game-of-24" / "24.csv").is_file():
        pytest.skip("no data mirror with game-of-24/24.csv (set COGDISTILL_DATA_MIRROR)")
    job = compose_main(["task=[game-of-24]", f"task.game-of-24.max_items={N_ITEMS}"])
    return load_task(job.task["game-of-24"], mirror=str(mirror), cache=tmp / "cache", timeout_s=30)


def run_lm_eval(task_dir: Path, out: Path, by_prompt: dict, model_args) -> Path:
    """lm_eval's CLI path (simple_evaluate + EvaluationTracker) on the exported task; the samples file."""
    from lm_eval import simple_evaluate
    from lm_eval.api.model import LM
    from lm_eval.api.registry import MODEL_REGISTRY, register_model
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    if "cogdistill-scripted" not in MODEL_REGISTRY:
        @register_model("cogdistill-scripted")
        class Scripted(LM):
            def __init__(self, by_prompt=None, **kwargs):
                super().__init__()
                self.by_prompt, self.seen = by_prompt or {}, {}

            def generate_until(self, requests):
                out = []
                for req in requests:
                    context, _gen_kwargs = req.args
                    k = self.seen[context] = self.seen.get(context, -1) + 1
                    out.append(scripted(self.by_prompt[context], k))
                return out

            def loglikelihood(self, requests):
                raise NotImplementedError

            def loglikelihood_rolling(self, requests):
                raise NotImplementedError

    lm = MODEL_REGISTRY["cogdistill-scripted"](by_prompt=by_prompt)
    tracker = EvaluationTracker(output_path=str(out))
    results = simple_evaluate(model=lm, model_args=model_args, tasks=[task_dir.name], log_samples=True,
                              task_manager=TaskManager(include_path=str(task_dir.parent), include_defaults=False),
                              evaluation_tracker=tracker, bootstrap_iters=0)
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    for name in results["configs"]:
        tracker.save_results_samples(task_name=name, samples=samples[name])
    (found,) = out.glob("*/samples_*.jsonl")
    return found


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        mp.setenv("HF_HUB_OFFLINE", "1")
        # a fresh datasets cache: no copy of an earlier export's data is picked up
        mp.setenv("HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf-datasets")))
        yield


@pytest.fixture(scope="module")
def run(tmp_path_factory, offline):
    tmp = tmp_path_factory.mktemp("lm-eval")
    task = game_of_24(tmp)
    written = EXPORTERS.load("lm-eval")(task, tmp / "exports")
    spec = tmp / "exports" / "game-of-24" / "game-of-24.yaml"
    config = yaml.safe_load(spec.read_text())
    config["repeats"] = REPEATS
    config["filter_list"] = [
        {"name": "whole", "filter": [{"function": "take_first"}]},
        {"name": "answer", "filter": [{"function": "regex", "regex_pattern": r"Answer: (.*) = 24"},
                                      {"function": "take_first"}]},
    ]
    spec.write_text(yaml.safe_dump(config))
    by_prompt = dict(zip(task.prompts(), task.items["item_id"].to_list()))
    samples = run_lm_eval(spec.parent, tmp / "logs", by_prompt, f"pretrained={MODEL}")
    return task, written, samples


def test_export_writes_an_lm_eval_task_with_our_ids_prompts_and_targets(run):
    task, written, _ = run
    spec, data = written
    assert (spec.name, data.name) == ("game-of-24.yaml", "game-of-24.jsonl")
    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]
    assert [r["item_id"] for r in rows] == task.items["item_id"].to_list()
    assert [r["prompt"] for r in rows] == task.prompts()
    assert [r["target"] for r in rows] == task.items["target"].to_list()


def test_round_trip_ids_prompts_targets_and_texts(run):
    from cogdistill.traces.logs.detect import detect

    task, _, samples = run
    assert detect(samples) == "lm-eval"  # engine.format=auto
    log = LOG_FORMATS.load("lm-eval")(samples)
    ids = task.items["item_id"].to_list()
    prompts = dict(zip(ids, task.prompts()))
    targets = dict(zip(ids, task.items["target"].to_list()))
    assert log.format == "lm-eval" and log.model == MODEL and log.no_reasoning is None
    # one generation per item and repeat, whatever the number of filters
    assert sorted((s.log_id, s.sample_idx) for s in log.samples) == [(i, k) for i in ids for k in range(REPEATS)]
    for s in log.samples:
        assert s.raw_text == scripted(s.log_id, s.sample_idx)
        assert s.prompt == prompts[s.log_id] and s.target == targets[s.log_id]
        assert s.reasoning_text is None and s.answer_text is None
        assert s.reasoning_tokens is None and s.output_tokens is None and s.prompt_tokens is None
        assert s.model == MODEL
        assert s.fields["doc"]["item_id"] == s.log_id and ids[s.fields["doc_id"]] == s.log_id
    # each doc was logged once per filter; the note says how many rows were dropped
    assert len(samples.read_text().splitlines()) == 2 * N_ITEMS
    assert any(f"{N_ITEMS} rows were filter duplicates" in n and "'whole'" in n for n in log.notes)


def test_doc_without_item_id_gives_the_doc_id(run, tmp_path):
    _, _, samples = run
    copy = copy_run(samples, tmp_path)
    rows = [json.loads(line) for line in copy.read_text().splitlines()]
    for r in rows:
        del r["doc"]["item_id"]
    copy.write_text("".join(json.dumps(r) + "\n" for r in rows))
    log = lm_eval_log.read(copy)
    assert sorted({s.log_id for s in log.samples}) == [str(i) for i in range(N_ITEMS)]
    assert any("engine.id_field=doc." in n for n in log.notes)


def copy_run(samples: Path, tmp: Path, results: bool = True) -> Path:
    dest = tmp / "run"
    dest.mkdir()
    shutil.copy(samples, dest / samples.name)
    if results:
        (found,) = samples.parent.glob("results_*.json")
        shutil.copy(found, dest / found.name)
    return dest / samples.name


def test_think_end_token_says_the_log_cannot_give_a_reasoning_count(run, tmp_path):
    task, (spec, _), _ = run
    by_prompt = dict(zip(task.prompts(), task.items["item_id"].to_list()))
    # lm-eval records the model args as given, string (CLI) or dict (Python API)
    samples = run_lm_eval(spec.parent, tmp_path / "logs", by_prompt,
                          {"pretrained": MODEL, "think_end_token": "</think>"})
    log = lm_eval_log.read(samples)
    assert log.model == MODEL
    assert log.no_reasoning and "think_end_token='</think>'" in log.no_reasoning
    assert "without think_end_token" in log.no_reasoning


def test_string_model_args_with_think_end_token(run, tmp_path):
    _, _, samples = run
    copy = copy_run(samples, tmp_path)
    (results,) = copy.parent.glob("results_*.json")
    data = json.loads(results.read_text())
    data["config"]["model_args"] += ",think_end_token=</think>,enable_thinking=True"
    results.write_text(json.dumps(data))
    log = lm_eval_log.read(copy)
    assert log.model == MODEL and "think_end_token='</think>'" in log.no_reasoning


def test_no_results_file_reads_with_a_note(run, tmp_path):
    _, _, samples = run
    log = lm_eval_log.read(copy_run(samples, tmp_path, results=False))
    assert log.model is None and log.no_reasoning is None
    assert any("results_" in n and "think_end_token" in n for n in log.notes)
    assert len(log.samples) == N_ITEMS * REPEATS


def damage(samples: Path, tmp: Path, edit) -> Path:
    copy = copy_run(samples, tmp)
    copy.write_bytes(edit(copy.read_bytes()))
    return copy


def test_truncated_last_line(run, tmp_path):
    _, _, samples = run
    copy = damage(samples, tmp_path, lambda b: b[:-40])
    with pytest.raises(LogFormatError, match=f"line {2 * N_ITEMS} is not valid JSON .*the file ends part-way through it") as e:
        lm_eval_log.read(copy)
    assert str(copy) in str(e.value)


def test_non_json_line(run, tmp_path):
    _, _, samples = run
    copy = damage(samples, tmp_path, lambda b: b.replace(b"\n", b"\n{not json\n", 1))
    with pytest.raises(LogFormatError, match="line 2 is not valid JSON"):
        lm_eval_log.read(copy)


@pytest.mark.parametrize("value", ['"1"', "-1", "true", "1.5"])
def test_doc_id_that_is_no_row_index(run, tmp_path, value):
    _, _, samples = run
    copy = damage(samples, tmp_path, lambda b: b.replace(b'"doc_id": 1,', f'"doc_id": {value},'.encode(), 1))
    with pytest.raises(LogFormatError, match="line 2: `doc_id` is .*not a row index"):
        lm_eval_log.read(copy)


def test_line_over_the_cap_is_refused_by_number(run, tmp_path, monkeypatch):
    _, _, samples = run
    copy = copy_run(samples, tmp_path)
    lines = copy.read_bytes().splitlines(keepends=True)
    monkeypatch.setattr(logs_base, "MAX_LINE_BYTES", max(len(line) for line in lines) + 10)
    big = json.loads(lines[2])
    big["resps"][0][0] += "x" * 200
    lines[2] = (json.dumps(big) + "\n").encode()
    copy.write_bytes(b"".join(lines))
    with pytest.raises(LogFormatError, match="line 3 is longer than"):
        lm_eval_log.read(copy)


def test_same_run_appended_twice(run, tmp_path):
    _, _, samples = run
    copy = damage(samples, tmp_path, lambda b: b + b)
    with pytest.raises(LogFormatError, match="appears twice under filter 'whole'"):
        lm_eval_log.read(copy)


def test_filters_that_disagree_on_the_generations(run, tmp_path):
    _, _, samples = run
    copy = copy_run(samples, tmp_path)
    lines = copy.read_text().splitlines()
    row = json.loads(lines[-1])
    row["resps"][0][0] = "edited"
    lines[-1] = json.dumps(row)
    copy.write_text("\n".join(lines) + "\n")
    with pytest.raises(LogFormatError, match="differ from those under 'whole'"):
        lm_eval_log.read(copy)


def test_loglikelihood_rows_are_refused(run, tmp_path):
    _, _, samples = run
    copy = copy_run(samples, tmp_path)
    rows = [json.loads(line) for line in copy.read_text().splitlines()]
    rows[0]["resps"] = [[["-1.25", "False"]], [["-0.5", "True"]]]
    copy.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(LogFormatError, match="line 1 .*only generate_until tasks"):
        lm_eval_log.read(copy)


def test_empty_file(tmp_path):
    empty = tmp_path / "samples_x_2026-01-01T00-00-00.000000.jsonl"
    empty.write_text("")
    with pytest.raises(LogFormatError, match="no samples in it"):
        lm_eval_log.read(empty)


def test_export_refuses_a_name_lm_eval_cannot_take(run, tmp_path):
    from cogdistill.export.lm_eval_task import ExportError, write

    task, _, _ = run
    with pytest.raises(ExportError, match="lm-eval task names"):
        write(dataclasses.replace(task, name="game of 24"), tmp_path)
    assert not any(tmp_path.iterdir())


def test_an_lm_eval_log_gives_the_traces_of_the_same_generations_as_trace_records(run, tmp_path):
    """engine=replay on the samples file: raw generations split by the model's protocol and counted with
    its tokenizer (cost_source counted), as the same texts given as trace records are."""
    from cogdistill.traces.replay import load_traces
    from helpers.traces import CharTokenizer, model

    task, _, samples = run
    imported, warnings = load_traces(samples, task, model(), CharTokenizer())
    assert f"lm-eval log of {MODEL}, {N_ITEMS * REPEATS} sample(s); {N_ITEMS * REPEATS} matched {N_ITEMS} of the " \
        f"{N_ITEMS} items" in warnings[0] and "counted (8)" in warnings[0]
    records = [{"item_id": i, "sample_idx": k, "text": scripted(i, k), "prompt": p, "cost_source": "counted"}
               for i, p in zip(task.items["item_id"], task.prompts()) for k in range(REPEATS)]
    (tmp_path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    replayed, _ = load_traces(tmp_path / "records.jsonl", task, model(), CharTokenizer())
    assert imported.equals(replayed)
    first = imported.row(0, named=True)
    assert first["reasoning_text"].startswith("item ") and first["answer_tokens"] > 0 and not first["censored"]


def test_with_no_finish_reason_logged_an_unclosed_reasoning_block_is_censored(task, tmp_path):
    """lm-eval keeps no finish reason: a generation whose reasoning never closed was cut (censored, as
    the trace of a live generation cut there is); a closed one is complete; a model without a reasoning
    block cannot tell, and its trace counts as stopped."""
    from cogdistill.traces.replay import load_traces
    from helpers.traces import CharTokenizer, model

    rows = [{"doc_id": k, "doc": {"item_id": item}, "target": "", "arguments": {"gen_args_0": {"arg_0": "q"}},
             "resps": [[text]], "filtered_resps": [text], "filter": "none"}
            for k, (item, text) in enumerate([("2x3", "<think>2 x 3, so"), ("3x4", "<think>3x4</think>The answer is 12.")])]
    path = tmp_path / "samples_multiplication_2026-01-01T00-00-00.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    traces, _ = load_traces(path, task, model(), CharTokenizer())
    cut, done = traces.row(0, named=True), traces.row(1, named=True)
    assert (cut["finish_reason"], cut["censored"], cut["answer_tokens"]) == ("length", True, 0)
    assert (done["finish_reason"], done["censored"], done["correct"]) == ("stop", False, True)
    plain, _ = load_traces(path, task, model(think=False), CharTokenizer())
    assert plain["finish_reason"].to_list() == ["stop", "stop"] and not plain["censored"].any()

