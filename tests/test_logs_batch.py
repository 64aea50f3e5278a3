"""Batch outputs (OpenAI Batch API, vLLM run_batch) as traces, and the one matching and cost rule
every harness log goes through (cogdistill.traces.logs.convert)."""

import json

import pytest

from cogdistill.config.schema import ReplayEngineConfig
from cogdistill.traces.logs.base import LogFormatError
from cogdistill.traces.replay import ReplayError, load_traces
from helpers.traces import IDS, CharTokenizer, counts, model, write

TOK = CharTokenizer()
ANSWERS = {"2x3": "6", "3x4": "12", "4x6": "24", "6x7": "42", "7x8": "56", "8x9": "72"}


def chat_line(custom_id, *, reasoning="let me think", answer=None, reasoning_tokens=None, completion_tokens=None,
              finish="stop", field="reasoning", n=1, model_name="org/r1"):
    """One output line, built and serialised by vLLM's own run_batch types and checked against the openai
    SDK's ChatCompletion (the body an OpenAI batch line carries too)."""
    from openai.types.chat import ChatCompletion
    from vllm.entrypoints.launchers.run_batch import BatchRequestOutput, BatchResponseData

    answer = answer if answer is not None else f"The answer is {ANSWERS.get(custom_id, '0')}."
    usage = {"prompt_tokens": 9, "total_tokens": 9 + (completion_tokens or 0),
             "completion_tokens": completion_tokens or 0}
    if reasoning_tokens is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    body = {"id": f"chatcmpl-{custom_id}", "object": "chat.completion", "created": 1, "model": model_name,
            "choices": [{"index": k, "finish_reason": finish, "logprobs": None,
                         "message": {"role": "assistant", "content": answer, field: reasoning}} for k in range(n)],
            "usage": usage}
    ChatCompletion.model_validate(body)  # what the OpenAI SDK accepts
    line = BatchRequestOutput(id=f"req-{custom_id}", custom_id=custom_id, error=None,
                              response=BatchResponseData(status_code=200, request_id=f"r-{custom_id}", body=None))
    data = json.loads(line.model_dump_json())
    data["response"]["body"] = body
    return data


def error_line(custom_id):
    return {"id": f"req-{custom_id}", "custom_id": custom_id, "response": None,
            "error": {"code": "rate_limit_exceeded", "message": "slow down"}}


def response_line(custom_id, *, reasoning_tokens=40, output_tokens=50, status="completed"):
    from openai.types.responses import Response

    body = {"id": f"resp-{custom_id}", "object": "response", "created_at": 1, "model": "o3", "status": status,
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "output": [{"type": "reasoning", "id": "rs1", "summary": [{"type": "summary_text", "text": "thinking"}]}]
            + ([] if status == "incomplete" else [  # cut while reasoning: no message
                       {"type": "message", "id": "m1", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "annotations": [],
                                     "text": f"The answer is {ANSWERS[custom_id]}."}]}]),
            "usage": {"input_tokens": 9, "output_tokens": output_tokens, "total_tokens": 9 + output_tokens,
                      "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": reasoning_tokens}}}
    Response.model_validate(body)
    return {"id": f"req-{custom_id}", "custom_id": custom_id, "error": None,
            "response": {"status_code": 200, "request_id": "r", "body": body}}


def load(path, task, tok=TOK, **settings):
    return load_traces(path, task, model(), tok, settings=ReplayEngineConfig(**settings))


