"""lighteval details parquets, written by lighteval itself, read back as logged samples.

The files under tests/data/harness-logs/lighteval-0.13 and -0.9 were written by lighteval 0.13.0 and
0.9.2 (their EvaluationTracker.save, from DetailsLogger rows; make.py beside them). lighteval cannot
be installed beside this project's Hydra, so they are committed rather than written here. Each test
puts them back in the layout lighteval writes (<out>/details/<model>/<date>/details_<task>_<date>.parquet
beside <out>/results/<model>/results_<date>.json); the hostile files are those real files damaged.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cogdistill.traces.logs import lighteval_log
from cogdistill.traces.logs.base import LENGTH, MAX_TEXT_CHARS, STOP, LogFormatError
from cogdistill.traces.logs.detect import detect

DATA = Path(__file__).parent / "data" / "harness-logs"
DATE = "2026-12-06T04-25-21.567107"


def laid_out(tmp: Path, version: str, name: str, task: str, model: str = "org/tiny-reasoner",
             results: bool = True) -> Path:
    folder = tmp / "out" / "details" / model / DATE
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"details_{task}_{DATE}.parquet"
    shutil.copy(DATA / version / name, path)
    if results:
        (tmp / "out" / "results" / model).mkdir(parents=True, exist_ok=True)
        shutil.copy(DATA / version / "results.json", tmp / "out" / "results" / model / f"results_{DATE}.json")
    return path


def rewritten(tmp: Path, change) -> Path:
    """The real 0.13 file, its rows changed by `change(rows)`, written back with the same columns."""
    rows = pq.read_table(DATA / "lighteval-0.13" / "details_game24.parquet").to_pylist()
    change(rows)
    path = tmp / "details_custom|game24|0_x.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_current_schema_gives_each_sample_its_id_count_text_and_cut(tmp_path):
    path = laid_out(tmp_path, "lighteval-0.13", "details_game24.parquet", "custom|game24|0")
    assert detect(path) == "lighteval"
    log = lighteval_log.read(path)
    assert log.format == "lighteval" and log.model == "org/tiny-reasoner"
    got = [(s.log_id, s.sample_idx, s.output_tokens, s.finish_reason) for s in log.samples]
    # the ids lists make.py gave: 7 and 5 ids; 9 and 2, the 9 filling g24-002's generation_size of 9
    assert got == [("g24-001", 0, 7, STOP), ("g24-001", 1, 5, STOP), ("g24-002", 0, 9, LENGTH),
                   ("g24-002", 1, 2, STOP)]
    first = log.samples[0]
    assert first.prompt == "Use 4 6 8 8 to make 24." and first.target == "(8-6)*8+8"
    assert first.raw_text == "<think>8-6=2, 2*8=16, 16+8=24</think>(8-6)*8+8"
    assert first.reasoning_text is None and first.answer_text is None
    assert first.fields["task"] == "custom|game24|0" and first.fields["specific"] == {"puzzle": "g24-001"}
    assert first.fields["doc"]["id"] == "g24-001"
    assert any("cut off" in n for n in log.notes)


def test_kept_reasoning_is_reasoning_text_and_no_ids_give_no_count(tmp_path):
    log = lighteval_log.read(laid_out(tmp_path, "lighteval-0.13", "details_game24api.parquet", "custom|game24api|0"))
    (s,) = log.samples
    assert (s.log_id, s.reasoning_text, s.answer_text, s.raw_text) == (
        "g24-003", "8/3 is 2.67; 3-2.67=0.33; 8/0.33=24", "8/(3-8/3)", None)
    assert s.output_tokens is None and s.finish_reason == STOP
    assert any("no token ids" in n for n in log.notes)


@pytest.mark.parametrize("name", ["details_game24.parquet", "details_game24_strcast.parquet"])
def test_flat_schema_typed_and_written_as_reprs_read_the_same(tmp_path, name):
    path = laid_out(tmp_path, "lighteval-0.9", name, "custom|game24|0", model="a/b")
    assert detect(path) == "lighteval"
    log = lighteval_log.read(path)
    assert log.model == "org/old-reasoner"  # from results_<date>.json, not the folder names
    got = [(s.log_id, s.sample_idx, s.output_tokens, s.raw_text, s.target) for s in log.samples]
    # cont_tokens as make.py gave them: 6 and 3 ids, 8 and 3 ids
    assert got == [("0", 0, 6, "<think>8-6=2, 2*8=16, 16+8=24</think>(8-6)*8+8", "(8-6)*8+8"),
                   ("0", 1, 3, "<think>6*4</think>6*4*(8/8)", "(8-6)*8+8"),
                   ("1", 0, 8, "<think>1+1+1+1=4 ... no way</think>impossible", "impossible"),
                   ("1", 1, 3, "<think>no</think>impossible", "impossible")]
    assert log.samples[2].prompt == "Use 1 1 1 1 to make 24."
    assert log.samples[2].fields["specific"] == {"puzzle": "g24-002"}
    assert any("row numbers" in n for n in log.notes)


def test_model_from_the_folders_without_a_results_file(tmp_path):
    log = lighteval_log.read(laid_out(tmp_path, "lighteval-0.9", "details_game24.parquet", "custom|game24|0",
                                      model="hub-org/some-model", results=False))
    assert log.model == "hub-org/some-model"


def test_a_parquet_that_is_not_lightevals_is_refused(tmp_path):
    path = tmp_path / "other.parquet"
    pq.write_table(pa.table({"question": ["q"], "answer": ["a"]}), path)
    with pytest.raises(LogFormatError, match="not a lighteval details parquet"):
        lighteval_log.read(path)
    text = tmp_path / "details_x.parquet"
    text.write_text("not parquet")
    with pytest.raises(LogFormatError, match="not a readable parquet"):
        lighteval_log.read(text)


def test_a_file_cut_short_is_refused_not_read_in_part(tmp_path):
    data = (DATA / "lighteval-0.13" / "details_game24.parquet").read_bytes()
    path = tmp_path / "details_cut.parquet"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(LogFormatError, match=str(path.name)):
        lighteval_log.read(path)


@pytest.mark.parametrize("bad, shown", [([-3, 5], "-3"), (["12", "7"], "'12'")])
def test_negative_or_string_counts_are_refused(tmp_path, bad, shown):
    def change(rows):
        rows[0]["model_response"]["output_tokens"] = bad
        rows[1]["model_response"]["output_tokens"] = [4, 4] if isinstance(bad[0], int) else ["4", "4"]
    with pytest.raises(LogFormatError, match=rf"row 0 .*sample 0: `model_response.output_tokens` is {shown}"):
        lighteval_log.read(rewritten(tmp_path, change))


def test_duplicate_doc_ids_are_named(tmp_path):
    def change(rows):
        rows.append(rows[0])
    with pytest.raises(LogFormatError, match=r"doc id 'g24-001' sample 0 appears twice \(rows 0 and 2\)"):
        lighteval_log.read(rewritten(tmp_path, change))


def test_ids_and_texts_out_of_step_are_refused(tmp_path):
    def change(rows):
        rows[1]["model_response"]["output_tokens"] = [[1, 2, 3]]
    with pytest.raises(LogFormatError, match="holds 1 entries for 2 generated texts"):
        lighteval_log.read(rewritten(tmp_path, change))


def test_a_text_over_the_cap_is_refused_with_its_row(tmp_path):
    def change(rows):
        rows[1]["model_response"]["text"][1] = "x" * (MAX_TEXT_CHARS + 1)
    with pytest.raises(LogFormatError, match=r"rows 0-1: `model_response.text` holds 8,388,609 bytes"):
        lighteval_log.read(rewritten(tmp_path, change))


def test_log_likelihood_rows_are_left_out_and_a_file_of_only_them_refused(tmp_path):
    def only_scoring(rows):
        for row in rows:
            row["model_response"]["text"], row["model_response"]["output_tokens"] = [], []
    with pytest.raises(LogFormatError, match="no generations in it"):
        lighteval_log.read(rewritten(tmp_path, only_scoring))

    def one_scoring(rows):
        rows[1]["model_response"]["text"], rows[1]["model_response"]["output_tokens"] = [], []
    log = lighteval_log.read(rewritten(tmp_path, one_scoring))
    assert [s.log_id for s in log.samples] == ["g24-001", "g24-001"]
    assert any("1 rows hold no generation" in n for n in log.notes)
