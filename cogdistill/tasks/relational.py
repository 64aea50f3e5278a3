"""Spatial relational reasoning (CCOBRA benchmark data, Ragni lab): trials -> items with human RT.

Four files, three kinds (see conf/task/relational-*.yaml):

* 3ps.csv / 4ps.csv (`relational_verification`): premises "The A is to the left of the B.",
  a conclusion to verify, target "true"/"false" from the file's validity column (checked against
  the solver in spatial.py). Human RT = verification time `rt_ms - questionTime` (s); the item
  table also carries `verify_rt_s` and `whole_rt_s` (whole-problem time `rt_ms`), both means over
  correct trials. Kind `relational_verification_whole` uses whole-problem time as rt_s instead.
  Problems whose premises, as stored, leave the conclusion open are dropped (4ps has three:
  its premise `B R C` makes A vs D indeterminate while the file marks a fixed answer).
* Ragni2018_carddir.csv (`relational_carddir`): "A is d1 of B. B is d2 of C. C is ___ of A."
  The answer is derived with the projection-based semantics in spatial.py. Only problems with a
  unique answer are kept (32 of 64); kind `relational_carddir_all` keeps all 64 with the target
  listing every possible answer ("north|south"), any of which counts as correct.
* Ragni2018_smalllarge.csv (`relational_smalllarge`): four premises and a full proposed
  arrangement; target "true" when the arrangement is one of the orders the premises allow
  (consistency: the premises never fix one order, and participants accept the consistent
  arrangements and reject the others).

Object names vary per participant in the Ragni2018 files; each problem is rendered once with
fixed names. Accuracy uses every trial; RT follows the task's difficulty config. Participant ids:
the `id` column (CCOBRA's participant id) of every file.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import polars as pl

from cogdistill.config.schema import TaskConfig
from cogdistill.tasks.item_table import TaskDataError, item_table, read_csv, require_columns, trial_frame
from cogdistill.tasks.scorers import Scored
from cogdistill.tasks.spatial import (
    DIRECTIONS, Premise, SpatialError, arrangement_consistent, arrangement_order,
    cardinal_answers, objects_of, parse_premises, verify,
)

log = logging.getLogger(__name__)

RELATION_TEXT = {
    "left": "to the left of", "right": "to the right of", "west": "west of", "east": "east of",
    **{d: f"{d} of" for d in DIRECTIONS},
}




def _number(df: pl.DataFrame, column: str, path: Path) -> pl.Series:
    values = df[column].cast(pl.Float64, strict=False)
    if values.null_count():
        bad = df.filter(values.is_null())[column][0]
        raise TaskDataError(f"{path}: column '{column}' has {bad!r}; expected a number (ms).")
    return values


def _flag(df: pl.DataFrame, column: str, path: Path) -> pl.Series:
    """True/False, TRUE/FALSE or 1/0 -> bool."""
    text = df[column].str.strip_chars().str.to_lowercase()
    bad = ~text.is_in(["true", "false", "1", "0"]) | text.is_null()
    if bad.any():
        raise TaskDataError(f"{path}: column '{column}' has {df.filter(bad)[column][0]!r}; expected True/False or 1/0.")
    return text.is_in(["true", "1"])


def _parse(text: str, column: str, path: Path) -> List[Premise]:
    try:
        return parse_premises(text)
    except SpatialError as exc:
        raise TaskDataError(f"{path}: column '{column}': {exc}.") from exc


def _one_version(problems: Dict[str, set], id_col: str, path: Path) -> Dict[str, object]:
    """Each task id must stand for one abstract problem."""
    out = {}
    for task_id, versions in problems.items():
        if len(versions) != 1:
            raise TaskDataError(f"{path}: {id_col} {task_id} has {len(versions)} different problems: {sorted(versions)}.")
        out[task_id] = next(iter(versions))
    return out


def _item_id(task_id: str, path: Path, id_col: str) -> str:
    if not task_id.strip().isdigit():
        raise TaskDataError(f"{path}: column '{id_col}' has {task_id!r}; expected an integer problem id.")
    return f"{int(task_id):03d}"


def sentence(premise: Premise, names: Optional[Dict[str, str]] = None) -> str:
    rel, x, y = premise
    names = names or {}
    return f"The {names.get(x, x)} is {RELATION_TEXT[rel]} the {names.get(y, y)}."


def _abstract(premises: Sequence[Premise], extra: Sequence[Premise] = (), also: Sequence[str] = ()) -> Tuple:
    """Rename objects A, B, C, ... in order of first mention (premises first)."""
    letters = {}
    for obj in objects_of(list(premises) + list(extra)) + [o for o in also]:
        letters.setdefault(obj, "ABCDEFGH"[len(letters)])
    rename = lambda ps: tuple((r, letters[x], letters[y]) for r, x, y in ps)  # noqa: E731
    return rename(premises), rename(extra), tuple(letters[o] for o in also)


Built = Tuple[pl.DataFrame, pl.DataFrame]  # (item table, trial frame)


def _participants(raw: pl.DataFrame) -> pl.Series:
    """CCOBRA's `id` column is the participant id; null where a file lacks it."""
    if "id" in raw.columns:
        return raw["id"].cast(pl.Utf8).str.strip_chars().alias("participant")
    return pl.Series("participant", [None] * raw.height, dtype=pl.Utf8)


