"""Tower of London and CRT (sro-tol-crt): solver, scorers, item tables vs the raw files, bad input."""

from __future__ import annotations

import ast
import csv
import gzip
import io
import json
import statistics
from collections import defaultdict
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from cogdistill.config.schema import CONF_DIR, TaskConfig
from cogdistill.tasks.load import load_task
from cogdistill.tasks.crt import build_items as build_crt, is_intuitive, render_question, score_answer
from cogdistill.tasks.item_table import TaskDataError
from cogdistill.tasks.tower_of_london import (
    START, apply_move, build_items as build_tol, decode, legal_moves, parse_plan, score_plan, simulate, solve,
)
from helpers.data import real_mirror

needs_mirror = pytest.mark.skipif(real_mirror() is None, reason="real human data mirror (../shared/reference-data) absent")

# The 12 test goals of the source (column `target`, problem_id 0..11) and their min_moves.
GOALS = [
    [[0, 0, 0], [3, 1], [2]], [[1, 0, 0], [2, 0], [3]], [[1, 3, 0], [2, 0], [0]], [[1, 0, 0], [2, 3], [0]],
    [[2, 1, 0], [3, 0], [0]], [[3, 0, 0], [2, 1], [0]], [[2, 3, 0], [0, 0], [1]], [[0, 0, 0], [2, 3], [1]],
    [[2, 1, 3], [0, 0], [0]], [[2, 3, 1], [0, 0], [0]], [[3, 1, 0], [2, 0], [0]], [[3, 0, 0], [2, 0], [1]],
]
MIN_MOVES = [2, 2, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5]


def task_config(name: str) -> TaskConfig:
    raw = OmegaConf.load(CONF_DIR / "task" / f"{name}.yaml")
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TaskConfig), raw))


def target_for(goal_codes) -> str:
    goal = decode(goal_codes)
    return json.dumps({"start": [list(p) for p in START], "goal": [list(p) for p in goal],
                       "min_moves": len(solve(START, goal))})


# --------------------------------------------------------------------------------------------
# Tower of London solver

def test_start_board_is_green_under_red_then_blue():
    # source: [[1,2,0],[3,0],[0]], balls 1/2/3 = Green/Red/Blue, lowest ball first
    assert START == (("green", "red"), ("blue",), ())


def test_hand_checked_solutions():
    # problem 0, goal [[0,0,0],[3,1],[2]] = peg 2 blue+green, peg 3 red:
    #   red 1->3 (peg 3 now full), green 1->2 (on blue)  -> 2 moves
    assert solve(START, decode(GOALS[0])) == [("red", 1, 3), ("green", 1, 2)]
    # problem 1, goal peg 1 green, peg 2 red, peg 3 blue: blue 2->3, red 1->2 (either order works)
    assert len(solve(START, decode(GOALS[1]))) == 2
    # problem 2, goal peg 1 green+blue, peg 2 red: red 1->3, blue 2->1, red 3->2 -> 3 moves
    # (blue cannot go straight onto green while red sits on it, and peg 2 holds blue)
    assert len(solve(START, decode(GOALS[2]))) == 3
    assert simulate(START, [("red", 1, 3), ("blue", 2, 1), ("red", 3, 2)]) == (decode(GOALS[2]), True)


def test_bfs_min_moves_match_the_data():
    assert [len(solve(START, decode(g))) for g in GOALS] == MIN_MOVES
    for g in GOALS:  # every BFS plan is legal and reaches its goal
        assert simulate(START, solve(START, decode(g))) == (decode(g), True)


def test_state_space_has_the_36_classic_configurations():
    seen, frontier = {START}, [START]
    while frontier:
        state = frontier.pop()
        for move in legal_moves(state):
            nxt = apply_move(state, move)
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert len(seen) == 36


