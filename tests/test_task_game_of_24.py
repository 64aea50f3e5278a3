"""Game of 24: the puzzle table (real file from the mirror, and hand-made ones), the rank selection,
and the scorer, checked against an independent brute-force solver."""

from __future__ import annotations

import hashlib
import itertools
from fractions import Fraction
from pathlib import Path

import pytest

from cogdistill.config.schema import DifficultyConfig, SourceConfig, TaskConfig
from cogdistill.registry import SCORERS
from cogdistill.stats.reliability import human_split_half
from cogdistill.tasks.game_of_24 import evaluate, score_24
from cogdistill.tasks.item_table import TaskDataError
from cogdistill.tasks.load import load_task
from helpers.data import real_mirror

HEADER = "Rank,Puzzles,AMT (s),Solved rate,1-sigma Mean (s),1-sigma STD (s)\n"


REAL_SHA = "b9f12b3e36d987a3c714c4cef17d89a137d7c59da26532fcfb93b4821d8111b5"  # conf/task/game-of-24.yaml


def config(measure="mean_rt", ranks=None, sha=REAL_SHA, mirror_path="game-of-24/24.csv") -> TaskConfig:
    return TaskConfig(name="game-of-24", kind="game_of_24", prompt="Use {numbers} to make 24.", scorer="game_of_24",
                      sources={"puzzles": SourceConfig(url="https://example.invalid/24.csv", sha256=sha,
                                                       mirror_path=mirror_path)},
                      difficulty=DifficultyConfig(measure=measure), ranks=ranks)


def load(cfg, mirror, tmp_path):
    return load_task(cfg, mirror=str(mirror), cache=tmp_path / "cache", timeout_s=5)


def small_mirror(tmp_path: Path, rows: str):
    """(mirror folder, the file's sha256)"""
    (tmp_path / "m" / "game-of-24").mkdir(parents=True)
    (tmp_path / "m" / "game-of-24" / "24.csv").write_text(HEADER + rows)
    return tmp_path / "m", hashlib.sha256((HEADER + rows).encode()).hexdigest()


ROWS = "1,1 1 4 6,4.4,99.20%,4.67,1.48\n2,3 3 8 8,50.0,40.00%,40,10\n3,1 2 3 4,6.0,95.50%,6,1\n"


def test_items_carry_solve_time_and_rate(tmp_path):
    mirror, sha = small_mirror(tmp_path, ROWS)
    task = load(config(sha=sha), mirror, tmp_path)
    rows = {r["item_id"]: r for r in task.items.iter_rows(named=True)}
    assert list(rows) == ["0001", "0002", "0003"]  # text ids that sort by rank
    assert rows["0002"]["target"] == "3 3 8 8" and rows["0002"]["human_difficulty"] == 50.0
    assert rows["0002"]["accuracy"] == pytest.approx(0.40)
    assert task.prompts()[1] == "Use 3 3 8 8 to make 24."
    assert task.trials.height == 0
    errors = load(config(measure="error_rate", sha=sha), mirror, tmp_path / "e")
    assert errors.items["human_difficulty"].to_list() == pytest.approx([1 - 0.992, 1 - 0.40, 1 - 0.955])


def test_rank_range_and_its_errors(tmp_path):
    mirror, sha = small_mirror(tmp_path, ROWS)
    assert load(config(ranks=[2, 3], sha=sha), mirror, tmp_path).items["item_id"].to_list() == ["0002", "0003"]
    with pytest.raises(TaskDataError, match=r"`ranks: \[3, 2\]` must be \[first, last\]"):
        load(config(ranks=[3, 2], sha=sha), mirror, tmp_path)
    with pytest.raises(TaskDataError, match=r"no puzzle .* has a rank in \[900, 1000\] \(ranks run 1..3\)"):
        load(config(ranks=[900, 1000], sha=sha), mirror, tmp_path)


def test_measures_that_need_trials_are_refused(tmp_path):
    with pytest.raises(TaskDataError, match=r"needs trial-level RTs.*one of \['mean_rt', 'error_rate'\]"):
        mirror, sha = small_mirror(tmp_path, ROWS)
        load(config(measure="median_rt", sha=sha), mirror, tmp_path)


