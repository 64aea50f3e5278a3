"""Replay: trace records from elsewhere enter the analysis unchanged, or fail with a clear message."""

import json
from pathlib import Path

import pytest

from cogdistill.stats import correlation as stats
from cogdistill.engines.base import Generation
from cogdistill.traces.replay import ReplayError, load_traces
from cogdistill.tasks.load import load_task
from cogdistill.traces.records import TRACE_SCHEMA, trace_row, traces_frame
from helpers.tasks import mult_config
from helpers.traces import IDS, CharTokenizer, counts, model, write

TOK = CharTokenizer()
COSTS = ["reasoning_tokens", "answer_tokens", "total_tokens", "censored", "correct"]
TARGETS = dict(zip(IDS, ["6", "12", "24", "42", "56", "72"]))
# the `task` fixture (tests/conftest.py): the multiplication task over mult_mirror, items IDS


def load(path, *, m=None, tok=TOK, task_=None):
    return load_traces(path, task_, m or model(), tok)


# --- accepted input -------------------------------------------------------------------------

def test_counts_only_parquet_round_trip_preserves_values(task, tmp_path):
    rows = [counts(i, 10 * k, k, correct=k % 2 == 0) for k, i in enumerate(reversed(IDS))]
    df, warnings = load_traces(write(tmp_path / "t.parquet", rows), task, model(), None)
    assert dict(df.schema) == TRACE_SCHEMA and warnings == []
    assert df["item_id"].to_list() == IDS  # sorted
    by_item = {r["item_id"]: r for r in df.iter_rows(named=True)}
    for k, item in enumerate(reversed(IDS)):
        row = by_item[item]
        assert (row["reasoning_tokens"], row["answer_tokens"], row["total_tokens"]) == (10 * k, k, 11 * k)
        assert row["correct"] == (k % 2 == 0) and row["censored"] is False and row["sample_idx"] == 0
        assert row["target"] == TARGETS[item] and row["engine"] == "replay" and row["latency_s"] is None
        assert row["model"] == "m1" and row["task"] == "multiplication" and row["finish_reason"] == "stop"
    assert by_item["2x3"]["prompt"] == "What is 2 x 3?"
    assert stats.item_costs(df, task.items, "reasoning_tokens").height == 6


def test_jsonl_texts_are_counted_with_the_tokenizer(task, tmp_path):
    rows = [{"item_id": "7x8", "reasoning_text": "7 x 8 is 56</think>", "answer_text": "The answer is 56.",
             "sample_idx": s, "latency_s": 0.5, "prompt": "custom"} for s in (0, 1)]
    df, _ = load(write(tmp_path / "t.jsonl", rows), task_=task)
    row = df.row(1, named=True)
    assert row["sample_idx"] == 1 and row["prompt"] == "custom" and row["latency_s"] == 0.5
    assert row["reasoning_tokens"] == len("7 x 8 is 56</think>") and row["answer_tokens"] == len("The answer is 56.")
    assert row["correct"] and row["extracted_answer"] == "56" and not row["censored"]


def test_raw_text_is_split_as_a_live_engine_would(task, tmp_path):
    text = "<think>7 x 8 is 56</think>The answer is 56."
    rows = [{"item_id": "7x8", "text": text, "prompt_tokens": 9},
            {"item_id": "8x9", "text": "<think>8 x 9, let me count", "finish_reason": "length"}]
    df, _ = load(write(tmp_path / "t.json", rows), task_=task)
    row, cut = df.row(0, named=True), df.row(1, named=True)
    assert row["reasoning_text"] == "7 x 8 is 56" and row["answer_text"] == "The answer is 56."
    assert row["reasoning_tokens"] == len("7 x 8 is 56") and row["answer_tokens"] == len("The answer is 56.")
    assert row["total_tokens"] == len(text)  # the tags are markup: counted in the total only
    assert row["correct"] and row["prompt_tokens"] == 9
    live = trace_row(Generation(text=text, token_ids=None, prompt_tokens=9, finish_reason="stop", latency_s=None),
                     tokenizer=TOK, think_start="<think>", think_end="</think>",
                     score=lambda t: task.score(t, "56"))
    assert {k: row[k] for k in live} == live
    assert cut["censored"] and cut["answer_tokens"] == 0 and not cut["correct"]


def test_correctness_is_recomputed_when_absent_and_kept_when_present(task, tmp_path):
    rows = [counts("2x3", 5, answer_text="The answer is 7."),  # wrong: scored False
            counts("3x4", 5, answer_text="The answer is 12."),  # right: scored True
            counts("4x6", 5, answer_text="The answer is 7.", correct=True),  # the file's verdict wins
            counts("6x7", 5, answer_text="", correct=None)]  # empty answer: wrong, as trace_row has it
    df, _ = load(write(tmp_path / "t.jsonl", rows), task_=task)
    assert df["correct"].to_list() == [False, True, True, False]
    assert df["extracted_answer"].to_list() == ["7", "12", "7", None]


