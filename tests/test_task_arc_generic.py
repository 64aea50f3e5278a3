"""ARC (H-ARC stimuli, optional OSF human file) and the generic bring-your-own-data task."""

import csv
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict

import pytest
from omegaconf import OmegaConf

from cogdistill.config.schema import TaskConfig
from cogdistill.config.validate import validate
from cogdistill.tasks.load import load_task
from cogdistill.tasks.arc import score_grid
from cogdistill.tasks.item_table import ITEM_COLUMNS, TaskDataError
from helpers.config import compose
from helpers.data import REPO, real_mirror
from helpers.tasks import generic_cfg, sha, write

ARC_HEADER = ("task_type,task_number,task_name,example_type,example_number,input_height,input_width,"
              "output_height,output_width,input_filename,output_filename,input_grid,output_grid")


def task_cfg(path: Path, **kw) -> TaskConfig:
    """The task config file read with omegaconf and merged into the schema, plus overrides."""
    cfg = OmegaConf.merge(OmegaConf.structured(TaskConfig), OmegaConf.load(path), OmegaConf.create(kw))
    return OmegaConf.to_object(cfg)


def src(path: Path, mirror_path: str) -> Dict:
    return {"url": "http://127.0.0.1:9/unreachable", "sha256": sha(path), "mirror_path": mirror_path}


# --- ARC scorer -----------------------------------------------------------------------------

def test_grid_scorer_reads_both_formats_and_the_last_grid_wins():
    target = "|323232|787878|"
    # rows on separate lines after the marker; start is the offset of the first row
    text = "The rule tiles the input.\nAnswer:\n323232\n787878\n"
    s = score_grid(text, target)
    assert s == (s.__class__("|323232|787878|", text.index("323232"), True))
    # the "|row|row|" format, inline
    assert score_grid("So the output is |323232|787878|.", target).correct
    # digits separated by spaces or commas, JSON-ish brackets
    assert score_grid("Answer:\n3 2 3 2 3 2\n7 8 7 8 7 8", target).correct
    assert score_grid("Answer:\n[3, 2, 3, 2, 3, 2],\n[7, 8, 7, 8, 7, 8]", target).correct
    # a first wrong grid, then the corrected one: the last counts
    text = "First guess:\n111\n222\nWait, tiling it:\n```\n323232\n787878\n```"
    s = score_grid(text, target)
    assert s.correct and s.start == text.index("323232")
    # a right grid followed by a wrong one: wrong
    s = score_grid("Answer: |323232|787878|\nActually:\n323232\n787877", target)
    assert not s.correct and s.answer == "|323232|787877|"


def test_grid_scorer_wrong_shape_and_no_answer():
    assert not score_grid("Answer:\n323232\n787878\n323232", "|323232|787878|").correct  # an extra row
    assert not score_grid("Answer:\n32323\n78787", "|323232|787878|").correct  # a column short
    none = score_grid("I cannot find the rule.", "|12|34|")
    assert none.answer is None and none.start is None and not none.correct
    # numbers inside prose are not grids
    assert score_grid("The output is 3x3 with 9 cells, so rows are 123.", "|123|").answer is None


# --- ARC items ------------------------------------------------------------------------------