def _with_rt_columns(trials: pl.DataFrame, cfg: TaskConfig, path: Path, extra: Dict[str, pl.Expr]) -> pl.DataFrame:
    table = item_table(trials, cfg.difficulty, path)
    means = trials.filter(pl.col("correct") == 1).group_by("item_id").agg(**{k: e.mean() for k, e in extra.items()})
    return table.join(means, on="item_id", how="left")


# ---- 3ps / 4ps verification ----------------------------------------------------------------

# file layout -> (id column, validity column, participant-correct column)
VERIFY_LAYOUTS = {
    "3ps": ("Task-ID", "korrekt", "lastcorrect"),
    "4ps": ("TaskID", "logicallycorrect", "response_correct"),
}


def _verification(paths: Dict[str, Path], cfg: TaskConfig, whole: bool) -> Built:
    path = paths["trials"]
    raw = read_csv(path, as_text=True)
    layout = next((k for k, (id_col, _, _) in VERIFY_LAYOUTS.items() if id_col in raw.columns), None)
    if layout is None:
        raise TaskDataError(
            f"{path}: no problem-id column: expected 'Task-ID' (3ps.csv) or 'TaskID' (4ps.csv); found {raw.columns}."
        )
    id_col, valid_col, correct_col = VERIFY_LAYOUTS[layout]
    require_columns(raw, [id_col, "task", "choices", valid_col, correct_col, "questionTime", "rt_ms"], path)
    valid = _flag(raw, valid_col, path)
    problems: Dict[str, set] = {}
    for task_id, task, choice, ok in zip(raw[id_col], raw["task"], raw["choices"], valid):
        problems.setdefault(task_id, set()).add((task, choice, bool(ok)))
    items, dropped = [], []
    for task_id, (task, choice, ok) in _one_version(problems, id_col, path).items():
        premises = _parse(task, "task", path)
        (conclusion,) = _parse(choice, "choices", path)
        try:
            solved = verify(premises, conclusion)
        except SpatialError as exc:
            raise TaskDataError(f"{path}: {id_col} {task_id}: {exc}.") from exc
        if solved is None:
            dropped.append(task_id)
            continue
        if solved != ok:
            raise TaskDataError(
                f"{path}: {id_col} {task_id}: column '{valid_col}' says {ok} but the premises {task} give {solved} "
                f"for {choice}."
            )
        items.append({
            "item_id": _item_id(task_id, path, id_col), "task_id": int(task_id), "target": str(ok).lower(),
            "premises": "\n".join(sentence(p) for p in premises), "conclusion": sentence(conclusion),
            "n_premises": len(premises),
        })
    if dropped:
        log.info("%s: dropped %s %s (premises leave the conclusion open)", path, id_col, sorted(dropped, key=int))
    verify_rt = _number(raw, "rt_ms", path) - _number(raw, "questionTime", path)
    trials = pl.DataFrame({"item_id": [_item_id(t, path, id_col) for t in raw[id_col]]}).with_columns(
        participant=_participants(raw),
        correct=_flag(raw, correct_col, path).cast(pl.Int64),
        verify_rt_s=verify_rt / 1000.0,
        whole_rt_s=_number(raw, "rt_ms", path) / 1000.0,
    )
    item_frame = pl.DataFrame(items)
    trials = trials.join(item_frame.select("item_id", "target"), on="item_id", how="inner")
    trials = trials.with_columns(rt_s=pl.col("whole_rt_s" if whole else "verify_rt_s"))
    table = _with_rt_columns(trials, cfg, path, {"verify_rt_s": pl.col("verify_rt_s"), "whole_rt_s": pl.col("whole_rt_s")})
    return table.join(item_frame.drop("target"), on="item_id"), trial_frame(trials, cfg.difficulty)