def test_the_cost_rule_provider_then_counted_then_total_minus_answer(task, tmp_path):
    lines = [chat_line("2x3", reasoning_tokens=30, completion_tokens=45),  # provider: 30, answer 45 - 30
             chat_line("3x4", reasoning="abcdefgh", completion_tokens=999, field="reasoning_content"),  # counted: 8
             chat_line("4x6", reasoning=None, completion_tokens=40)]  # no reasoning text: 40 - len(answer)
    df, warnings = load(write(tmp_path / "out.jsonl", lines), task)
    rows = {r["item_id"]: r for r in df.iter_rows(named=True)}
    assert (rows["2x3"]["reasoning_tokens"], rows["2x3"]["answer_tokens"], rows["2x3"]["cost_source"]) == (30, 15, "provider")
    assert (rows["3x4"]["reasoning_tokens"], rows["3x4"]["cost_source"]) == (8, "counted")
    assert rows["3x4"]["answer_tokens"] == len("The answer is 12.") and rows["3x4"]["usage_completion_tokens"] == 999
    assert rows["4x6"]["reasoning_tokens"] == 40 - len("The answer is 24.")
    assert rows["4x6"]["cost_source"] == "total_minus_answer"
    assert all(r["correct"] for r in rows.values()) and df["model"].unique().to_list() == ["m1"]
    assert "3 sample(s); 3 matched 3 of the 6 items" in warnings[0]
    assert "provider (1)" in warnings[0] and "total_minus_answer (1)" in warnings[0]


def test_the_import_equals_the_same_traces_in_the_replay_format(task, tmp_path):
    lines = [chat_line(i, reasoning="x" * (5 + 3 * k), reasoning_tokens=5 + 3 * k, completion_tokens=20 + 3 * k)
             for k, i in enumerate(IDS)]
    imported, _ = load(write(tmp_path / "out.jsonl", lines), task)
    records = [counts(i, 5 + 3 * k, 15, answer_text=f"The answer is {ANSWERS[i]}.", reasoning_text="x" * (5 + 3 * k),
                      cost_source="provider", model="m1", prompt_tokens=9, usage_prompt_tokens=9,
                      usage_completion_tokens=20 + 3 * k, usage_reasoning_tokens=5 + 3 * k)
               for k, i in enumerate(IDS)]
    replayed, _ = load(write(tmp_path / "records.jsonl", records), task)
    assert imported.equals(replayed)


def test_errors_are_failed_traces_and_length_is_censored(task, tmp_path):
    lines = [chat_line("2x3", reasoning_tokens=30, completion_tokens=30, answer="", finish="length"),
             error_line("3x4"), chat_line("4x6", reasoning_tokens=3, completion_tokens=20)]
    df, _ = load(write(tmp_path / "out.jsonl", lines), task)
    rows = {r["item_id"]: r for r in df.iter_rows(named=True)}
    assert rows["2x3"]["censored"] and rows["2x3"]["finish_reason"] == "length"
    failed = rows["3x4"]
    assert failed["finish_reason"] == "failed" and failed["reasoning_tokens"] is None and failed["censored"]
    assert "rate_limit_exceeded" in failed["failure"]
    assert not rows["4x6"]["censored"]


def test_responses_api_bodies_and_n_greater_than_one(task, tmp_path):
    lines = [response_line("2x3"), response_line("3x4", status="incomplete", output_tokens=40),
             chat_line("4x6", reasoning="abc", n=2, reasoning_tokens=99, completion_tokens=999, model_name="o3")]
    df, warnings = load(write(tmp_path / "out.jsonl", lines), task, log_model=None)
    rows = {(r["item_id"], r["sample_idx"]): r for r in df.iter_rows(named=True)}
    assert (rows["2x3", 0]["reasoning_tokens"], rows["2x3", 0]["answer_tokens"]) == (40, 10)
    assert rows["2x3", 0]["reasoning_text"] == "thinking" and rows["3x4", 0]["censored"]
    assert rows["3x4", 0]["finish_reason"] == "length" and rows["3x4", 0]["answer_tokens"] == 0
    # n = 2: the usage covers both choices, so each choice's reasoning is counted from its text
    assert [rows["4x6", k]["reasoning_tokens"] for k in (0, 1)] == [3, 3]
    assert any("n > 1" in w for w in warnings)


def test_several_models_need_log_model(task, tmp_path):
    lines = [chat_line("2x3", reasoning_tokens=3, completion_tokens=9, model_name="a"),
             chat_line("3x4", reasoning_tokens=4, completion_tokens=9, model_name="b")]
    path = write(tmp_path / "out.jsonl", lines)
    with pytest.raises(LogFormatError, match=r"2 models \['a', 'b'\]; choose one with engine.log_model"):
        load(path, task)
    df, _ = load(path, task, log_model="b")
    assert df["item_id"].to_list() == ["3x4"] and df["reasoning_tokens"].to_list() == [4]


