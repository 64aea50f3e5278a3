"""Inspect AI logs read as LoggedSamples, on logs written by inspect_ai itself (mockllm with scripted
outputs carrying ContentReasoning and ModelUsage), and our tasks exported to Inspect and read back."""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from pathlib import Path

import pytest

pytest.importorskip("inspect_ai")

from cogdistill.traces.logs.base import FAILED, LENGTH, STOP, LogFormatError  # noqa: E402
from cogdistill.traces.logs.inspect_log import read  # noqa: E402

MODEL = "mockllm/model"
GRADER = "mockllm/grader"
IDS = ["q0", "q1", "q2"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    for k, v in {"INSPECT_DISPLAY": "none", "INSPECT_LOG_DIR": str(tmp_path / "inspect-logs"),
                 "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}.items():
        monkeypatch.setenv(k, v)


def scripted(item: str, n: int) -> dict:
    """What the model answers on its n-th call for an item (0 or 1: one call per epoch). q2's reasoning
    is redacted with a summary; q1's first call and q2's second are cut at max_tokens."""
    k = IDS.index(item)
    return {"reasoning": f"reasoning of {item} #{n}", "answer": f"answer of {item} #{n}",
            "input_tokens": 11 + k, "output_tokens": 100 + 10 * k + n, "reasoning_tokens": 50 + 10 * k + n,
            "stop": "max_tokens" if (item, n) in {("q1", 0), ("q2", 1)} else "stop", "redacted": item == "q2"}


def output_for(item: str, n: int, model: str = MODEL):
    from inspect_ai.model import (ChatCompletionChoice, ChatMessageAssistant, ContentReasoning, ContentText,
                                  ModelOutput, ModelUsage)
    s = scripted(item, n)
    reasoning = (ContentReasoning(reasoning="gAAAA-encrypted", summary=s["reasoning"], redacted=True) if s["redacted"]
                 else ContentReasoning(reasoning=s["reasoning"]))
    message = ChatMessageAssistant(content=[reasoning, ContentText(text=s["answer"])], model=model)
    usage = ModelUsage(input_tokens=s["input_tokens"], output_tokens=s["output_tokens"],
                       total_tokens=s["input_tokens"] + s["output_tokens"], reasoning_tokens=s["reasoning_tokens"])
    return ModelOutput(model=model, choices=[ChatCompletionChoice(message=message, stop_reason=s["stop"])],
                       usage=usage)


def scripted_model(name: str = MODEL):
    """A mockllm whose answer depends on the question and how often it was asked (epochs may run in any
    order: the output itself says which call it was)."""
    from inspect_ai.model import get_model
    calls = defaultdict(int)

    def answer(input, tools, tool_choice, config):
        item = input[-1].text.split()[-1]
        n = calls[item]
        calls[item] += 1
        return output_for(item, n, name)
    return get_model(name, custom_outputs=answer)


def run_eval(log_dir: Path, fmt: str, solver=None, scorer=None, **kw) -> Path:
    from inspect_ai import Task, eval as inspect_eval
    from inspect_ai.dataset import Sample
    from inspect_ai.scorer import includes
    from inspect_ai.solver import generate
    task = Task(dataset=[Sample(id=i, input=f"question {i}", target=f"answer of {i}", metadata={"puzzle": i.upper()})
                         for i in IDS], solver=solver or generate(), scorer=scorer or includes())
    logs = inspect_eval(task, model=scripted_model(), epochs=2, log_dir=str(log_dir), log_format=fmt,
                        display="none", **kw)
    return Path(logs[0].location)


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """One real eval per log format, shared by the tests that only read (each eval takes ~2 s)."""
    base = tmp_path_factory.mktemp("inspect")
    os.environ.setdefault("INSPECT_DISPLAY", "none")
    return {fmt: run_eval(base / fmt, fmt) for fmt in ("eval", "json")}


def json_copy(logs, tmp_path) -> tuple[Path, dict]:
    path = tmp_path / "edited.json"
    shutil.copy(logs["json"], path)
    return path, json.loads(path.read_text())


@pytest.mark.parametrize("fmt", ["eval", "json"])
def test_reads_what_the_model_was_scripted_to_log(logs, fmt):
    from cogdistill.traces.logs.detect import detect

    log = read(logs[fmt])
    assert detect(logs[fmt]) == "inspect"  # engine.format=auto
    assert log.format == "inspect" and log.model == MODEL and log.notes == []
    assert sorted((s.log_id, s.sample_idx) for s in log.samples) == [(i, e) for i in IDS for e in (0, 1)]
    calls = defaultdict(set)
    for s in log.samples:
        n = int(s.answer_text.rsplit("#", 1)[1])
        want = scripted(s.log_id, n)
        calls[s.log_id].add(n)
        assert s.model == MODEL and s.prompt == f"question {s.log_id}"
        assert s.reasoning_text == want["reasoning"]  # q2's redacted reasoning: its summary
        assert s.answer_text == want["answer"] and s.raw_text is None
        assert (s.reasoning_tokens, s.output_tokens, s.prompt_tokens) == (
            want["reasoning_tokens"], want["output_tokens"], want["input_tokens"])
        assert s.finish_reason == (LENGTH if want["stop"] == "max_tokens" else STOP) and s.failure is None
        assert s.target == f"answer of {s.log_id}"
        assert s.fields["metadata"] == {"puzzle": s.log_id.upper()} and s.fields["id"] == s.log_id
        assert s.latency_s is not None and s.latency_s >= 0
    assert calls == {i: {0, 1} for i in IDS}


def test_a_truncated_eval_zip_is_one_error_naming_the_file(logs, tmp_path):
    data = logs["eval"].read_bytes()
    cut = tmp_path / "cut.eval"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(LogFormatError, match="cut.eval.*truncated, damaged or edited"):
        read(cut)


def test_a_sample_without_usage_reads_with_no_counts(logs, tmp_path):
    path, doc = json_copy(logs, tmp_path)
    bare = doc["samples"][0]
    bare["output"]["usage"] = None
    bare["model_usage"] = {}
    path.write_text(json.dumps(doc))
    log = read(path)
    by = {(s.log_id, s.sample_idx): s for s in log.samples}
    s = by[(str(bare["id"]), bare["epoch"] - 1)]
    assert (s.reasoning_tokens, s.output_tokens, s.prompt_tokens) == (None, None, None)
    assert s.reasoning_text is not None  # the convert step counts this text instead
    assert sum(x.reasoning_tokens is not None for x in log.samples) == 5


@pytest.mark.parametrize("value, match", [(-5, r"`usage.reasoning_tokens` is -5, not a token count"),
                                          ("lots", r"cannot read its samples.*ValidationError")])
def test_a_bad_count_is_one_error_naming_the_sample(logs, tmp_path, value, match):
    path, doc = json_copy(logs, tmp_path)
    sample = doc["samples"][3]
    sample["model_usage"][MODEL]["reasoning_tokens"] = value
    path.write_text(json.dumps(doc))
    with pytest.raises(LogFormatError, match=match) as e:
        read(path)
    assert str(path) in str(e.value)
    if value == -5:
        assert f"sample '{sample['id']}' epoch {sample['epoch']}" in str(e.value)


def test_a_graders_usage_is_never_the_models_cost(tmp_path):
    """A scorer that calls a grader model: the sample logs both models' usage; ours is the model's."""
    from inspect_ai.model import ModelOutput, ModelUsage, get_model
    from inspect_ai.scorer import Score, accuracy, scorer

    grader = get_model(GRADER, custom_outputs=lambda *a: ModelOutput.from_content(GRADER, "GRADE: C").model_copy(
        update={"usage": ModelUsage(input_tokens=900, output_tokens=7000, total_tokens=7900, reasoning_tokens=6000)}))

    @scorer(metrics=[accuracy()])
    def graded():
        async def score(state, target):
            await grader.generate("grade this")
            return Score(value=1)
        return score

    log = read(run_eval(tmp_path, "eval", scorer=graded()))
    for s in log.samples:
        want = scripted(s.log_id, int(s.answer_text.rsplit("#", 1)[1]))
        assert (s.reasoning_tokens, s.output_tokens) == (want["reasoning_tokens"], want["output_tokens"])
    assert any(GRADER in note for note in log.notes)


def test_a_log_with_only_another_models_usage_gives_no_counts(tmp_path):
    """The solver asks a helper model, not the evaluated one: its usage must not become the model's cost."""
    from inspect_ai.solver import solver

    helper = scripted_model(GRADER)

    @solver
    def ask_helper():
        async def solve(state, generate):
            state.output = await helper.generate(state.input)
            return state
        return solve

    log = read(run_eval(tmp_path, "json", solver=ask_helper()))
    assert len(log.samples) == 6
    assert all(s.reasoning_tokens is None and s.output_tokens is None for s in log.samples)
    assert any(GRADER in note and "6 samples" in note for note in log.notes)


@pytest.mark.parametrize("fmt", ["eval", "json"])
@pytest.mark.parametrize("status", ["cancelled", "success"])
def test_a_log_short_of_its_planned_samples_says_so(logs, tmp_path, fmt, status):
    """Re-written by inspect_ai's own writer with two samples dropped: read, and never shown as whole."""
    from inspect_ai.log import read_eval_log, write_eval_log

    full = read_eval_log(str(logs["json"]))
    short = full.model_copy(update={"status": status, "samples": full.samples[:4]})
    path = tmp_path / f"short.{fmt}"
    write_eval_log(short, str(path), format=fmt)
    log = read(path)
    assert len(log.samples) == 4
    assert log.notes == [] and log.partial.startswith("PARTIAL LOG") and "4 samples of 6 planned" in log.partial


def test_an_errored_sample_is_failed_with_its_message(tmp_path):
    from inspect_ai.solver import generate, solver

    @solver
    def flaky():
        async def solve(state, generate_):
            if state.sample_id == "q1":
                raise RuntimeError("provider said no")
            return await generate()(state, generate_)
        return solve

    log = read(run_eval(tmp_path, "eval", solver=flaky(), fail_on_error=False))
    failed = [s for s in log.samples if s.finish_reason == FAILED]
    assert sorted(s.log_id for s in failed) == ["q1", "q1"]
    assert all("provider said no" in s.failure for s in failed)


def test_a_text_over_the_cap_is_refused_naming_the_sample(logs, tmp_path, monkeypatch):
    import cogdistill.traces.logs.base as logs_base
    monkeypatch.setattr(logs_base, "MAX_TEXT_CHARS", 16)  # prompts are 11 characters, reasonings 18
    with pytest.raises(LogFormatError, match=r"sample 'q\d' epoch \d: its reasoning holds 18 characters, more than 16"):
        read(logs["json"])


def test_not_an_inspect_log(tmp_path):
    other = tmp_path / "log.txt"
    other.write_text("hello")
    with pytest.raises(LogFormatError, match="ends in .eval or .json"):
        read(other)
    with pytest.raises(LogFormatError, match="no such file"):
        read(tmp_path / "missing.eval")


def test_export_run_in_inspect_read_back(tmp_path, monkeypatch):
    """Our task -> Inspect task file -> inspect_ai.eval with mockllm -> our reader: ids, prompts and
    targets survive unchanged."""
    from inspect_ai import eval as inspect_eval
    from inspect_ai.model import ModelOutput, ModelUsage, get_model

    from cogdistill.config.compose import compose_main
    from cogdistill.export.inspect_task import write
    from cogdistill.tasks.load import load_task

    from helpers.data import real_mirror

    mirror = real_mirror()
    if mirror is None:
        pytest.skip("no reference-data mirror")
    job = compose_main(["task=[game-of-24]", "task.game-of-24.max_items=5"])
    task = load_task(job.task["game-of-24"], mirror=mirror, cache=tmp_path / "cache", timeout_s=30)
    files = write(task, tmp_path / "exports")
    assert [f.name for f in files] == ["game-of-24.jsonl", "game_of_24_task.py"]
    from inspect_ai.model import ChatCompletionChoice, ChatMessageAssistant, ContentReasoning, ContentText

    def answer(input, *_):  # the reasoning is as long as the prompt: a cost that differs per item
        n = len(input[-1].text)
        message = ChatMessageAssistant(content=[ContentReasoning(reasoning="r" * n),
                                                ContentText(text="Answer: 4*6*1*1 = 24")], model=MODEL)
        return ModelOutput(model=MODEL, choices=[ChatCompletionChoice(message=message, stop_reason="stop")],
                           usage=ModelUsage(input_tokens=5, output_tokens=n + 9, total_tokens=n + 14,
                                            reasoning_tokens=n))
    model = get_model(MODEL, custom_outputs=answer)
    # as a user runs it, from the folder above the export (inspect 0.3.285 globs task paths: relative only)
    monkeypatch.chdir(tmp_path)
    logs = inspect_eval(f"exports/{files[1].name}", model=model, log_dir=str(tmp_path / "logs"), display="none")
    assert logs[0].status == "success"
    log = read(Path(logs[0].location))
    got = sorted((s.log_id, s.prompt, s.target, s.fields["metadata"]["item_id"]) for s in log.samples)
    ids, targets = task.items["item_id"].to_list(), task.items["target"].to_list()
    assert got == sorted(zip(ids, task.prompts(), targets, ids))

    # ...and into traces: the same as these generations given as cogdistill trace records
    import polars as pl

    from cogdistill.config.schema import ReplayEngineConfig
    from cogdistill.traces.replay import load_traces
    from helpers.traces import CharTokenizer, model as model_config

    imported, warnings = load_traces(Path(logs[0].location), task, model_config(), CharTokenizer(),
                                     settings=ReplayEngineConfig())
    assert "inspect log of mockllm/model, 5 sample(s); 5 matched 5 of the 5 items" in warnings[0]
    records = [{"item_id": i, "reasoning_text": "r" * len(p), "answer_text": "Answer: 4*6*1*1 = 24",
                "reasoning_tokens": len(p), "answer_tokens": 9, "total_tokens": len(p) + 9, "prompt": p,
                "prompt_tokens": 5, "usage_prompt_tokens": 5, "usage_completion_tokens": len(p) + 9,
                "usage_reasoning_tokens": len(p), "cost_source": "provider"} for i, p in zip(ids, task.prompts())]
    (tmp_path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    replayed, _ = load_traces(tmp_path / "records.jsonl", task, model_config(), CharTokenizer())
    assert imported.drop("latency_s").equals(replayed.drop("latency_s"))
    assert imported["correct"].to_list()[0] and imported["latency_s"].is_not_null().all()  # 1 1 4 6: right
    assert pl.Series(imported["reasoning_tokens"]).n_unique() > 1
