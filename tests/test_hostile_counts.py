"""Silent wrong numbers and poisoned caches (issue 23), each seen through a real job process: a fake
OpenAI-compatible server on 127.0.0.1 or a replayed file, the job's exit code and message, its MLflow
run's status, and the generation cache after it (a re-run against a good server must succeed)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from cogdistill.engines.base import EngineError
from helpers.config import job_overrides
from helpers.openai_server import FakeServer, chat_reply, ok, run
from helpers.procs import cogdistill, entries, output
from helpers.traces import IDS, CharTokenizer, counts, model, write


def server_job(conf: Path, mult_mirror, server: FakeServer, *extra: str) -> List[str]:
    mirror, sha = mult_mirror
    return job_overrides(conf, mirror, sha) + ["engine=openai", f"engine.base_url={server.base_url}",
                                               "engine.api_key_env=null", "engine.max_retries=0", *extra]


def set_model(conf: Path, **fields) -> None:
    """Rewrite fields of the tiny model's config (tests/conftest.py: tiny_conf)."""
    path = conf / "model" / "tiny-random.yaml"
    lines = [line for line in path.read_text().splitlines() if line.split(":")[0] not in fields]
    path.write_text("\n".join(lines + [f"{k}: {json.dumps(v)}" for k, v in fields.items()]) + "\n")


def job_runs():
    """(status, metrics) of every job run in the isolated store."""
    from mlflow import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("demo")
    return [(r.info.status, r.data.metrics) for r in client.search_runs([exp.experiment_id])] if exp else []


def cached_generations(cache: Path) -> List[dict]:
    return [json.loads(p.read_text()) for p in (cache / "generations").rglob("*.json")] \
        if (cache / "generations").is_dir() else []


# --------------------------------------------------------------------------- 4. a protocol its tokenizer cannot carry


@pytest.mark.slow  # two or more job processes
def test_harmony_on_weights_without_harmony_tokens_is_refused_before_any_request(isolated_env, tiny_conf,
                                                                                 mult_mirror, tiny_model_dir):
    """Seen: `protocol: harmony` on non-gpt-oss weights, the server's token ids parsed as harmony ids:
    rc 0, every count 0, accuracy 0.00 though every answer was right."""
    from transformers import PreTrainedTokenizerFast

    ids = PreTrainedTokenizerFast.from_pretrained(tiny_model_dir).encode("Answer: 6", add_special_tokens=False)
    server = FakeServer(lambda body, _: ok({"choices": [{"index": 0, "text": "Answer: 6", "token_ids": ids,
                                                         "finish_reason": "stop"}]}))
    try:
        set_model(tiny_conf, protocol="harmony")
        args = server_job(tiny_conf, mult_mirror, server, "engine.api=completions", "engine.request_token_ids=true")
        refused = cogdistill(args, isolated_env)
        out = output(refused)
        assert refused.returncode == 2, out
        assert "protocol: harmony" in out and "<|channel|>" in out and "Traceback" not in out
        assert server.seen == [] and entries(isolated_env / "cache") == 0  # checked before any request
        assert "RUNNING" not in {status for status, _ in job_runs()}

        set_model(tiny_conf, protocol="plain")  # the protocol these weights speak: the same answers now count
        fine = cogdistill(args, isolated_env)
        assert fine.returncode == 0, output(fine)
        ((status, metrics),) = [r for r in job_runs() if r[0] == "FINISHED"]
        assert metrics["acc/multiplication"] == pytest.approx(1 / 6)  # "Answer: 6" is right for 2 x 3 only
        assert metrics["tokens_mean/multiplication"] == len(ids)
    finally:
        server.close()