def test_illegal_moves_are_refused():
    assert apply_move(START, ("green", 1, 3)) is None  # green is under red
    assert apply_move(START, ("red", 1, 1)) is None  # same peg
    assert apply_move(START, ("blue", 3, 1)) is None  # blue is not on peg 3
    full3 = apply_move(START, ("red", 1, 3))
    assert apply_move(full3, ("blue", 2, 3)) is None  # peg 3 holds one ball
    with pytest.raises(ValueError):
        decode([[1, 0, 2], [3, 0], [0]])  # a ball floating above an empty slot


# --------------------------------------------------------------------------------------------
# Tower of London scorer

T0 = target_for(GOALS[0])


def test_plan_right_and_start_offset():
    text = "Red must go first.\nAnswer:\nmove red from peg 1 to peg 3\nmove green from peg 1 to peg 2\n"
    scored = score_plan(text, T0)
    assert scored.correct and scored.answer == "red 1->3; green 1->2"
    assert text[scored.start:].startswith("Answer:")


def test_plan_explanation_after_the_answer_adds_no_moves():
    text = ("Answer:\nmove red from peg 1 to peg 3\n\nmove green from peg 1 to peg 2\n\n"
            "This works: if I first move green from peg 1 to peg 2 it is illegal.")
    assert score_plan(text, T0).answer == "red 1->3; green 1->2" and score_plan(text, T0).correct
    # moves on the marker's own line count too
    assert score_plan("Answer: move red from peg 1 to peg 3, move green from peg 1 to peg 2", T0).correct
    assert score_plan("Answer: First move red from peg 1 to peg 3, then move green from peg 1 to peg 2.", T0).correct


def test_plan_non_optimal_but_legal_counts_as_correct():
    text = "Answer:\n1. move red from peg 1 to peg 2\n2. move red from peg 2 to peg 3\n3. move green from peg 1 to peg 2"
    assert score_plan(text, T0).correct


@pytest.mark.parametrize("moves", [
    "move green from peg 1 to peg 2\nmove red from peg 1 to peg 3",  # green is under red
    "move red from peg 1 to peg 3\nmove blue from peg 2 to peg 3",  # peg 3 already full
    "move red from peg 1 to peg 3",  # legal but stops short of the goal
    "move red from peg 1 to peg 3\nmove green from peg 1 to peg 2\nmove green from peg 2 to peg 1",  # overshoots
])
def test_plan_wrong(moves):
    scored = score_plan("Answer:\n" + moves, T0)
    assert scored.answer is not None and not scored.correct


def test_plan_no_answer():
    assert score_plan("I would move the red ball somewhere.", T0).answer is None
    assert score_plan("", T0).start is None


def test_plan_last_answer_block_wins():
    right = "move red from peg 1 to peg 3\nmove green from peg 1 to peg 2"
    wrong = "move red from peg 1 to peg 2\nmove green from peg 1 to peg 3"
    text = f"Draft answer:\n{wrong}\nHmm, that is wrong.\nFinal answer:\n{right}"
    scored = score_plan(text, T0)
    assert scored.correct and text[scored.start:].startswith("Final answer:")
    assert not score_plan(f"Answer:\n{right}\nWait, no.\nAnswer:\n{wrong}", T0).correct
    # a trailing "Answer:" with no moves after it does not hide the block before it
    assert score_plan(f"Answer:\n{right}\n\nAnswer: as above.", T0).correct


def test_plan_without_marker_takes_the_last_block_of_move_lines():
    text = ("Try: move green from peg 1 to peg 2? Not legal.\n\nPlan:\n- move red from peg 1 to peg 3\n"
            "- Move the Green ball from peg 1 to peg 2.\n")
    moves, start = parse_plan(text)
    assert moves == [("red", 1, 3), ("green", 1, 2)] and text[start:].startswith("- move red")
    assert score_plan(text, T0).correct


# --------------------------------------------------------------------------------------------
# CRT scorer

