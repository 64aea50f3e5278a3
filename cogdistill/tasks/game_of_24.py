"""Game of 24 (Tree of Thoughts' 4nums.com table): four numbers, reach 24 with + - * / using each
number once. Puzzle-level data only (average solve time and solve rate per puzzle; no trials, so
the split-half reliability of human difficulty is undefined, and says so).

The scorer parses the model's expression itself (exact rational arithmetic, a small stack-based parser
over digits, + - * / and parentheses, at any nesting depth): model text is never evaluated by Python.
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import polars as pl

from cogdistill.config.schema import TaskConfig
from cogdistill.tasks.item_table import TaskDataError, check_rt_units, empty_trials, read_csv, require_columns
from cogdistill.tasks.scorers import Scored

COLUMNS = ["Rank", "Puzzles", "AMT (s)", "Solved rate"]
MEASURES = ("mean_rt", "error_rate")  # the file has mean solve times and solve rates, no trials


def build_items(paths: Dict[str, Path], cfg: TaskConfig) -> Tuple[pl.DataFrame, pl.DataFrame]:
    path = paths["puzzles"]
    raw = read_csv(path, as_text=True)
    require_columns(raw, COLUMNS, path)
    if cfg.difficulty.measure not in MEASURES:
        raise TaskDataError(f"task '{cfg.name}': `difficulty.measure: {cfg.difficulty.measure}` needs trial-level "
                            f"RTs, and {path} has one average per puzzle; use one of {list(MEASURES)}.")
    rows = raw.select(
        rank=pl.col("Rank").str.strip_chars().cast(pl.Int64, strict=False),
        numbers=pl.col("Puzzles").str.strip_chars(),
        rt=pl.col("AMT (s)").str.strip_chars().cast(pl.Float64, strict=False),
        solved=pl.col("Solved rate").str.strip_chars().str.strip_suffix("%").cast(pl.Float64, strict=False) / 100.0,
    )
    for column, what in (("rank", "Rank"), ("rt", "AMT (s)"), ("solved", "Solved rate")):
        if rows[column].null_count():
            row = rows.with_row_index("_row").filter(pl.col(column).is_null())["_row"][0] + 2
            raise TaskDataError(f"{path}: line {row}: column '{what}' is not a number; the file is not the "
                                "pinned version: check `sources` in the task config.")
    bad = [n for n in rows["numbers"] if not re.fullmatch(r"\d{1,2} \d{1,2} \d{1,2} \d{1,2}", n)]
    if bad:
        raise TaskDataError(f"{path}: puzzle {bad[0]!r} is not four space-separated numbers.")
    check_rt_units(rows["rt"], cfg.difficulty, path, what="puzzles (AMT (s))")
    rows = _select_ranks(rows, cfg, path)
    measure = {"mean_rt": pl.col("rt"), "error_rate": 1.0 - pl.col("solved")}[cfg.difficulty.measure]
    items = rows.select(
        item_id=pl.format("{}", pl.col("rank").cast(pl.Utf8).str.zfill(4)),  # text ids sort by rank
        target=pl.col("numbers"),
        n_trials=pl.lit(0, pl.UInt32), n_rt_trials=pl.lit(0, pl.UInt32),
        accuracy=pl.col("solved"), rt_mean=pl.col("rt"), rt_median=pl.lit(None, pl.Float64),
        log_rt_mean=pl.lit(None, pl.Float64), human_difficulty=measure,
        numbers=pl.col("numbers"), rank=pl.col("rank"),
    )
    return items, empty_trials()


def _select_ranks(rows: pl.DataFrame, cfg: TaskConfig, path: Path) -> pl.DataFrame:
    """`ranks: [first, last]` (inclusive) keeps a rank range; Tree of Thoughts evaluates 901-1000."""
    if cfg.ranks is None:
        return rows
    ranks = list(cfg.ranks)
    if len(ranks) != 2 or not 1 <= ranks[0] <= ranks[1]:
        raise TaskDataError(f"task '{cfg.name}': `ranks: {ranks}` must be [first, last] with 1 <= first <= last, "
                            "e.g. ranks: [901, 1000].")
    kept = rows.filter(pl.col("rank").is_between(ranks[0], ranks[1]))
    if kept.height == 0:
        raise TaskDataError(f"task '{cfg.name}': no puzzle of {path} has a rank in {ranks} (ranks run "
                            f"{rows['rank'].min()}..{rows['rank'].max()}).")
    return kept


# --- the scorer ---------------------------------------------------------------------------------

_SPAN = re.compile(r"[\d(][\d\s()+\-*/×÷xX]*[\d)]")
_TOKEN = re.compile(r"\s*(\d+|[()+\-*/])")


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


class _Parser:
    """expr := term (('+'|'-') term)*; term := atom (('*'|'/') atom)*; atom := int | '(' expr ')'.

    Evaluated with explicit stacks (shunting-yard), not recursion: a model may nest parentheses
    hundreds deep, which would exhaust Python's recursion limit inside the scorer."""

    def __init__(self, text: str):
        self.tokens: List[str] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m:
                if text[pos:].strip():
                    raise ValueError(text[pos:])
                break
            self.tokens.append(m.group(1))
            pos = m.end()
        self.numbers: List[int] = []

    def parse(self) -> Fraction:
        values: List[Fraction] = []
        ops: List[str] = []  # operators and open parentheses

        def apply() -> None:
            op, right = ops.pop(), values.pop()
            left = values.pop()
            values.append(left + right if op == "+" else left - right if op == "-" else
                          left * right if op == "*" else left / right)  # ZeroDivisionError: no answer

        operand = True  # an atom is expected next (else an operator or ')')
        for token in self.tokens:
            if operand:
                if token == "(":
                    ops.append(token)
                    continue
                if not token.isdigit():
                    raise ValueError(token)
                self.numbers.append(int(token))  # ValueError past Python's int digit limit: no answer
                values.append(Fraction(self.numbers[-1]))
                operand = False
            elif token == ")":
                while ops and ops[-1] != "(":
                    apply()
                if not ops:
                    raise ValueError(")")
                ops.pop()
            elif token in _PRECEDENCE:
                while ops and ops[-1] != "(" and _PRECEDENCE[ops[-1]] >= _PRECEDENCE[token]:
                    apply()  # left to right within one precedence level
                ops.append(token)
                operand = True
            else:
                raise ValueError(token)
        if operand:
            raise ValueError("end")
        while ops:
            if ops[-1] == "(":
                raise ValueError("(")
            apply()
        return values[0]


def evaluate(expression: str) -> Tuple[Fraction, List[int]]:
    """(exact value, the numbers used) of an arithmetic expression; ValueError/ZeroDivisionError if none."""
    parser = _Parser(expression.replace("×", "*").replace("÷", "/").replace("x", "*").replace("X", "*"))
    return parser.parse(), parser.numbers


def score_24(text: str, target: str) -> Scored:
    """The last expression in the text that uses three operators: correct when it uses the puzzle's four
    numbers exactly once each and equals 24 (a trailing `= 24` is allowed and ignored)."""
    puzzle = sorted(int(n) for n in str(target).split())
    for match in reversed(list(_SPAN.finditer(text))):
        span = match.group(0)
        if sum(span.count(op) for op in "+-*/×÷xX") < 3:
            continue
        try:
            value, used = evaluate(span)
        except (ValueError, ZeroDivisionError):
            continue
        return Scored(answer=re.sub(r"\s+", " ", span.strip()), start=match.start(),
                      correct=sorted(used) == puzzle and value == 24)
    return Scored(answer=None, start=None, correct=False)
