"""Cognitive reflection (sro-tol-crt): six CRT-type items, per-item accuracy only (no RTs).

Items (question_num 2-7): 3 elves, athletics medals, John & Mary barrel, Jerry's class rank,
pig trading (numeric answers: 3, 15, 4, 29, 20) and Simon's stock (multiple choice, answer 'c').
`score_answer` compares the final answer with `correct_response`; `is_intuitive` compares it
with the item's intuitive lure (6, 20, 9, 30, 10, 'b'). Participant ids: `worker_id`.
"""

from __future__ import annotations

import ast
import html
import re
from pathlib import Path
from typing import Dict, Optional, Tuple

import polars as pl

from cogdistill.config.schema import TaskConfig
from cogdistill.tasks.item_table import TaskDataError, item_table, read_csv, require_columns, trial_frame
from cogdistill.tasks.scorers import Scored

# ---------------------------------------------------------------------------------------------
# Scorer

# "Answer: 4 days", "**Final answer:** $20", "the answer is 29", "\boxed{15}"
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_MARKED = re.compile(r"(?i)\b(?:final\s+)?answer\b[*_]*\s*(?:is\b|:|=)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
# an option letter at the start ("(c)", "C) has lost money", "option c"); "a" followed by a
# word is the article ("a loss"), not option (a)
_LETTER = re.compile(r"(?i)^[\s*_`\"'\[]*(?:option\s+|choice\s+)?(?:\(([a-e])\)|([b-e])\b(?![-'’])|(a)\b(?![-'’])(?!\s+[a-z]))")
_PAREN_LETTER = re.compile(r"(?i)\(([a-e])\)")
_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if i >= 2}
_WORD_NUMBER = re.compile(
    r"(?i)\b(?:(" + "|".join(_TENS) + r")(?:[\s-]+(" + "|".join(list(_WORDS)[1:10]) + r"))?|(" + "|".join(_WORDS) + r"))\b"
)


def _segment(text: str) -> Optional[Tuple[str, int]]:
    """The text of the final answer and its offset.

    The last \\boxed{} or "Answer:" (whichever comes later); only when neither exists, the last
    "the answer is". A marker with nothing after it on its line takes the next non-empty line.
    """
    def after(m: re.Match) -> Optional[Tuple[str, int]]:
        first, _, rest = text[m.end():].partition("\n")
        line = first if first.strip(" \t*_`") else rest.lstrip().split("\n", 1)[0]
        return (line, m.start()) if line.strip(" \t*_`") else None

    strong = [m for m in _MARKED.finditer(text) if not m.group(0).lower().endswith("is")]
    weak = [m for m in _MARKED.finditer(text) if m.group(0).lower().endswith("is")]
    candidates = [(b.group(1), b.start()) for b in _BOXED.finditer(text)]
    candidates += [found for found in map(after, strong) if found]
    if not candidates:
        candidates = [found for found in map(after, weak) if found]
    return max(candidates, key=lambda c: c[1]) if candidates else None


def _number(segment: str) -> Optional[str]:
    """The first number in the answer segment: digits ("$20", "4 days", "8,000"), else number words."""
    clean = segment.replace("\\$", "$").replace("\\,", "")
    digits = _NUMBER.search(clean)
    word = _WORD_NUMBER.search(clean)
    if digits:  # digits win over number words ("4 days to drink one barrel")
        value = float(digits.group(0).replace(",", ""))
    elif word:
        tens, unit, single = word.groups()
        value = float(_TENS[tens.lower()] + (_WORDS[unit.lower()] if unit else 0)) if tens else float(_WORDS[single.lower()])
    else:
        return None
    return str(int(value)) if value == int(value) else repr(value)


def _normalise(segment: str, target: str) -> Optional[str]:
    if re.fullmatch(r"-?\d+(?:\.\d+)?", target):
        return _number(segment)
    if re.fullmatch(r"[a-e]", target):
        letter = _LETTER.search(segment) or _PAREN_LETTER.search(segment)
        return next(g for g in letter.groups() if g).lower() if letter else None
    words = re.sub(r"[^a-z0-9 ]+", " ", segment.lower()).split()
    return " ".join(words) or None


def _target(target: str) -> str:
    return str(target).strip().lower()


