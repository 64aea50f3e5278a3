"""Tower of London (sro-tol-crt): 12 test problems, per-problem solution time and accuracy.

Board encoding (expfactory `tower_of_london`, the source's own): three pegs holding up to 3, 2
and 1 balls; each peg is listed bottom to top; balls 1, 2, 3 are green, red, blue
(`colors = ['Green', 'Red', 'Blue']` in the experiment's script); 0 is an empty slot.
Every problem starts from [[1,2,0],[3,0],[0]]: peg 1 green (bottom) and red, peg 2 blue.

A model answers with one move per line, "move <colour> from peg <i> to peg <j>", after a final
"Answer:" line. `score_plan` simulates the moves: correct iff every move is legal and the final
board is the goal. Optimality is NOT required (a longer legal solution counts as correct, as
for the human participants, who only had to reach the goal within about 20 s). Participant ids:
`worker_id`.
"""

from __future__ import annotations

import json
import re
from collections import deque
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import polars as pl

from cogdistill.config.schema import TaskConfig
from cogdistill.tasks.item_table import TaskDataError, item_table, read_csv, require_columns, trial_frame
from cogdistill.tasks.scorers import Scored

CAPACITY = (3, 2, 1)
COLOURS = ("green", "red", "blue")  # ball 1, 2, 3 in the source's encoding
START_CODES = [[1, 2, 0], [3, 0], [0]]

State = Tuple[Tuple[str, ...], ...]  # per peg, bottom to top
Move = Tuple[str, int, int]  # (colour, from peg, to peg), pegs 1-based


def decode(codes: Sequence[Sequence[int]]) -> State:
    """The source's [[1,2,0],[3,0],[0]] -> (('green','red'), ('blue',), ())."""
    if len(codes) != 3 or any(len(peg) != cap for peg, cap in zip(codes, CAPACITY)):
        raise ValueError(f"board {codes!r} does not have pegs of sizes {CAPACITY}")
    state = []
    for peg in codes:
        balls = [int(b) for b in peg]
        filled = [b for b in balls if b != 0]
        if balls[: len(filled)] != filled or any(b not in (1, 2, 3) for b in filled):
            raise ValueError(f"board {codes!r}: balls must be 1..3 and sit at the bottom of each peg")
        state.append(tuple(COLOURS[b - 1] for b in filled))
    if sorted(c for peg in state for c in peg) != sorted(COLOURS):
        raise ValueError(f"board {codes!r} does not hold each ball exactly once")
    return tuple(state)


START: State = decode(START_CODES)


def apply_move(state: State, move: Move) -> Optional[State]:
    """The board after `move`, or None when the move is illegal."""
    colour, src, dst = move
    if not (1 <= src <= 3 and 1 <= dst <= 3) or src == dst:
        return None
    pegs = [list(p) for p in state]
    if not pegs[src - 1] or pegs[src - 1][-1] != colour or len(pegs[dst - 1]) >= CAPACITY[dst - 1]:
        return None
    pegs[dst - 1].append(pegs[src - 1].pop())
    return tuple(tuple(p) for p in pegs)


def legal_moves(state: State) -> List[Move]:
    return [(state[s][-1], s + 1, d + 1) for s in range(3) for d in range(3)
            if s != d and state[s] and len(state[d]) < CAPACITY[d]]


def solve(start: State, goal: State) -> List[Move]:
    """A shortest move sequence from start to goal (breadth-first search; 36 states)."""
    previous: Dict[State, Optional[Tuple[State, Move]]] = {start: None}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        if state == goal:
            path: List[Move] = []
            while previous[state] is not None:
                state, move = previous[state]  # type: ignore[misc]
                path.append(move)
            return path[::-1]
        for move in legal_moves(state):
            nxt = apply_move(state, move)
            if nxt not in previous:
                previous[nxt] = (state, move)  # type: ignore[assignment]
                queue.append(nxt)  # type: ignore[arg-type]
    raise ValueError(f"goal {goal} is unreachable from {start}")


def simulate(start: State, moves: Sequence[Move]) -> Tuple[State, bool]:
    """(final board, all moves legal); stops at the first illegal move."""
    state = start
    for move in moves:
        nxt = apply_move(state, move)
        if nxt is None:
            return state, False
        state = nxt
    return state, True