def build_verification_items(paths: Dict[str, Path], cfg: TaskConfig) -> Built:
    """3ps/4ps; rt_s = verification time (rt_ms - questionTime)."""
    return _verification(paths, cfg, whole=False)


def build_verification_items_whole(paths: Dict[str, Path], cfg: TaskConfig) -> Built:
    """3ps/4ps; rt_s = whole-problem time (rt_ms, from the first premise to the response)."""
    return _verification(paths, cfg, whole=True)


# ---- cardinal directions -------------------------------------------------------------------

CARDDIR_NAMES = ["museum", "station", "bar"]  # A, B, C in order of first mention


def _carddir(paths: Dict[str, Path], cfg: TaskConfig, keep_ambiguous: bool) -> Built:
    path = paths["trials"]
    raw = read_csv(path, as_text=True)
    require_columns(raw, ["Task-ID", "task", "choices", "response", "rt_ms"], path)
    problems: Dict[str, set] = {}
    responses = []
    for task_id, task, choices, response in zip(raw["Task-ID"], raw["task"], raw["choices"], raw["response"]):
        premises = _parse(task, "task", path)
        (_, x, y) = _parse(choices.split("|")[0], "choices", path)[0]
        (answer, rx, ry) = _parse(response or "", "response", path)[0]
        if (rx, ry) != (x, y) or answer not in DIRECTIONS:
            raise TaskDataError(f"{path}: column 'response' has {response!r}; expected '<direction>;{x};{y}'.")
        abstract, _, question = _abstract(premises, also=[x, y])
        problems.setdefault(task_id, set()).add((abstract, question))
        responses.append(answer)
    items, answers_by_id, dropped = [], {}, []
    for task_id, (premises, (x, y)) in _one_version(problems, "Task-ID", path).items():
        try:
            answers = cardinal_answers(premises, x, y)
        except SpatialError as exc:
            raise TaskDataError(f"{path}: Task-ID {task_id}: {exc}.") from exc
        if len(answers) > 1 and not keep_ambiguous:
            dropped.append(task_id)
            continue
        names = dict(zip("ABC", CARDDIR_NAMES))
        item_id = _item_id(task_id, path, "Task-ID")
        answers_by_id[item_id] = answers
        items.append({
            "item_id": item_id, "task_id": int(task_id), "target": "|".join(sorted(answers)),
            "n_answers": len(answers), "premises": "\n".join(sentence(p, names) for p in premises),
            "question": f"The {names[x]} is _____ of the {names[y]}.",
        })
    if dropped:
        log.info("%s: dropped %d Task-IDs with more than one possible answer", path, len(dropped))
    ids = [_item_id(t, path, "Task-ID") for t in raw["Task-ID"]]
    trials = pl.DataFrame({
        "item_id": ids,
        "correct": [int(item in answers_by_id and r in answers_by_id[item]) for item, r in zip(ids, responses)],
        "rt_s": _number(raw, "rt_ms", path) / 1000.0,
        "participant": _participants(raw),
    })
    item_frame = pl.DataFrame(items)
    trials = trials.join(item_frame.select("item_id", "target"), on="item_id", how="inner")
    table = item_table(trials, cfg.difficulty, path).join(item_frame.drop("target"), on="item_id")
    return table, trial_frame(trials, cfg.difficulty)


def build_carddir_items(paths: Dict[str, Path], cfg: TaskConfig) -> Built:
    """Ragni2018 cardinal directions: only the problems with one derivable answer."""
    return _carddir(paths, cfg, keep_ambiguous=False)


def build_carddir_items_all(paths: Dict[str, Path], cfg: TaskConfig) -> Built:
    """All 64 problems; target lists every possible answer ('a|b'), any counts as correct."""
    return _carddir(paths, cfg, keep_ambiguous=True)


_DIR = r"(?i:(?:north|south)[\s-]*(?:east|west)|north|south|east|west)"
_ABBR = r"\b(?:NE|NW|SE|SW|N|E|S|W)\b"
_DIR_BOXED = re.compile(rf"\\boxed\{{\s*(?:\\text\{{\s*)?({_DIR}|{_ABBR})")
_DIR_MARKED = re.compile(rf"(?i:answer)\s*(?i:is)?\s*[:=]?\s*[*_`\"'(]*\s*(?i:the\s+)?({_DIR}|{_ABBR})")
_DIR_ANY = re.compile(rf"\b({_DIR})\b|\b(NE|NW|SE|SW)\b")
_ABBREVIATIONS = {"n": "north", "e": "east", "s": "south", "w": "west",
                  "ne": "north-east", "nw": "north-west", "se": "south-east", "sw": "south-west"}