def test_censored_defaults_follow_trace_rows_rule(task, tmp_path):
    rows = [counts("2x3", 50, 0, finish_reason="length", correct=False),  # cut inside the reasoning
            counts("3x4", 50, 4, finish_reason="length", correct=True),  # cut after </think>: not censored
            counts("4x6", 50, 0, finish_reason="length", correct=False, censored=False),  # given: kept
            {"item_id": "6x7", "reasoning_text": "a b c", "answer_text": "", "finish_reason": "length"}]
    df, _ = load(write(tmp_path / "t.jsonl", rows), task_=task)
    assert df["censored"].to_list() == [True, False, False, True]
    plain, _ = load(tmp_path / "t.jsonl", task_=task, m=model(think=False))
    assert plain["censored"].to_list() == [True, True, False, True]  # no tags: any cut censors


def test_multi_task_and_multi_model_files_are_filtered(task, tmp_path):
    rows = ([counts(i, 5, task="multiplication", model="m1") for i in IDS]
            + [counts(i, 7, task="multiplication", model="m2") for i in IDS]
            + [counts("q17", 9, task="stroop", model="m1")])  # other task, unknown ids: ignored
    path = write(tmp_path / "t.parquet", [{**r, "correct": True} for r in rows])
    df, warnings = load(path, task_=task)
    assert df.height == 6 and set(df["reasoning_tokens"]) == {5} and warnings == []
    df2, _ = load(path, task_=task, m=model("m2"))
    assert set(df2["reasoning_tokens"]) == {7} and set(df2["model"]) == {"m2"}
    with pytest.raises(ReplayError, match=r"model 'm3'.*\['m1', 'm2'\]"):
        load(path, task_=task, m=model("m3"))
    only_stroop = write(tmp_path / "s.jsonl", [counts("q1", 5, task="stroop", correct=True),
                                                counts("q2", 5, task="flanker", correct=True)])
    with pytest.raises(ReplayError, match=r"task 'multiplication'.*\['flanker', 'stroop'\]"):
        load(only_stroop, task_=task)


def test_round_trip_of_an_earlier_cogdistill_run(task, tmp_path):
    texts = {"2x3": "<think>2 x 3 = 6</think>6", "3x4": "<think>three fours</think>The answer is 12.",
             "4x6": "<think>4 x 6 is 24, or", "7x8": "<think></think>54"}
    rows = []
    for item, text in texts.items():
        finish = "length" if item == "4x6" else "stop"
        gen = Generation(text=text, token_ids=tuple(TOK.encode(text)), prompt_tokens=7, finish_reason=finish,
                         latency_s=0.25, usage={"prompt_tokens": 7, "completion_tokens": len(text)})
        row = trace_row(gen, tokenizer=TOK, think_start="<think>", think_end="</think>",
                        score=lambda t, target=TARGETS[item]: task.score(t, target))
        rows.append({"model": "m1", "task": "multiplication", "item_id": item, "sample_idx": 0,
                     "prompt": f"What is {item.replace('x', ' x ')}?", "target": TARGETS[item],
                     "engine": "transformers", **row})
    original = traces_frame(rows)
    original.write_parquet(tmp_path / "run.parquet")
    df, warnings = load(tmp_path / "run.parquet", task_=task)
    assert df.select(COSTS).equals(original.select(COSTS))
    assert df.drop("engine").equals(original.drop("engine")) and set(df["engine"]) == {"replay"}
    assert len(warnings) == 1 and "2 of 6 items" in warnings[0]  # 6x7 and 8x9 have no record


def test_relative_paths_resolve_against_the_working_directory(task, tmp_path, monkeypatch):
    write(tmp_path / "t.jsonl", [counts(i, 5, correct=True) for i in IDS])
    monkeypatch.chdir(tmp_path)
    df, _ = load(Path("t.jsonl"), task_=task)
    assert df.height == 6


@pytest.mark.parametrize("cost", [0, 17])
def test_all_equal_costs_are_allowed_and_r_is_reported_undefined(task, tmp_path, cost):
    df, _ = load(write(tmp_path / "t.jsonl", [counts(i, cost, cost, correct=True) for i in IDS]), task_=task)
    al = stats.alignment(task.name, stats.item_costs(df, task.items, "reasoning_tokens"), df,
                         "reasoning_tokens", n_boot=50)
    assert al.n_items == 6 and al.note and "undefined" in al.note


# --- validation ---------------------------------------------------------------------------