def describe(state: State) -> str:
    lines = []
    for i, (peg, cap) in enumerate(zip(state, CAPACITY), start=1):
        room = f"holds up to {cap} ball{'s' if cap > 1 else ''}"
        balls = ", ".join(peg) if peg else "empty"
        order = " (bottom to top)" if len(peg) > 1 else ""
        lines.append(f"Peg {i} ({room}): {balls}{order}")
    return "\n".join(lines)


def format_moves(moves: Sequence[Move]) -> str:
    return "\n".join(f"move {c} from peg {s} to peg {d}" for c, s, d in moves)


# ---------------------------------------------------------------------------------------------
# Scorer

_MOVE = re.compile(
    r"(?i)\bmove\s+(?:the\s+)?(green|red|blue)(?:\s+ball)?\s+from\s+peg\s*([1-3])\s+(?:to|onto)\s+peg\s*([1-3])\b"
)
_ANSWER = re.compile(r"(?im)\b(?:final\s+)?answer\s*\**\s*:")
# a line that is only a move, maybe numbered or bulleted: "1. move red from peg 1 to peg 3"
_MOVE_LINE = re.compile(
    r"(?im)^[ \t>*\-•]*(?:(?:step\s*)?\d+[.):]\s*)?[*`]*" + _MOVE.pattern[4:] + r"[*`.;,]*[ \t]*$"
)


# what may surround the moves on a move line: numbering, bullets, separators
_FILLER = re.compile(r"(?i)\b(?:step|then|and)\b|[\s\d.,;:()*`>\-•→]+")


def _moves_in(text: str) -> List[Tuple[Move, int]]:
    return [((m.group(1).lower(), int(m.group(2)), int(m.group(3))), m.start()) for m in _MOVE.finditer(text)]


def _moves_after(text: str) -> List[Move]:
    """The move-only lines right after the marker (its own line included), up to the first other
    non-blank line: an explanation after the plan adds no moves. Without move-only lines, the
    moves named on the answer's first non-blank line."""
    moves: List[Move] = []
    for line in text.split("\n"):
        found = [m for m, _ in _moves_in(line)]
        if found and not _FILLER.sub("", _MOVE.sub("", line)):
            moves += found
        elif moves and line.strip(" \t*`-"):
            break
        elif found:  # prose that mentions moves before the plan
            continue
    if not moves:  # "Answer: first move red from peg 1 to peg 3, then ...": the answer line's moves
        first = next((line for line in text.split("\n") if line.strip()), "")
        moves = [m for m, _ in _moves_in(first)]
    return moves


def parse_plan(text: str) -> Tuple[Optional[List[Move]], Optional[int]]:
    """The final move sequence and its offset in `text`.

    The move lines right after the last "Answer:" marker that is followed by at least one move;
    without such a marker, the last block of consecutive move-only lines. (None, None) when
    neither exists.
    """
    for marker in reversed(list(_ANSWER.finditer(text))):
        moves = _moves_after(text[marker.end():])
        if moves:
            return moves, marker.start()
    blocks: List[Tuple[int, List[Move]]] = []
    last_end = -2
    for m in _MOVE_LINE.finditer(text):
        move = (m.group(1).lower(), int(m.group(2)), int(m.group(3)))
        # consecutive: only whitespace between this line and the previous move line
        if blocks and text[last_end:m.start()].strip() == "":
            blocks[-1][1].append(move)
        else:
            blocks.append((m.start(), [move]))
        last_end = m.end()
    if blocks:
        start, moves = blocks[-1]
        return moves, start
    return None, None


def _state(obj) -> State:
    return tuple(tuple(str(c).lower() for c in peg) for peg in obj)


def score_plan(text: str, target: str) -> Scored:
    """Correct iff the final move sequence is legal from `start` and ends on `goal` (any length).

    target: JSON {"start": [[...], [...], [...]], "goal": ..., "min_moves": n}, pegs bottom to top
    as colour names. The answer string is the parsed plan, e.g. "red 1->3; green 1->2".
    """
    moves, start = parse_plan(text)
    if moves is None:
        return Scored(answer=None, start=None, correct=False)
    spec = json.loads(target)
    final, legal = simulate(_state(spec["start"]), moves)
    answer = "; ".join(f"{c} {s}->{d}" for c, s, d in moves)
    return Scored(answer=answer, start=start, correct=legal and final == _state(spec["goal"]))


# ---------------------------------------------------------------------------------------------
# Items and human data

def _board(cell: str, path: Path) -> State:
    try:
        return decode(json.loads(cell))
    except (ValueError, TypeError) as exc:
        raise TaskDataError(f"{path}: column 'target' has {cell!r}, not a Tower of London board ({exc}).") from exc