@pytest.mark.slow  # a job process: 14 s on two shared cores
def test_a_think_tag_that_decoding_drops_is_refused_before_any_request(isolated_env, tiny_conf, mult_mirror):
    """The tiny tokenizer's <|end|> is a special token: decoded text never holds it, so a split on it
    would count every answer as reasoning."""
    server = FakeServer(lambda body, _: ok(chat_reply(["let me see<|end|>Answer: 6"])))
    try:
        set_model(tiny_conf, protocol="think_tags", think_start=None, think_end="<|end|>")
        refused = cogdistill(server_job(tiny_conf, mult_mirror, server), isolated_env)
        out = output(refused)
        assert refused.returncode == 2, out
        assert "think_end: <|end|>" in out and "special token" in out and "Traceback" not in out
        assert server.seen == [] and entries(isolated_env / "cache") == 0
    finally:
        server.close()


# --------------------------------------------------------------------------- 5. replayed texts past every bound


def replay_job(conf: Path, mult_mirror, path: Path, *extra: str) -> List[str]:
    mirror, sha = mult_mirror
    return job_overrides(conf, mirror, sha) + ["engine=replay", f"engine.path={path}", *extra]


def huge_record(path: Path, chars: int, item: str = "2x3") -> Path:
    """One JSON line whose reasoning_text holds `chars` characters, written in 1 MiB pieces."""
    head = json.dumps({"item_id": item, "answer_text": "The answer is 6."})[:-1] + ', "reasoning_text": "'
    with open(path, "w") as fh:
        fh.write(head)
        for start in range(0, chars, 2 ** 20):
            fh.write("a " * (min(2 ** 20, chars - start) // 2))
        fh.write('"}\n')
        for other in IDS[1:]:
            fh.write(json.dumps({"item_id": other, "reasoning_text": "x", "answer_text": "no idea"}) + "\n")
    return path


@pytest.mark.slow
def test_replayed_texts_of_20_and_200_mb_are_refused_and_the_run_ends_failed(isolated_env, tiny_conf, mult_mirror):
    """Seen: 20 MB counted as 4,000,007 tokens of uncensored cost; 200 MB aborted the process (rc 134)
    with its run left RUNNING."""
    for size_mb, needle in ((20, "`reasoning_text` holds 20,971,520 characters"), (200, "line 1 is longer than 64 MiB")):
        path = huge_record(isolated_env / f"huge-{size_mb}.jsonl", size_mb * 2 ** 20)
        assert path.stat().st_size > size_mb * 2 ** 20
        proc = cogdistill(replay_job(tiny_conf, mult_mirror, path), isolated_env, timeout=120)
        out = output(proc)
        assert proc.returncode == 2, out[-2000:]
        assert needle in out and str(path) in " ".join(out.split()) and "Traceback" not in out
        path.unlink()
    assert {status for status, _ in job_runs()} == {"FAILED"}


def test_a_text_counted_past_the_count_bound_is_refused(task, tmp_path):
    from cogdistill.traces.replay import ReplayError, load_traces

    answer = "The answer is 6."
    under = write(tmp_path / "ok.jsonl", [{"item_id": "2x3", "reasoning_text": "a" * (1_000_000 - len(answer)),
                                           "answer_text": answer}])
    df, _ = load_traces(under, task, model(think=False), CharTokenizer())
    assert df["total_tokens"].to_list() == [1_000_000]  # the bound itself is a count
    over = write(tmp_path / "over.jsonl", [{"item_id": "2x3", "reasoning_text": "a" * 1_000_001,
                                            "answer_text": "The answer is 6."}])
    with pytest.raises(ReplayError, match=r"line 1: its texts count 1,000,001 reasoning_tokens, more than 1,000,000"):
        load_traces(over, task, model(think=False), CharTokenizer())


def test_a_parquet_text_past_the_bound_is_refused_by_row(task, tmp_path):
    import polars as pl

    from cogdistill.traces.replay import MAX_TEXT_CHARS, ReplayError, load_traces

    rows = [counts(i, 5, correct=True, answer_text="6") for i in IDS]
    rows[2]["answer_text"] = "6" * (MAX_TEXT_CHARS + 1)
    pl.DataFrame(rows).write_parquet(tmp_path / "t.parquet")
    with pytest.raises(ReplayError, match=r"row 3: `answer_text` holds 8,388,609 characters, more than 8,388,608"):
        load_traces(tmp_path / "t.parquet", task, model(), None)


# --------------------------------------------------------------------------- 6. replayed traces past their budget


@pytest.mark.slow  # two or more job processes
def test_replayed_traces_over_their_budget_are_refused(isolated_env, tiny_conf, mult_mirror):
    """Seen: effort=budget=4 with engine=replay labelled traces of 10-69 reasoning tokens as budget 4."""
    set_model(tiny_conf, protocol="think_tags", think_start="<think>", think_end="</think>")
    label = "tiny-random:budget-4"  # the model's name under an effort level (run_format.model_label)
    over = write(isolated_env / "over.jsonl", [counts(i, 10 + 11 * k, 2, correct=True, model=label)
                                               for k, i in enumerate(IDS)])
    refused = cogdistill(replay_job(tiny_conf, mult_mirror, over, "effort=budget=4"), isolated_env)
    out = " ".join(output(refused).split())
    assert refused.returncode == 2, out[-2000:]
    assert "6 of 6 record(s) reason for more tokens than effort=budget=4 allows (line 1: 10, line 2: 21" in out
    assert "Traceback" not in out

    within = write(isolated_env / "within.jsonl", [counts(i, k % 5, 2, correct=True, model=label)
                                                   for k, i in enumerate(IDS)])  # 0..4 reasoning tokens
    fine = cogdistill(replay_job(tiny_conf, mult_mirror, within, "effort=budget=4"), isolated_env)
    assert fine.returncode == 0, output(fine)[-2000:]
    # the same over-budget records replay as they were generated: without a budget
    plain = write(isolated_env / "plain.jsonl", [counts(i, 10 + 11 * k, 2, correct=True) for k, i in enumerate(IDS)])
    assert cogdistill(replay_job(tiny_conf, mult_mirror, plain), isolated_env).returncode == 0


# --------------------------------------------------------------------------- 7. unscorable, uncountable generations


def puzzles(tmp_path: Path):
    """A Game of 24 mirror of three puzzles: (mirror, sha256)."""
    text = ("Rank,Puzzles,AMT (s),Solved rate,1-sigma Mean (s),1-sigma STD (s)\n"
            "1,1 1 4 6,4.4,99.20%,4.67,1.48\n2,3 3 8 8,50.0,40.00%,40,10\n3,1 2 3 4,6.0,95.50%,6,1\n")
    (tmp_path / "m24" / "game-of-24").mkdir(parents=True)
    (tmp_path / "m24" / "game-of-24" / "24.csv").write_text(text)
    return tmp_path / "m24", hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.slow  # two or more job processes
def test_nested_parentheses_are_scored_not_a_recursion_error(isolated_env, tiny_conf):
    """Seen: `Answer: (((...600 deep...)))` ended in RecursionError, rc 1, and was cached, so every
    re-run failed again."""
    deep = "(" * 600 + "1*1*4*6" + ")" * 600
    hostile = [True]

    def script(body, _):
        if not hostile[0]:
            return ok(chat_reply(["Answer: 8/(3-8/3) = 24"]))
        nested = "1 1 4 6" in body["messages"][-1]["content"]
        return ok(chat_reply([f"Answer: {deep} = 24" if nested else "Answer: 1+1+1+1 = 24"]))

    server = FakeServer(script)
    mirror, sha = puzzles(isolated_env)
    try:
        args = [f"hydra.searchpath=[file://{tiny_conf}]", "model=tiny-random", "task=[game-of-24]",
                f"data.mirror={mirror}", f"task.game-of-24.sources.puzzles.sha256={sha}", "analysis.bootstrap=50",
                "model.max_tokens=2000", "engine=openai", f"engine.base_url={server.base_url}",
                "engine.api_key_env=null", "engine.max_retries=0"]
        first = cogdistill(args, isolated_env)
        assert first.returncode == 0, output(first)
        ((status, metrics),) = job_runs()
        assert status == "FINISHED" and metrics["acc/game-of-24"] == pytest.approx(1 / 3)  # the deep one is right
        hostile[0], asked = False, len(server.seen)
        again = cogdistill(args, isolated_env)  # the same job against a good server: its cached answers score
        assert again.returncode == 0, output(again)
        assert len(server.seen) == asked  # every generation came from the cache
    finally:
        server.close()


@pytest.mark.slow  # two or more job processes
def test_a_usage_count_of_10_to_the_30_is_ignored_not_cached(isolated_env, tiny_conf, mult_mirror):
    """Seen: usage.completion_tokens = 10**30 gave a polars ComputeError, rc 1, and was cached."""
    completion = [10 ** 30]
    server = FakeServer(lambda body, _: ok(chat_reply(["Answer: 6"], usage={"prompt_tokens": 7,
                                                                           "completion_tokens": completion[0]})))
    try:
        args = server_job(tiny_conf, mult_mirror, server)
        first = cogdistill(args, isolated_env)
        out = output(first)
        assert first.returncode == 0, out
        assert "not a count" in out and "Traceback" not in out
        stored = cached_generations(isolated_env / "cache")
        assert len(stored) == 6 and all(g["usage"] is None for g in stored)  # the server's broken usage is not kept
        completion[0], asked = 4, len(server.seen)
        again = cogdistill(args, isolated_env)
        assert again.returncode == 0, output(again)
        assert len(server.seen) == asked
    finally:
        server.close()


@pytest.mark.slow  # two or more job processes
def test_generations_that_cannot_be_counted_become_failed_traces_and_leave_the_cache(isolated_env, tiny_conf,
                                                                                    mult_mirror):
    """A server_count model whose server sends no reasoning count for two prompts: those two traces
    fail with their reason (the job goes on), their generations are not cached, and a re-run asks the
    server for those two only. When no generation of a task can be counted, the job stops and caches nothing."""
    import polars as pl
    from mlflow import MlflowClient

    counted = {"prompt_tokens": 7, "completion_tokens": 9, "completion_tokens_details": {"reasoning_tokens": 5}}
    missing = {"2 x 3", "7 x 8"}
    broken = [True]

    def script(body, _):
        prompt = body["messages"][-1]["content"]
        no_count = broken[0] and any(m in prompt for m in missing)
        return ok(chat_reply(["Answer: 6"], usage={"prompt_tokens": 7, "completion_tokens": 4} if no_count else counted))

    server = FakeServer(script)
    try:
        set_model(tiny_conf, protocol="server_count")
        args = server_job(tiny_conf, mult_mirror, server)
        first = cogdistill(args, isolated_env)
        out = " ".join(output(first).split())
        assert first.returncode == 0, out
        assert "2 of 6 generation(s) could not be scored or counted" in out and "reasoning_tokens" in out
        assert entries(isolated_env / "cache") == 4
        client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
        (job,) = client.search_runs([client.get_experiment_by_name("demo").experiment_id])
        traces = pl.read_parquet(client.download_artifacts(job.info.run_id, "traces/multiplication.parquet",
                                                           str(isolated_env / "dl")))
        failed = traces.filter(pl.col("finish_reason") == "failed")
        assert sorted(failed["item_id"]) == ["2x3", "7x8"] and failed["censored"].all()
        assert failed["reasoning_tokens"].null_count() == 2 and not failed["correct"].any()
        assert all("no usage.completion_tokens_details.reasoning_tokens" in f for f in failed["failure"])
        assert traces.filter(pl.col("finish_reason") != "failed")["failure"].null_count() == 4

        broken[0] = False
        asked = len(server.seen)
        again = cogdistill(args, isolated_env)
        assert again.returncode == 0, output(again)
        assert len(server.seen) - asked == 2 and entries(isolated_env / "cache") == 6
    finally:
        server.close()


@pytest.mark.slow  # two or more job processes
def test_a_task_whose_every_generation_fails_stops_the_job_and_caches_nothing(isolated_env, tiny_conf, mult_mirror):
    usage = [{"completion_tokens": 4}]  # no reasoning count, which protocol server_count needs
    server = FakeServer(lambda body, _: ok(chat_reply(["Answer: 6"], usage=usage[0])))
    try:
        set_model(tiny_conf, protocol="server_count")
        args = server_job(tiny_conf, mult_mirror, server)
        failed = cogdistill(args, isolated_env)
        out = " ".join(output(failed).split())
        assert failed.returncode == 2, out
        assert "none of its 6 generation(s) could be scored or counted" in out and "Traceback" not in out
        assert entries(isolated_env / "cache") == 0 and [s for s, _ in job_runs()] == ["FAILED"]
        usage[0] = {"completion_tokens": 9, "completion_tokens_details": {"reasoning_tokens": 5}}
        again = cogdistill(args, isolated_env)
        assert again.returncode == 0, output(again)
        assert len(server.seen) == 12  # asked again for every prompt
    finally:
        server.close()


# --------------------------------------------------------------------------- smaller ones


@pytest.mark.parametrize("n, choices, problem", [
    (1, [], "`choices` is empty: the server generated nothing"),
    (1, ["6", "6"], "2 choices for n=1"),
    (2, ["6"], "1 choices for n=2 (does the server support sampling.n > 1?)"),
])
def test_a_wrong_number_of_choices_is_named_for_its_case(tiny, serve, n, choices, problem):
    from cogdistill.config.schema import SamplingConfig
    from helpers.models import requests_for
    from helpers.openai_server import engine_for

    server = serve(lambda body, _: ok(chat_reply(choices)))
    with pytest.raises(EngineError) as err:
        run(engine_for(tiny, server, max_retries=0), requests_for(tiny[2])[:1],
            SamplingConfig(n=n, temperature=0.7 if n > 1 else 0.0))
    assert problem in str(err.value)
    if n == 1:
        assert "sampling.n > 1" not in str(err.value)


def test_a_sweep_with_an_effort_a_protocol_cannot_apply_starts_no_job(isolated_env, tiny_conf, mult_mirror):
    mirror, sha = mult_mirror
    args = ["-m", "effort=default,low", "analysis.report=false", "engine=replay", "engine.path=unused.jsonl",
            *job_overrides(tiny_conf, mirror, sha)]
    proc = subprocess.run([sys.executable, "-m", "cogdistill", *args], cwd=isolated_env, capture_output=True,
                          text=True, timeout=300)
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 2, out[-2000:]
    assert "1 of 2 job(s) of this sweep cannot run, so none was started" in out
    assert "#1 (effort=low)" in out and "effort=low needs a reasoning protocol" in out and "Traceback" not in out
    assert job_runs() == []


def test_a_failed_trace_replays_as_failed(task, tmp_path):
    """An earlier run's failed trace (no counts, its reason) is not re-counted into a cost on replay."""
    from cogdistill.traces.replay import load_traces

    rows = [{"item_id": "2x3", "answer_text": "Answer: 6", "finish_reason": "failed", "failure": "RecursionError: deep"},
            counts("3x4", 5, 2, answer_text="The answer is 12.")]
    df, _ = load_traces(write(tmp_path / "t.jsonl", rows), task, model(), CharTokenizer())
    failed, fine = df.row(0, named=True), df.row(1, named=True)
    assert failed["finish_reason"] == "failed" and failed["censored"] and failed["correct"] is False
    assert failed["reasoning_tokens"] is None and failed["failure"] == "RecursionError: deep"
    assert fine["failure"] is None and fine["correct"] and fine["reasoning_tokens"] == 5