def write_arc(path: Path) -> None:
    """Two tasks: 'aaaa1111' (flip each row; 2 train, 1 test) and 'bbbb2222' (double; 1 train, 2 tests)."""
    rows = [
        "evaluation,1,aaaa1111.json,train,1,1,2,1,2,x,x,|12|,|21|",
        "evaluation,1,aaaa1111.json,train,2,2,2,2,2,x,x,|34|56|,|43|65|",
        "evaluation,1,aaaa1111.json,test,1,1,3,1,3,x,x,|789|,|987|",
        "evaluation,2,bbbb2222.json,train,1,1,1,1,2,x,x,|1|,|11|",
        "evaluation,2,bbbb2222.json,test,2,1,1,1,2,x,x,|3|,|33|",
        "evaluation,2,bbbb2222.json,test,1,1,1,1,2,x,x,|2|,|22|",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(ARC_HEADER + "\n" + "\n".join(rows) + "\n")


def arc_config(mirror: Path, **kw) -> TaskConfig:
    sources = {"stimuli": src(mirror / "h-arc-stimuli" / "arc_data_ARC_evaluation_tasks.csv",
                              "h-arc-stimuli/arc_data_ARC_evaluation_tasks.csv")}
    if (mirror / "h-arc-human" / "summary_data.csv").is_file():
        sources["human"] = src(mirror / "h-arc-human" / "summary_data.csv", "h-arc-human/summary_data.csv")
    return task_cfg(REPO / "conf" / "task" / "arc.yaml", sources=sources, **kw)


@pytest.fixture
def arc_mirror(tmp_path) -> Path:
    write_arc(tmp_path / "m" / "h-arc-stimuli" / "arc_data_ARC_evaluation_tasks.csv")
    return tmp_path / "m"


def test_arc_items_without_human_data_have_null_human_measures(arc_mirror, tmp_path):
    task = load_task(arc_config(arc_mirror), mirror=str(arc_mirror), cache=tmp_path, timeout_s=1)
    items = task.items
    assert items["item_id"].to_list() == ["aaaa1111", "bbbb2222#1", "bbbb2222#2"]
    assert items["target"].to_list() == ["|987|", "|22|", "|33|"]  # test examples ordered by number
    assert set(ITEM_COLUMNS) <= set(items.columns)
    assert items["n_trials"].to_list() == [0, 0, 0]
    for col in ("accuracy", "rt_mean", "rt_median", "log_rt_mean", "human_difficulty"):
        assert items[col].null_count() == 3
    # the problem as the model sees it, checked by hand
    assert items["problem"][0] == (
        "Example 1\nInput:\n12\nOutput:\n21\n\n"
        "Example 2\nInput:\n34\n56\nOutput:\n43\n65\n\n"
        "Test\nInput:\n789")
    prompt = task.prompts()[1]
    assert "Example 1\nInput:\n1\nOutput:\n11\n\nTest\nInput:\n2\n\n" in prompt and "'Answer:'" in prompt
    assert task.score("Doubling: Answer:\n22", "|22|").correct


def write_summary(path: Path) -> None:
    """H-ARC summary_data.csv layout (data_readme.md): one row per attempt."""
    head = "exp_name,task_type,hashed_id,joint_id_task,task_name,task_number,attempt_number,num_actions,solved,test_output_grid,first_written_solution,last_written_solution,complete"
    rows = [
        # aaaa1111: p1 fails then solves (solved: 1), p2 fails 3 times (0), p3 solves at once (1) -> 2/3
        "e,evaluation,p1,p1_a,aaaa1111.json,1,1,5,False,|987|,,,True",
        "e,evaluation,p1,p1_a,aaaa1111.json,1,2,7,True,|987|,,,True",
        "e,evaluation,p2,p2_a,aaaa1111.json,1,1,5,False,|987|,,,True",
        "e,evaluation,p2,p2_a,aaaa1111.json,1,2,5,False,|987|,,,True",
        "e,evaluation,p2,p2_a,aaaa1111.json,1,3,5,False,|987|,,,True",
        "e,evaluation,p3,p3_a,aaaa1111.json,2,1,4,True,|987|,,,True",
        # bbbb2222: test 1 (|22|) p1 solves, test 2 (|33|) p2 and p3 fail, p4 solves -> 1/1 and 1/3
        "e,evaluation,p1,p1_b,bbbb2222.json,2,1,3,True,|22|,,,True",
        "e,evaluation,p2,p2_b,bbbb2222.json,2,1,3,False,|33|,,,True",
        "e,evaluation,p3,p3_b,bbbb2222.json,1,1,3,False,|33|,,,False",
        "e,evaluation,p4,p4_b,bbbb2222.json,1,1,3,True,|33|,,,True",
        # a training-set task of the same name is ignored
        "e,training,p5,p5_b,bbbb2222.json,1,1,3,True,|33|,,,True",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + "\n" + "\n".join(rows) + "\n")


def test_arc_with_a_human_summary_file_gives_accuracy_and_error_rate(arc_mirror, tmp_path):
    write_summary(arc_mirror / "h-arc-human" / "summary_data.csv")
    task = load_task(arc_config(arc_mirror), mirror=str(arc_mirror), cache=tmp_path, timeout_s=1)
    got = {r["item_id"]: r for r in task.items.iter_rows(named=True)}
    assert [got[i]["n_trials"] for i in ("aaaa1111", "bbbb2222#1", "bbbb2222#2")] == [3, 1, 3]
    assert got["aaaa1111"]["accuracy"] == pytest.approx(2 / 3)
    assert got["bbbb2222#1"]["accuracy"] == 1.0 and got["bbbb2222#2"]["accuracy"] == pytest.approx(1 / 3)
    assert got["aaaa1111"]["human_difficulty"] == pytest.approx(1 / 3)
    assert got["aaaa1111"]["rt_mean"] is None


def test_arc_rt_measure_without_solve_times_says_use_error_rate(arc_mirror, tmp_path):
    write_summary(arc_mirror / "h-arc-human" / "summary_data.csv")
    cfg = arc_config(arc_mirror, difficulty={"measure": "mean_rt"})
    with pytest.raises(TaskDataError, match=r"summary_data.csv: .*no solve times.*error_rate"):
        load_task(cfg, mirror=str(arc_mirror), cache=tmp_path, timeout_s=1)


def test_arc_bad_files_name_file_and_column(tmp_path):
    mirror = tmp_path / "m"
    path = mirror / "h-arc-stimuli" / "arc_data_ARC_evaluation_tasks.csv"
    path.parent.mkdir(parents=True)
    path.write_text(ARC_HEADER.replace("output_grid", "out_grid") + "\n")
    with pytest.raises(TaskDataError, match=r"arc_data_ARC_evaluation_tasks.csv: missing column\(s\) \['output_grid'\]"):
        load_task(arc_config(mirror), mirror=str(mirror), cache=tmp_path, timeout_s=1)
    write_arc(path)
    path.write_text(path.read_text().replace("|789|", "|7a9|"))
    with pytest.raises(TaskDataError, match=r"column 'input_grid' has '\|7a9\|'"):
        load_task(arc_config(mirror), mirror=str(mirror), cache=tmp_path, timeout_s=1)
    write_arc(path)
    human = mirror / "h-arc-human" / "summary_data.csv"
    write_summary(human)
    human.write_text(human.read_text().replace(",solved,", ",success,"))
    with pytest.raises(TaskDataError, match=r"summary_data.csv: missing column\(s\) \['solved'\]"):
        load_task(arc_config(mirror), mirror=str(mirror), cache=tmp_path, timeout_s=1)


@pytest.mark.skipif(real_mirror() is None, reason="real human data mirror (../shared/reference-data) absent")
def test_real_arc_items_match_the_stimulus_file(tmp_path):
    mirror = real_mirror()
    job = validate(compose(["task=[arc]", f"data.mirror={mirror}"]))
    task = load_task(job.task["arc"], mirror=str(mirror), cache=tmp_path, timeout_s=1)
    # independent: plain csv, one item per test example
    rows = list(csv.DictReader(open(mirror / "h-arc-stimuli" / "arc_data_ARC_evaluation_tasks.csv", newline="")))
    tests: Dict[str, list] = {}
    for r in rows:
        if r["example_type"] == "test":
            tests.setdefault(r["task_name"][:-5], []).append((int(r["example_number"]), r["output_grid"]))
    want = {}
    for name, examples in tests.items():
        for k, (_, grid) in enumerate(sorted(examples), 1):
            want[name if len(examples) == 1 else f"{name}#{k}"] = grid
    assert len(tests) == 400 and len(want) == 419  # 19 tasks have two test inputs
    assert task.items.height == 419
    assert dict(zip(task.items["item_id"], task.items["target"])) == want
    assert task.items["human_difficulty"].null_count() == 419 and task.items["n_trials"].sum() == 0
    # each target, written back as rows of digits, scores correct
    row = task.items.row(0, named=True)
    assert task.score("Answer:\n" + "\n".join(row["target"].strip("|").split("|")), row["target"]).correct
    assert row["item_id"] == "00576224" and row["target"] == "|323232|787878|232323|878787|323232|787878|"


# --- generic (bring your own data) ----------------------------------------------------------

EXAMPLE = REPO / "tests" / "data" / "byo_example_items.csv"


def test_byo_example_config_loads_the_synthetic_file_through_the_mirror(tmp_path):
    job = validate(compose(["task=[byo-example]", f"data.mirror={EXAMPLE.parent}"]))
    task = load_task(job.task["byo-example"], mirror=job.data.mirror, cache=tmp_path, timeout_s=1)
    rows = list(csv.DictReader(line for line in open(EXAMPLE) if not line.startswith("#")))
    assert task.items.height == 8 == len(rows)
    for got, want in zip(task.items.iter_rows(named=True), rows):
        assert got["item_id"] == want["item_id"] and got["target"] == want["answer"]
        assert int(got["target"]) == int(want["a"]) + int(want["b"])  # the example's answers are right
        assert got["human_difficulty"] == float(want["human_rt_s"]) == got["rt_mean"]
        assert got["accuracy"] == float(want["accuracy"]) and got["n_trials"] == int(want["n_trials"])
    assert task.prompts()[0].startswith("What is 12 + 15?")
    assert task.score("12 + 15 = 27\nAnswer: 27", "27").correct


TRIALS = """item_id,question,answer,rt_ms,correct
q1,What is 2+2?,4,1000,1
q1,What is 2+2?,4,3000,1
q1,What is 2+2?,4,9000,0
q2,What is 7*8?,56,4000,1
q2,What is 7*8?,56,100,true
q2,What is 7*8?,56,6000,false
"""


def test_generic_trial_level_file_is_aggregated_like_every_task(tmp_path):
    path = write(tmp_path / "m" / "trials.csv", TRIALS)
    task = load_task(generic_cfg(path, rt_min=0.2), mirror=str(path.parent), cache=tmp_path, timeout_s=1)
    # independent computation: ms -> s, correct trials with rt >= 0.2 s
    rows = list(csv.DictReader(open(path)))
    for item in task.items.iter_rows(named=True):
        mine = [r for r in rows if r["item_id"] == item["item_id"]]
        ok = [r["correct"] in ("1", "true") for r in mine]
        kept = [float(r["rt_ms"]) / 1000 for r, c in zip(mine, ok) if c and float(r["rt_ms"]) >= 200]
        assert item["n_trials"] == len(mine) and item["accuracy"] == pytest.approx(sum(ok) / len(mine))
        assert item["rt_mean"] == pytest.approx(statistics.fmean(kept)) == item["human_difficulty"]
        assert item["rt_median"] == pytest.approx(statistics.median(kept))
    assert task.items["rt_mean"].to_list() == pytest.approx([2.0, 4.0])  # by hand: (1+3)/2; 0.1 s dropped
    assert task.prompts() == ["What is 2+2?", "What is 7*8?"]


def test_generic_without_human_columns_still_runs(tmp_path):
    path = write(tmp_path / "m" / "items.csv", "item_id,question,answer\nq1,1+1?,2\nq2,2+3?,5\n")
    task = load_task(generic_cfg(path), mirror=str(path.parent), cache=tmp_path, timeout_s=1)
    assert task.items["n_trials"].to_list() == [0, 0] and task.items["human_difficulty"].null_count() == 2


def test_generic_file_url_works_without_a_mirror(tmp_path, monkeypatch):
    monkeypatch.setenv("COGDISTILL_ALLOW_FILE_SOURCES", "1")  # a file:// origin in pytest's temp folder
    path = write(tmp_path / "mine" / "items.parquet", "")
    import polars as pl

    pl.DataFrame({"item_id": ["a", "b"], "question": ["x", "y"], "answer": [1, 2],
                  "accuracy": [0.5, 0.9], "n_trials": [10, 10]}).write_parquet(path)
    task = load_task(generic_cfg(path, measure="error_rate", url=path.as_uri()), mirror=None,
                     cache=tmp_path / "cache", timeout_s=1)
    assert task.items["human_difficulty"].to_list() == pytest.approx([0.5, 0.1])
    assert task.items["target"].to_list() == ["1", "2"]


@dataclass
class TaskConfigWithColumns(TaskConfig):
    """What TaskConfig looks like once it gets the proposed `columns` field."""
    columns: Dict[str, str] = field(default_factory=dict)


def test_generic_uses_a_columns_mapping_when_the_config_has_one(tmp_path):
    path = write(tmp_path / "m" / "theirs.csv", "stim,text,resp_correct,RT\ns1,What is 3+4?,7,1.5\ns2,What is 5+5?,10,2.5\n")
    cfg = generic_cfg(path, cls=TaskConfigWithColumns,
                      columns={"item_id": "stim", "question": "text", "answer": "resp_correct", "human_rt_s": "RT"})
    task = load_task(cfg, mirror=str(path.parent), cache=tmp_path, timeout_s=1)
    assert task.items["human_difficulty"].to_list() == [1.5, 2.5] and task.prompts()[0] == "What is 3+4?"
    cfg.columns["answer"] = "solution"
    with pytest.raises(TaskDataError, match=r"theirs.csv: `columns.answer: solution` names no column"):
        load_task(cfg, mirror=str(path.parent), cache=tmp_path, timeout_s=1)


@pytest.mark.parametrize("text, measure, message", [
    ("item_id,question,solution\nq1,a,1\n", "mean_rt", r"items.csv: missing column\(s\) \['answer'\]"),
    ("item_id,question,answer,rt_s,human_rt_s\nq1,a,1,2.0,2.0\n", "mean_rt", r"trial-level .*'rt_s'.* and item-level"),
    ("item_id,question,answer,rt_s,correct\nq1,a,1,fast,1\n", "mean_rt", r"items.csv: column 'rt_s' has non-numeric value 'fast'"),
    ("item_id,question,answer,rt_s,correct\nq1,a,1,2.0,maybe\n", "mean_rt", r"column 'correct' has 'maybe'"),
    ("item_id,question,answer,human_rt_s\nq1,a,1,2\nq1,a,1,3\n", "mean_rt", r"item 'q1' appears on several rows"),
    ("item_id,question,answer,accuracy\nq1,a,1,0.9\n", "mean_rt", r"missing column\(s\) \['human_rt_s'\]"),
    ("item_id,question,answer,accuracy\nq1,a,1,90\n", "error_rate", r"'accuracy' must lie in 0..1"),
    ("item_id,question,answer,rt_s\nq1,a,1,2\nq1,a,2,3\n", "mean_rt", r"item 'q1' has several values in 'answer'"),
])
def test_generic_bad_input_names_file_and_column(tmp_path, text, measure, message):
    path = write(tmp_path / "m" / "items.csv", text)
    with pytest.raises(TaskDataError, match=message):
        load_task(generic_cfg(path, measure=measure), mirror=str(path.parent), cache=tmp_path, timeout_s=1)


def test_generic_trials_with_rt_but_no_correct_column_leave_accuracy_null(tmp_path):
    path = write(tmp_path / "m" / "items.csv", "item_id,question,answer,rt_s\nq1,a,1,2.0\nq1,a,1,4.0\nq2,b,2,1.0\n")
    task = load_task(generic_cfg(path), mirror=str(path.parent), cache=tmp_path, timeout_s=1)
    assert task.items["rt_mean"].to_list() == [3.0, 1.0] and task.items["accuracy"].null_count() == 2
    assert task.items["n_trials"].to_list() == [2, 1]