def build_items(paths: Dict[str, Path], cfg: TaskConfig) -> Tuple[pl.DataFrame, pl.DataFrame]:
    path = paths["trials"]
    raw = read_csv(path, schema_overrides={"worker_id": pl.Utf8})  # polars decompresses .csv.gz itself
    require_columns(raw, ["worker_id", "time_elapsed", "exp_stage", "trial_id", "problem_id", "target",
                          "min_moves", "problem_time", "correct", "rt"], path)
    test = (
        raw.filter(pl.col("exp_stage") == "test")
        .with_columns(pl.col("problem_id").cast(pl.Utf8))
        .sort("worker_id", "time_elapsed", maintain_order=True)
        # feedback rows have no problem_id: it is the one of the move rows just before them
        .with_columns(
            pid=pl.when(pl.col("trial_id") != "feedback").then(pl.col("problem_id"))
            .forward_fill().over("worker_id")
        )
    )
    if test.height == 0:
        raise TaskDataError(f"{path}: no rows with exp_stage == 'test'.")
    moves = test.filter(pl.col("trial_id") != "feedback")
    feedback = test.filter(pl.col("trial_id") == "feedback")
    if feedback.height == 0 or feedback["pid"].null_count():
        raise TaskDataError(f"{path}: column 'problem_id': a 'feedback' row has no move row before it "
                            "(or there are no feedback rows), so its problem is unknown.")
    if feedback["problem_time"].null_count() or feedback["correct"].null_count():
        raise TaskDataError(f"{path}: columns 'problem_time'/'correct' are empty in some feedback rows.")
    dup = feedback.group_by("worker_id", "pid").len().filter(pl.col("len") > 1)
    if dup.height:
        raise TaskDataError(f"{path}: worker {dup['worker_id'][0]!r} has {dup['len'][0]} feedback rows for "
                            f"problem_id {dup['pid'][0]}; expected one per problem.")

    problems = moves.group_by("problem_id").agg(
        pl.col("target").unique().alias("targets"), pl.col("min_moves").unique().alias("mins")
    ).sort("problem_id")
    rows = []
    for problem_id, targets, mins in problems.iter_rows():
        if len(targets) != 1 or len(mins) != 1:
            raise TaskDataError(f"{path}: problem_id {problem_id} has several values in columns "
                                f"'target' {targets} / 'min_moves' {mins}.")
        goal = _board(targets[0], path)
        solution = solve(START, goal)
        if len(solution) != int(mins[0]):
            raise TaskDataError(f"{path}: problem_id {problem_id}: column 'min_moves' says {int(mins[0])} but "
                                f"the shortest solution from {START_CODES} has {len(solution)} moves.")
        item_id = f"tol{int(problem_id):02d}"
        rows.append({
            "item_id": item_id, "problem_id": int(problem_id), "min_moves": len(solution),
            "target_json": json.dumps({"start": [list(p) for p in START], "goal": [list(p) for p in goal],
                                       "min_moves": len(solution)}),
            "start_state": describe(START), "goal_state": describe(goal),
            "solution": format_moves(solution),
        })
    meta = pl.DataFrame(rows)

    trials = feedback.select(
        item_id=pl.format("tol{}", pl.col("pid").cast(pl.Int64).cast(pl.Utf8).str.zfill(2)),
        rt_s=pl.col("problem_time").cast(pl.Float64) / 1000.0,
        correct=pl.col("correct").cast(pl.Int64),
        participant=pl.col("worker_id").cast(pl.Utf8).str.strip_chars(),
    ).join(meta.select("item_id", pl.col("target_json").alias("target")), on="item_id", how="left")
    # planning time: latency of the first click (to_hand) per person and problem, any outcome
    planning = (
        moves.filter(pl.col("trial_id") == "to_hand")
        .group_by("worker_id", "problem_id", maintain_order=True).first()
        .group_by("problem_id")
        .agg((pl.col("rt").cast(pl.Float64).median() / 1000.0).alias("first_move_s_median"))
        .select(pl.format("tol{}", pl.col("problem_id").cast(pl.Int64).cast(pl.Utf8).str.zfill(2)).alias("item_id"),
                "first_move_s_median")
    )
    items = (
        item_table(trials, cfg.difficulty, path)
        .join(meta.drop("target_json"), on="item_id")
        .join(planning, on="item_id", how="left")
    )
    return items, trial_frame(trials, cfg.difficulty)