# --- matching --------------------------------------------------------------------------------

def test_partial_matches_are_counted_and_named_never_silent(task, tmp_path):
    lines = [chat_line("2x3", reasoning_tokens=3, completion_tokens=9),
             chat_line("9x9", reasoning_tokens=3, completion_tokens=9)]
    df, warnings = load(write(tmp_path / "out.jsonl", lines), task)
    assert df["item_id"].to_list() == ["2x3"]
    assert "1 did not match (1 id not in the task, e.g. ['9x9'])" in warnings[0]
    assert any("1 of 2 sample(s) match no item" in w and "engine.id_map" in w for w in warnings)


def test_no_match_at_all_stops_with_the_ways_out(task, tmp_path):
    path = write(tmp_path / "out.jsonl", [chat_line(f"request-{k}", reasoning_tokens=3, completion_tokens=9)
                                          for k in range(3)])
    with pytest.raises(LogFormatError, match=r"none of its 3 sample\(s\) matches an item of task 'multiplication' "
                                             r"\(3 id not in the task"):
        load(path, task)


def test_an_id_map_maps_log_ids_and_several_ids_of_one_item_are_its_samples(task, tmp_path):
    path = write(tmp_path / "out.jsonl", [chat_line(f"request-{k}", reasoning_tokens=k, completion_tokens=20,
                                                    answer="The answer is 6.") for k in range(3)])
    (tmp_path / "map.csv").write_text("log_id,item_id\nrequest-0,2x3\nrequest-1,2x3\nrequest-2,3x4\n")
    df, _ = load(path, task, id_map=str(tmp_path / "map.csv"))
    assert [(r["item_id"], r["sample_idx"], r["reasoning_tokens"]) for r in df.iter_rows(named=True)] == \
        [("2x3", 0, 0), ("2x3", 1, 1), ("3x4", 0, 2)]
    (tmp_path / "bad.csv").write_text("id,item\nrequest-0,2x3\n")
    with pytest.raises(LogFormatError, match="columns log_id,item_id; its header is"):
        load(path, task, id_map=str(tmp_path / "bad.csv"))


def test_an_id_field_reads_the_id_from_the_logged_fields(task, tmp_path):
    path = write(tmp_path / "out.jsonl", [chat_line("2x3", reasoning_tokens=3, completion_tokens=9)])
    df, _ = load(path, task, id_field="custom_id")
    assert df["item_id"].to_list() == ["2x3"]
    with pytest.raises(LogFormatError, match=r"1 no usable `metadata.item`"):
        load(path, task, id_field="metadata.item")


def test_duplicate_ids_stop_the_import(task, tmp_path):
    path = write(tmp_path / "out.jsonl", [chat_line("2x3", reasoning_tokens=3, completion_tokens=9)] * 2)
    with pytest.raises(ReplayError, match="repeats item_id '2x3' sample_idx 0"):
        load(path, task)


# --- hostile lines ---------------------------------------------------------------------------

@pytest.mark.parametrize("value, shown", [(-4, "-4"), ("12", "'12'"), (True, "True"), (1.5, "1.5")])
def test_counts_that_are_no_counts_are_named(task, tmp_path, value, shown):
    line = chat_line("2x3", reasoning_tokens=3, completion_tokens=9)
    line["response"]["body"]["usage"]["completion_tokens_details"]["reasoning_tokens"] = value
    with pytest.raises(LogFormatError, match=rf"line 1 \(custom_id '2x3'\): `completion_tokens_details.reasoning_tokens` "
                                             rf"is {shown}, not a token count"):
        load(write(tmp_path / "out.jsonl", [line]), task)


def test_a_file_cut_short_is_refused_not_imported_in_part(task, tmp_path):
    text = "".join(json.dumps(chat_line(i, reasoning_tokens=3, completion_tokens=9)) + "\n" for i in IDS)
    path = tmp_path / "out.jsonl"
    path.write_text(text[: len(text) - 40])
    with pytest.raises(LogFormatError, match="line 6 is not valid JSON .* ends part-way through it"):
        load(path, task)