def normalise_direction(text: str) -> Optional[str]:
    """'Northeast', 'north east', 'NE', 'north-east' -> 'north-east'; None if not a direction."""
    word = re.sub(r"[\s-]+", "", text.strip().lower())
    if word in _ABBREVIATIONS:
        return _ABBREVIATIONS[word]
    for direction in DIRECTIONS:
        if word == direction.replace("-", ""):
            return direction
    return None


def score_direction(text: str, target: str) -> Scored:
    """The final direction: \\boxed{..}, else the last 'Answer: <direction>', else the last
    direction word (or NE/NW/SE/SW) in the text. Target: one direction or 'a|b' alternatives."""
    match = None
    for pattern in (_DIR_BOXED, _DIR_MARKED, _DIR_ANY):
        for match in pattern.finditer(text):
            pass
        if match is not None:
            break
    if match is None:
        return Scored(answer=None, start=None, correct=False)
    group = next(g for g in range(1, (match.re.groups or 0) + 1) if match.group(g))
    answer = normalise_direction(match.group(group))
    allowed = {normalise_direction(t) for t in str(target).split("|")}
    return Scored(answer=answer, start=match.start(group), correct=answer is not None and answer in allowed)


# ---- small/large arrangements --------------------------------------------------------------

SMALLLARGE_NAMES = [["apricot", "pear", "kiwi", "cherry", "fig"], ["lemon", "mango", "plum", "orange", "apple"]]
AXIS_TEXT = {"left": "from left to right", "right": "from left to right",
             "west": "from west to east", "east": "from west to east"}


def _smalllarge_names(relation: str, version: int) -> List[str]:
    """The n-th presentation of an abstract problem gets the n-th name set (trees for west/east)."""
    names = SMALLLARGE_NAMES[version % len(SMALLLARGE_NAMES)]
    return [f"{n} tree" for n in names] if relation in ("west", "east") else names


def build_smalllarge_items(paths: Dict[str, Path], cfg: TaskConfig) -> Built:
    """Ragni2018 small/large: is the proposed full arrangement consistent with the four premises?"""
    path = paths["trials"]
    raw = read_csv(path, as_text=True)
    require_columns(raw, ["Task-ID", "task", "choices", "response", "rt_ms"], path)
    problems: Dict[str, set] = {}
    for task_id, task, choices in zip(raw["Task-ID"], raw["task"], raw["choices"]):
        premises = _parse(task, "task", path)
        chain = _parse(choices, "choices", path)
        abstract, abstract_chain, _ = _abstract(premises, chain)
        problems.setdefault(task_id, set()).add((abstract, abstract_chain))
    versions: Dict[Tuple, int] = {}
    items = []
    for task_id, (premises, chain) in sorted(_one_version(problems, "Task-ID", path).items(), key=lambda kv: int(kv[0])):
        try:
            target = arrangement_consistent(premises, chain)
            order = arrangement_order(chain)
        except SpatialError as exc:
            raise TaskDataError(f"{path}: Task-ID {task_id}: {exc}.") from exc
        relation = premises[0][0]
        version = versions[(premises, chain)] = versions.get((premises, chain), -1) + 1
        names = dict(zip("ABCDE", _smalllarge_names(relation, version)))
        items.append({
            "item_id": _item_id(task_id, path, "Task-ID"), "task_id": int(task_id), "target": str(target).lower(),
            "premises": "\n".join(sentence(p, names) for p in premises),
            "arrangement": ", ".join(names[o] for o in order), "axis": AXIS_TEXT[relation],
        })
    item_frame = pl.DataFrame(items)
    accepted = _flag(raw, "response", path)
    trials = pl.DataFrame({
        "item_id": [_item_id(t, path, "Task-ID") for t in raw["Task-ID"]], "accepted": accepted,
        "rt_s": _number(raw, "rt_ms", path) / 1000.0, "participant": _participants(raw),
    }).join(item_frame.select("item_id", "target"), on="item_id")
    trials = trials.with_columns(correct=(pl.col("accepted") == (pl.col("target") == "true")).cast(pl.Int64))
    table = item_table(trials, cfg.difficulty, path).join(item_frame.drop("target"), on="item_id")
    return table, trial_frame(trials, cfg.difficulty)