@pytest.mark.parametrize("rows, needle", [
    ("x,1 1 4 6,4.4,99.20%,4.67,1.48\n", "line 2: column 'Rank' is not a number"),
    ("1,1 1 4,4.4,99.20%,4.67,1.48\n", "puzzle '1 1 4' is not four space-separated numbers"),
    ("1,1 1 4 6,4400,99.20%,4.67,1.48\n", "outside the plausible"),  # milliseconds read as seconds
])
def test_malformed_tables_name_the_problem(tmp_path, rows, needle):
    with pytest.raises(TaskDataError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        mirror, sha = small_mirror(tmp_path, rows)
        load(config(sha=sha), mirror, tmp_path)


@pytest.mark.parametrize("text, puzzle, answer, correct", [
    ("I try 4*6 first.\nAnswer: 4 * 6 * 1 * 1 = 24", "1 1 4 6", "4 * 6 * 1 * 1", True),
    ("Answer: 8 / (3 - 8 / 3) = 24", "3 3 8 8", "8 / (3 - 8 / 3)", True),  # exact: floats give 23.99...
    ("Answer: 6x4x1x1", "1 1 4 6", "6x4x1x1", True),
    ("Answer: (1 + 1) * 4 * 6 = 48", "1 1 4 6", "(1 + 1) * 4 * 6", False),  # wrong value
    ("Answer: 4 * 6 * 1 * 1 * 1", "1 1 4 6", "4 * 6 * 1 * 1 * 1", False),  # a number used twice
    ("Answer: 4 * 6 = 24", "1 1 4 6", None, False),  # not all four numbers: no full expression
    ("Answer: 1 / (1 - 1) + 4 * 6", "1 1 4 6", None, False),  # division by zero: no answer
    ("Answer: __import__('os').system('echo 24')", "1 1 4 6", None, False),  # never evaluated
])
def test_scorer(text, puzzle, answer, correct):
    scored = SCORERS.load("game_of_24")(text, puzzle)
    assert (scored.answer, scored.correct) == (answer, correct)
    if answer is not None:
        assert text[scored.start:].startswith(answer.split()[0])


def solve(numbers):
    """An independent brute force: every order, operator and bracketing, in exact fractions."""
    def combos(values):
        if len(values) == 1:
            yield values[0]
            return
        for i, j in itertools.permutations(range(len(values)), 2):
            rest = [v for k, v in enumerate(values) if k not in (i, j)]
            (a, ea), (b, eb) = values[i], values[j]
            options = [(a + b, f"({ea} + {eb})"), (a - b, f"({ea} - {eb})"), (a * b, f"({ea} * {eb})")]
            if b != 0:
                options.append((a / b, f"({ea} / {eb})"))
            for value in options:
                yield from combos(rest + [value])
    for value, expression in combos([(Fraction(n), str(n)) for n in numbers]):
        if value == 24:
            return expression
    return None


def test_every_hard_puzzle_has_a_solution_the_scorer_accepts(tmp_path):
    """The real table, ranks 901-1000 (Tree of Thoughts' test set): the brute force finds a
    solution for each, and the scorer accepts exactly that and rejects a near miss."""
    mirror = real_mirror()
    if mirror is None or not (mirror / "game-of-24" / "24.csv").is_file():
        pytest.skip("no data mirror with game-of-24/24.csv (set COGDISTILL_DATA_MIRROR)")
    task = load(config(ranks=[901, 1000]), mirror, tmp_path)
    assert task.items.height == 100 and task.items["item_id"][0] == "0901"
    assert human_split_half(task.trials, "mean_rt")["note"].startswith("no trial-level human data")
    for puzzle in task.items["target"]:
        expression = solve([int(n) for n in puzzle.split()])
        assert expression is not None, puzzle
        assert evaluate(expression)[0] == 24
        assert score_24(f"Answer: {expression} = 24", puzzle).correct, (puzzle, expression)
        assert not score_24(f"Answer: ({expression}) + 1 - 1 * 1", puzzle).correct  # extra numbers


def test_the_whole_table_matches_its_source_notes(tmp_path):
    mirror = real_mirror()
    if mirror is None or not (mirror / "game-of-24" / "24.csv").is_file():
        pytest.skip("no data mirror with game-of-24/24.csv (set COGDISTILL_DATA_MIRROR)")
    items = load(config(), mirror, tmp_path).items
    assert items.height == 1362 and items["target"].n_unique() == 1362
    assert (items["rt_mean"].min(), items["rt_mean"].max()) == (4.4, 207.89)
    assert items["rt_mean"].median() == pytest.approx(8.28)
    assert (items["accuracy"].min(), items["accuracy"].max()) == pytest.approx((0.207, 0.996))