@pytest.mark.parametrize("text,target,answer", [
    ("Each elf wraps one toy per hour... so 3.\nAnswer: 3 elves", "3", "3"),
    ("**Answer:** $20", "20", "20"),
    ("He made 10 + 10 = 20 dollars.\nAnswer: 20 dollars", "20", "20"),
    ("Together they drink 1/6 + 1/12 = 1/4 per day.\n\nFinal answer: **4 days**", "4", "4"),
    ("Answer:\n29 students", "29", "29"),
    ("Answer: twenty-nine", "29", "29"),
    ("The answer is 15 medals.", "15", "15"),
    ("\\boxed{15}", "15", "15"),
    ("8000 * 0.5 * 1.75 = 7000 < 8000.\nAnswer: (c) has lost money", "c", "c"),
    ("Answer: C", "c", "c"),
    ("Answer: He has lost money (c)", "c", "c"),
])
def test_crt_right(text, target, answer):
    scored = score_answer(text, target)
    assert scored.correct and scored.answer == answer
    assert text[scored.start:].lower().lstrip("*").startswith(("answer", "final", "the answer", "\\boxed"))


@pytest.mark.parametrize("text,target", [
    ("Answer: 30 students", "29"), ("Answer: 10 dollars", "20"), ("Answer: (b)", "c"),
    ("Answer: 9 days", "4"), ("Answer: a loss", "c"),
])
def test_crt_wrong(text, target):
    assert not score_answer(text, target).correct


def test_crt_no_answer():
    assert score_answer("Thirty? Or twenty-nine? Hard to say.", "29") == score_answer("", "29")
    assert score_answer("no idea", "29").answer is None and score_answer("no idea", "29").start is None


def test_crt_last_answer_wins():
    text = "At first glance: Answer: 30. But the class counts Jerry once.\nAnswer: 29"
    scored = score_answer(text, "29")
    assert scored.correct and scored.start == text.rindex("Answer")
    assert not score_answer("Answer: 29\nHmm, actually\nAnswer: 30", "29").correct
    # the final "Answer:" line beats an "answer is" inside it
    assert score_answer("Answer: 20 (the intuitive answer is 10)", "20").correct


def test_is_intuitive():
    assert is_intuitive("It looks like 30. Answer: 30 students", "30")
    assert not is_intuitive("Answer: 29", "30")
    assert is_intuitive("Answer: $10", "10") and not is_intuitive("Answer: 20", "10")
    assert is_intuitive("Answer: (b) is ahead of where he began", "b")
    assert not is_intuitive("no final answer", "6")


# --------------------------------------------------------------------------------------------
# Real data: item tables against an independent csv/gzip computation

def _rows(path: Path):
    with gzip.open(path, "rt", newline="") as fh:
        return list(csv.DictReader(fh))