def test_items_without_records_are_a_warning(task, tmp_path):
    df, warnings = load(write(tmp_path / "t.jsonl", [counts(i, 5, correct=True) for i in IDS[:4]]), task_=task)
    assert df.height == 4 and len(warnings) == 1
    assert "2 of 6 items" in warnings[0] and "8x9" in warnings[0] and "4 covered" in warnings[0]


def test_unknown_item_ids_are_an_error_naming_them_and_the_file(task, tmp_path):
    path = write(tmp_path / "t.jsonl", [counts("2x3", 5, correct=True), counts("9x9", 5, correct=True),
                                        counts("x", 5, correct=True)])
    with pytest.raises(ReplayError, match=r"2 item id.*\['9x9', 'x'\]") as exc:
        load(path, task_=task)
    assert str(path) in str(exc.value)


def test_duplicate_item_and_sample_is_an_error(task, tmp_path):
    path = write(tmp_path / "t.jsonl", [counts("2x3", 5, correct=True, sample_idx=0),
                                        counts("2x3", 6, correct=True, sample_idx=1),
                                        counts("2x3", 7, correct=True)])  # sample_idx defaults to 0
    with pytest.raises(ReplayError, match=r"line 3 repeats item_id '2x3' sample_idx 0 \(first at line 1\)"):
        load(path, task_=task)


@pytest.mark.parametrize("field,value", [("reasoning_tokens", -1), ("answer_tokens", 2.5),
                                         ("reasoning_tokens", "12"), ("sample_idx", -2),
                                         ("reasoning_tokens", True)])
def test_bad_token_counts_are_an_error(task, tmp_path, field, value):
    rows = [counts("2x3", 5, correct=True), {**counts("3x4", 5, correct=True), field: value}]
    with pytest.raises(ReplayError, match=rf"line 2: `{field}` is .*non-negative integer"):
        load(write(tmp_path / "t.jsonl", rows), task_=task)


def test_integral_float_counts_are_accepted(task, tmp_path):
    df, _ = load(write(tmp_path / "t.parquet", [counts("2x3", 5.0, 2.0, correct=True)]), task_=task)
    assert df["reasoning_tokens"].to_list() == [5] and df["answer_tokens"].to_list() == [2]


def test_inconsistent_total_tokens_is_an_error(task, tmp_path):
    with pytest.raises(ReplayError, match="total_tokens` is 7, less than"):
        load(write(tmp_path / "t.jsonl", [counts("2x3", 5, 3, total_tokens=7, correct=True)]), task_=task)
    # a total above the parts is their markup (think tags, harmony headers): kept as given
    df, _ = load(write(tmp_path / "ok.jsonl", [counts("2x3", 5, 3, total_tokens=10, correct=True)]), task_=task)
    assert df["total_tokens"].to_list() == [10]


@pytest.mark.parametrize("row,missing", [
    ({"id": "2x3", "reasoning_tokens": 5, "answer_tokens": 1}, "item_id"),
    ({"item_id": "2x3", "reasoning_tokens": 5, "correct": True}, "answer_tokens"),
])
def test_missing_required_column_lists_the_columns_found(task, tmp_path, row, missing):
    with pytest.raises(ReplayError, match=rf"missing required column.*{missing}.*found \[") as exc:
        load(write(tmp_path / "t.parquet", [row]), task_=task)
    assert all(f"'{c}'" in str(exc.value) for c in row)


def test_record_without_any_cost_or_correctness_is_an_error(task, tmp_path):
    path = write(tmp_path / "t.jsonl", [counts("2x3", 5, correct=True), {"item_id": "3x4", "text": None}])
    with pytest.raises(ReplayError, match="line 2 has no cost"):
        load(path, task_=task)
    with pytest.raises(ReplayError, match="line 1 has neither `correct` nor an `answer_text`"):
        load(write(tmp_path / "u.jsonl", [counts("2x3", 5)]), task_=task)


def test_texts_without_counts_need_a_tokenizer(task, tmp_path):
    path = write(tmp_path / "t.jsonl", [{"item_id": "2x3", "text": "<think>x</think>6"}])
    with pytest.raises(ReplayError, match="token counts.*tokenizer"):
        load(path, task_=task, tok=None)