def test_a_text_over_the_cap_is_refused_by_name(task, tmp_path):
    from cogdistill.traces.logs.base import MAX_TEXT_CHARS

    line = chat_line("2x3", reasoning="x" * (MAX_TEXT_CHARS + 1), completion_tokens=9)
    with pytest.raises(LogFormatError, match=r"`message.reasoning` holds 8,388,609 characters"):
        load(write(tmp_path / "out.jsonl", [line]), task)


def test_no_tokenizer_names_the_samples_and_the_fix(task, tmp_path):
    from cogdistill.traces.replay import LazyTokenizer

    def broken():
        raise OSError("no tokenizer here")

    path = write(tmp_path / "out.jsonl", [chat_line("2x3", reasoning="abc", completion_tokens=9)])
    with pytest.raises(ReplayError, match=r"1 of 1 logged sample\(s\) carry texts without the provider's counts "
                                          r"\(line 1 \(custom_id '2x3'\)\).*weights"):
        load(path, task, tok=LazyTokenizer(broken, "m1"))


def test_auto_detection_and_an_unknown_format_name(task, tmp_path):
    from cogdistill.traces.logs.detect import detect

    batch = write(tmp_path / "out.jsonl", [chat_line("2x3", reasoning_tokens=3, completion_tokens=9)])
    records = write(tmp_path / "records.jsonl", [counts("2x3", 3, correct=True)])
    assert detect(batch) == "openai-batch" and detect(records) == "records"
    df, _ = load(records, task, format="records")
    assert df["item_id"].to_list() == ["2x3"]
    with pytest.raises(LogFormatError, match="is a folder"):
        detect(tmp_path)


@pytest.mark.parametrize("overrides, needles", [
    (["engine.format=inspct"], ["engine.format=inspct", "Did you mean 'inspect'?"]),
    (["engine.match=prompts"], ["engine.match=prompts", "Did you mean 'prompt'?"]),
    (["engine.match=prompt", "engine.id_field=doc.x"], ["drop engine.id_field / engine.id_map"]),
    (["engine.id_field=doc.x", "engine.id_map=m.csv"], ["give one of them"]),
])
def test_replay_settings_are_checked_when_the_config_loads(overrides, needles):
    from cogdistill.config.compose import compose_main
    from cogdistill.config.schema import ConfigError
    from helpers.errors import expect

    expect(ConfigError, lambda: compose_main(["engine=replay", "task=[multiplication]", *overrides]), *needles)


def test_auto_tells_every_format_apart_on_files_their_libraries_wrote(tmp_path):
    from pathlib import Path

    from cogdistill.traces.logs.detect import detect

    data = Path(__file__).parent / "data" / "harness-logs"
    assert detect(data / "helm-0.5.16") == detect(data / "helm-0.5.16" / "scenario_state.json") == "helm"
    for version in ("lighteval-0.13", "lighteval-0.9"):
        assert {detect(p) for p in (data / version).glob("*.parquet")} == {"lighteval"}
    (tmp_path / "samples_t_2026.jsonl").write_text(json.dumps({"doc_id": 0, "doc": {}, "resps": [["x"]]}) + "\n")
    assert detect(tmp_path / "samples_t_2026.jsonl") == "lm-eval"
    (tmp_path / "log.json").write_text(json.dumps({"version": 2, "status": "success", "eval": {}}))
    assert detect(tmp_path / "log.json") == "inspect"


def test_a_200_mb_sample_is_refused_without_being_read_whole(task, tmp_path):
    line = chat_line("2x3", reasoning="x", completion_tokens=9)
    head = json.dumps(line)[:-1]
    path = tmp_path / "huge.jsonl"
    with open(path, "w") as fh:  # one line of 200 MB: a reasoning text no generation has
        fh.write(head.replace('"reasoning": "x"', '"reasoning": "'))
        chunk = "y" * 2 ** 20
        for _ in range(200):
            fh.write(chunk)
        fh.write('"}\n')
    with pytest.raises(LogFormatError, match="line 1 is longer than 64 MiB"):
        load(path, task)