def score_answer(text: str, target: str) -> Scored:
    """The final answer (\\boxed{} or after the last "Answer:") against the correct response.

    Numeric targets compare as numbers, ignoring units and currency ("$20", "20 dollars",
    "4 days", "twenty"); letter targets (multiple choice) take the first option letter ("(c)",
    "C) has lost money"); other targets need a normalised (case, punctuation) exact match.
    """
    found = _segment(text)
    if found is None:
        return Scored(answer=None, start=None, correct=False)
    segment, start = found
    want = _target(target)
    answer = _normalise(segment, want)
    if answer is None:  # a marker but no readable answer after it
        return Scored(answer=None, start=None, correct=False)
    if re.fullmatch(r"-?\d+(?:\.\d+)?", want):
        correct = abs(float(answer) - float(want)) < 1e-9
    else:
        correct = answer == want
    return Scored(answer=answer, start=start, correct=correct)


def is_intuitive(text: str, intuitive_response: str) -> bool:
    """Whether the final answer is the item's intuitive lure (e.g. 30 students, not 29)."""
    return score_answer(text, intuitive_response).correct


# ---------------------------------------------------------------------------------------------
# Items and human data

_ANSWER_BLANK = re.compile(r"(?is)<br>\s*<br>\s*<strong>\s*Answer\s*</strong>\s*:?(.*)$")


def strip_html(fragment: str) -> str:
    text = re.sub(r"(?i)<br\s*/?>", "\n", fragment)
    text = html.unescape(re.sub(r"<[^>]+>", "", text))
    text = re.sub(r"[ \t]+", " ", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()


def _options(cell: Optional[str], path: Path) -> str:
    """expfactory's options cell (a Python literal list of {'text', 'value'}) -> "(a) ...\n(b) ..."."""
    if cell is None or not str(cell).strip():
        return ""
    try:
        options = ast.literal_eval(cell)
        return "\n".join(strip_html(o["text"]) for o in options)
    except (ValueError, SyntaxError, KeyError, TypeError) as exc:
        raise TaskDataError(f"{path}: column 'options' has {cell[:80]!r}, not a list of options ({exc}).") from exc


def render_question(text: str, options: str) -> str:
    """Item HTML -> plain text: the stem, the options (if any), then the "Answer: _____ <unit>" line."""
    blank = _ANSWER_BLANK.search(text)
    stem = strip_html(text[: blank.start()] if blank else text)
    parts = [stem]
    if options:
        parts.append(options)
    if blank:
        parts.append("Answer: " + strip_html(blank.group(1)))
    return "\n\n".join(parts)


def build_items(paths: Dict[str, Path], cfg: TaskConfig) -> Tuple[pl.DataFrame, pl.DataFrame]:
    path = paths["trials"]
    raw = read_csv(path, schema_overrides={"worker_id": pl.Utf8})  # polars decompresses .csv.gz itself
    require_columns(raw, ["question_num", "text", "options", "correct_response", "intuitive_response",
                          "correct", "worker_id"], path)
    rows = raw.filter(pl.col("correct_response").is_not_null())
    if rows.height == 0:
        raise TaskDataError(f"{path}: column 'correct_response' is empty in every row.")
    if rows["correct"].null_count():
        raise TaskDataError(f"{path}: column 'correct' is empty in {rows['correct'].null_count()} rows.")
    items = []
    for (num,), group in rows.group_by("question_num", maintain_order=True):
        fields = {c: group[c].unique().to_list() for c in ("text", "options", "correct_response", "intuitive_response")}
        many = [c for c, v in fields.items() if len(v) != 1]
        if many:
            raise TaskDataError(f"{path}: question_num {num} has several values in column(s) {many}.")
        items.append({
            "item_id": f"crt{int(num)}", "question_num": int(num),
            "question": render_question(fields["text"][0], _options(fields["options"][0], path)),
            "intuitive_response": _target(fields["intuitive_response"][0]),
        })
    meta = pl.DataFrame(items)
    trials = rows.select(
        item_id=pl.format("crt{}", pl.col("question_num")),
        target=pl.col("correct_response").cast(pl.Utf8).str.strip_chars().str.to_lowercase(),
        rt_s=pl.lit(None, dtype=pl.Float64),  # survey format: no per-item RT
        correct=pl.col("correct").cast(pl.Int64),
        participant=pl.col("worker_id").cast(pl.Utf8).str.strip_chars(),
    )
    return item_table(trials, cfg.difficulty, path).join(meta, on="item_id"), trial_frame(trials, cfg.difficulty)