@needs_mirror
def test_real_tower_of_london_matches_independent_computation(tmp_path):
    task = load_task(task_config("tower-of-london"), mirror=str(real_mirror()), cache=tmp_path, timeout_s=1)
    assert task.items.height == 12
    rows = [r for r in _rows(real_mirror() / "sro-tol-crt" / "tower_of_london.csv.gz") if r["exp_stage"] == "test"]
    rows.sort(key=lambda r: (r["worker_id"], int(r["time_elapsed"])))
    times, correct, targets, first_click = defaultdict(list), defaultdict(list), {}, defaultdict(dict)
    current = None
    for r in rows:
        if r["trial_id"] == "feedback":
            pid = current[1]
            assert current[0] == r["worker_id"]
            correct[pid].append(int(float(r["correct"])))
            if r["correct"] in ("1", "1.0"):
                times[pid].append(float(r["problem_time"]) / 1000)
        else:
            pid = int(float(r["problem_id"]))
            current = (r["worker_id"], pid)
            targets[pid] = (ast.literal_eval(r["target"]), int(float(r["min_moves"])))
            if r["trial_id"] == "to_hand":
                first_click[pid].setdefault(r["worker_id"], int(r["rt"]) / 1000)
    assert [targets[p][0] for p in range(12)] == GOALS and [targets[p][1] for p in range(12)] == MIN_MOVES
    for row in task.items.iter_rows(named=True):
        p = row["problem_id"]
        assert row["item_id"] == f"tol{p:02d}" and row["min_moves"] == MIN_MOVES[p]
        assert row["n_trials"] == len(correct[p]) == 522
        assert row["accuracy"] == pytest.approx(statistics.fmean(correct[p]))
        assert row["rt_mean"] == pytest.approx(statistics.fmean(times[p]))
        assert row["rt_median"] == pytest.approx(statistics.median(times[p]))
        assert row["human_difficulty"] == row["rt_mean"]
        assert row["first_move_s_median"] == pytest.approx(statistics.median(first_click[p].values()))
        assert max(times[p]) < 20  # the ~20 s cap: correct problems are all faster
        assert json.loads(row["target"])["goal"] == [list(peg) for peg in decode(GOALS[p])]
        assert score_plan("Answer:\n" + row["solution"], row["target"]).correct
    # SOURCE.md: accuracy runs from 0.39 to 0.97
    assert min(task.items["accuracy"]) == pytest.approx(0.39, abs=0.01)
    assert max(task.items["accuracy"]) == pytest.approx(0.97, abs=0.01)
    assert "Peg 3 (holds up to 1 ball): empty" in task.prompts()[0]


@needs_mirror
def test_real_crt_matches_independent_computation(tmp_path):
    task = load_task(task_config("crt"), mirror=str(real_mirror()), cache=tmp_path, timeout_s=1)
    assert task.items.height == 6
    rows = _rows(real_mirror() / "sro-tol-crt" / "cognitive_reflection_survey.csv.gz")
    by_q = defaultdict(list)
    for r in rows:
        by_q[int(r["question_num"])].append(r)
    assert sorted(by_q) == [2, 3, 4, 5, 6, 7]
    for row in task.items.iter_rows(named=True):
        q = by_q[row["question_num"]]
        acc = statistics.fmean(float(r["correct"]) for r in q)
        assert row["n_trials"] == len(q) == 522 and row["accuracy"] == pytest.approx(acc)
        assert row["human_difficulty"] == pytest.approx(1 - acc) and row["rt_mean"] is None
        assert row["target"] == q[0]["correct_response"] and row["intuitive_response"] == q[0]["intuitive_response"]
        assert "<" not in row["question"] and score_answer(f"Answer: {row['target']}", row["target"]).correct
        assert is_intuitive(f"Answer: {row['intuitive_response']}", row["intuitive_response"])
        # the data's own grading agrees with the scorer on every human response
        for r in q:
            assert score_answer(f"Answer: {r['response']}", row["target"]).correct == (r["correct"] in ("1", "1.0"))
    assert [round(a, 2) for a in task.items["accuracy"]] == [0.84, 0.42, 0.48, 0.37, 0.43, 0.59]
    simon = task.items.filter(task.items["item_id"] == "crt7")["question"][0]
    assert "(c) has lost money." in simon and simon.endswith("Answer: _____ (enter the letter)")


# --------------------------------------------------------------------------------------------
# Bad input

TOL_HEADER = ["worker_id", "time_elapsed", "exp_stage", "trial_id", "problem_id", "target", "min_moves",
              "problem_time", "correct", "rt", "current_position"]


def _write_gz(path: Path, header, rows) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(gzip.compress(buf.getvalue().encode()))
    return path