def test_a_tokenizer_that_cannot_load_names_the_records_that_need_it(task, tmp_path):
    """Records with counts replay without any tokenizer (a model config needs no weights for them);
    records with texts only need one, and when it cannot load the error lists them and the fixes."""
    from cogdistill.traces.replay import LazyTokenizer

    def no_tokenizer():
        raise OSError("no such model folder: synthetic/m")

    lazy = LazyTokenizer(no_tokenizer, "m")
    counted, _ = load(write(tmp_path / "ok.jsonl", [counts(i, 5, correct=True) for i in IDS]), task_=task, tok=lazy)
    assert counted["reasoning_tokens"].to_list() == [5] * len(IDS)
    rows = [counts(IDS[0], 5, correct=True)] + [{"item_id": i, "text": "<think>x</think>6"} for i in IDS[1:]]
    with pytest.raises(ReplayError) as err:
        load(write(tmp_path / "t.jsonl", rows), task_=task, tok=lazy)
    message = str(err.value)
    assert f"{len(IDS) - 1} of {len(IDS)} record(s) carry texts without token counts (line 2, line 3" in message
    assert "tokenizer of model 'm' cannot load" in message and "no such model folder" in message
    assert "Add `reasoning_tokens` and `answer_tokens` to those records" in message


def test_malformed_jsonl_names_the_line(task, tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(counts("2x3", 5, correct=True)) + "\n\n" + '{"item_id": "3x4", "reasoning_tokens": 5,\n')
    with pytest.raises(ReplayError, match="line 3 is not valid JSON"):
        load(path, task_=task)
    path.write_text('[{"item_id": "2x3"}]\n')
    with pytest.raises(ReplayError, match="line 1 is a JSON list, not an object"):
        load(path, task_=task)


def test_unreadable_parquet_is_an_error(task, tmp_path):
    path = tmp_path / "t.parquet"
    path.write_bytes(b"not a parquet file")
    with pytest.raises(ReplayError, match="cannot be read as parquet"):
        load(path, task_=task)


def test_unsupported_extension_is_an_error(task, tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("item_id,reasoning_tokens,answer_tokens\n2x3,5,1\n")
    with pytest.raises(ReplayError, match=r"unsupported file type '\.csv'.*\.parquet.*\.jsonl"):
        load(path, task_=task)


def test_missing_path_and_directory_are_errors(task, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ReplayError, match="does not exist") as exc:
        load(Path("nope/traces.parquet"), task_=task)
    assert str(tmp_path / "nope" / "traces.parquet") in str(exc.value)
    (tmp_path / "dir.parquet").mkdir()
    with pytest.raises(ReplayError, match="not a regular file"):
        load(Path("dir.parquet"), task_=task)
    with pytest.raises(ReplayError, match="engine.path"):
        load(None, task_=task)


def test_empty_file_and_partly_unnamed_task_are_errors(task, tmp_path):
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(ReplayError, match="no trace records"):
        load(tmp_path / "e.jsonl", task_=task)
    path = write(tmp_path / "t.jsonl", [counts("2x3", 5, correct=True, task="multiplication"),
                                        counts("3x4", 5, correct=True)])
    with pytest.raises(ReplayError, match="line 2 has no `task`"):
        load(path, task_=task)


def test_unknown_columns_and_foreign_targets_are_warnings(task, tmp_path):
    rows = [counts("2x3", 5, correct=True, target="7", run_id="abc")] + \
        [counts(i, 5, correct=True, target=TARGETS[i], run_id="abc") for i in IDS[1:]]
    df, warnings = load(write(tmp_path / "t.jsonl", rows), task_=task)
    assert df["target"].to_list() == [TARGETS[i] for i in IDS]
    assert any("ignored column(s) ['run_id']" in w for w in warnings)
    assert any("1 record(s) give a `target` other than the task's" in w for w in warnings)


def test_unknown_ids_hint_at_max_items(mult_mirror, tmp_path):
    mirror, sha = mult_mirror
    capped = load_task(mult_config(sha, max_items=3), mirror=str(mirror), cache=tmp_path / "cache", timeout_s=1)
    path = write(tmp_path / "t.jsonl", [counts(i, 5, correct=True) for i in IDS])
    with pytest.raises(ReplayError, match=r"3 item id.*task.max_items=3"):
        load(path, task_=capped)


def test_lazy_tokenizer_loads_only_when_a_record_needs_counting(task, tmp_path):
    from cogdistill.traces.replay import LazyTokenizer, ReplayError

    calls = []

    def broken():
        calls.append(1)
        raise OSError("no tokenizer.json")

    lazy = LazyTokenizer(broken, "some-model")
    path = tmp_path / "counts.jsonl"
    path.write_text("\n".join(json.dumps({"item_id": i, "reasoning_tokens": 3, "answer_tokens": 1, "correct": True})
                              for i in task.items["item_id"]) + "\n")
    traces, _ = load_traces(path, task, model(), lazy)
    assert traces.height == task.items.height and calls == []  # counts given: never loaded
    with pytest.raises(ReplayError, match=r"tokenizer of model 'some-model' cannot load to count them \(OSError"):
        lazy.encode("text")