def _tol_rows(target="[[0, 0, 0], [3, 1], [2]]", min_moves="2.0"):
    return [
        ["s1", 100, "test", "to_hand", "0", target, min_moves, "", "", 900, "[[1, 0, 0], [3, 0], [0]]"],
        ["s1", 200, "test", "to_board", "0", target, min_moves, "", "", 500, "[[1, 0, 0], [3, 0], [2]]"],
        ["s1", 300, "test", "to_hand", "0", target, min_moves, "", "", 400, "[[0, 0, 0], [3, 0], [2]]"],
        ["s1", 400, "test", "to_board", "0", target, min_moves, "", "", 300, "[[0, 0, 0], [3, 1], [2]]"],
        ["s1", 500, "test", "feedback", "", "", min_moves, "2100.0", "1.0", "", ""],
    ]


def test_tol_synthetic_file_builds(tmp_path):
    path = _write_gz(tmp_path / "tol.csv.gz", TOL_HEADER, _tol_rows())
    items, trials = build_tol({"trials": path}, task_config("tower-of-london"))
    row = items.row(0, named=True)
    assert trials["participant"].to_list() == ["s1"] and trials["keep"].to_list() == [True]
    assert row["item_id"] == "tol00" and row["rt_mean"] == pytest.approx(2.1) and row["accuracy"] == 1.0
    assert row["first_move_s_median"] == pytest.approx(0.9)


def test_tol_missing_column_is_named(tmp_path):
    header = [c if c != "problem_time" else "solve_time" for c in TOL_HEADER]
    path = _write_gz(tmp_path / "tol.csv.gz", header, _tol_rows())
    with pytest.raises(TaskDataError, match=r"tol\.csv\.gz: missing column\(s\) \['problem_time'\]"):
        build_tol({"trials": path}, task_config("tower-of-london"))


def test_tol_bad_target_and_min_moves_are_reported(tmp_path):
    path = _write_gz(tmp_path / "tol.csv.gz", TOL_HEADER, _tol_rows(target="[[1, 2], [3]]"))
    with pytest.raises(TaskDataError, match=r"tol\.csv\.gz: column 'target' has '\[\[1, 2\], \[3\]\]'"):
        build_tol({"trials": path}, task_config("tower-of-london"))
    path = _write_gz(tmp_path / "tol2.csv.gz", TOL_HEADER, _tol_rows(min_moves="3.0"))
    with pytest.raises(TaskDataError, match=r"tol2\.csv\.gz: problem_id 0: column 'min_moves' says 3 .* has 2 moves"):
        build_tol({"trials": path}, task_config("tower-of-london"))


def test_tol_feedback_without_moves_is_reported(tmp_path):
    rows = _tol_rows()
    rows[-1][1] = 50  # the feedback row now comes before any move row of its worker
    path = _write_gz(tmp_path / "tol.csv.gz", TOL_HEADER, rows)
    with pytest.raises(TaskDataError, match=r"tol\.csv\.gz: column 'problem_id'"):
        build_tol({"trials": path}, task_config("tower-of-london"))


def test_crt_missing_column_is_named(tmp_path):
    header = ["question_num", "text", "options", "intuitive_response", "correct", "worker_id", "response"]
    path = _write_gz(tmp_path / "crt.csv.gz", header, [[2, "Q?", "", "6", "1.0", "s1", "3"]])
    with pytest.raises(TaskDataError, match=r"crt\.csv\.gz: missing column\(s\) \['correct_response'\]"):
        build_crt({"trials": path}, task_config("crt"))


def test_crt_bad_options_cell_is_reported(tmp_path):
    header = ["question_num", "text", "options", "correct_response", "intuitive_response", "correct", "worker_id"]
    path = _write_gz(tmp_path / "crt.csv.gz", header, [[7, "Q?", "[{'text': broken", "c", "b", "1.0", "s1"]])
    with pytest.raises(TaskDataError, match=r"crt\.csv\.gz: column 'options'"):
        build_crt({"trials": path}, task_config("crt"))


def test_render_question_strips_html():
    text = "How many? <br><br><strong>Answer</strong>: _____ elves"
    assert render_question(text, "") == "How many?\n\nAnswer: _____ elves"
