"""Syllogisms: belief-laden verification with RTs (Wiens 2021) and the 64 abstract syllogisms
with error rates (Ragni 2016, CCOBRA).

Both files use CCOBRA's text encoding: a premise is `Quantifier;subject;predicate`, premises are
joined by `/`, quantifiers are All, Some, No, 'Some not'. Validity comes from the model-theoretic
solver in syllogism_solver (existential import, as in CCOBRA). Participant ids: CCOBRA's `id`
column, in both files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import polars as pl

from cogdistill.config.schema import TaskConfig
from cogdistill.tasks.item_table import (
    TaskDataError,
    item_table,
    participant_ids,
    read_csv,
    require_columns,
    trial_frame,
)
from cogdistill.tasks.scorers import Scored
from cogdistill.tasks.syllogism_solver import (
    CONCLUSIONS, QUANTIFIERS, encode_conclusion, encode_task, follows, premises_of, valid_table,
)

Statement = Tuple[str, str, str]  # (quantifier word, subject, predicate)

# The one set of neutral terms every Ragni2016 item is rendered with: a, b (middle), c.
TERMS = {"a": "artists", "b": "bakers", "c": "chemists"}
NVC = "NVC"
NVC_TEXT = "No valid conclusion"


def _read(path: Path, columns: List[str]) -> pl.DataFrame:
    raw = read_csv(path, as_text=True)  # parsed explicitly below
    require_columns(raw, columns, path)
    return raw


def parse_statement(text: str, path: Path, column: str) -> Statement:
    parts = [p.strip() for p in str(text).split(";")]
    if len(parts) != 3 or parts[0] not in QUANTIFIERS or not parts[1] or not parts[2]:
        raise TaskDataError(
            f"{path}: column '{column}' has {text!r}; expected 'Quantifier;subject;predicate' "
            f"with a quantifier in {list(QUANTIFIERS)}."
        )
    return parts[0], parts[1], parts[2]


def parse_premises(text: str, path: Path, column: str = "task") -> List[Statement]:
    parts = str(text).split("/")
    if len(parts) != 2:
        raise TaskDataError(f"{path}: column '{column}' has {text!r}; expected two premises joined by '/'.")
    return [parse_statement(p, path, column) for p in parts]


def render(statement: Statement) -> str:
    """('Some not', 'x', 'y') -> 'Some x are not y'; the words are kept exactly as given."""
    q, s, p = statement
    if q == "Some not":
        return f"Some {s} are not {p}"
    return f"{q} {s} are {p}"


def _encode(premises: List[Statement], path: Path, text: str) -> Tuple[str, Dict[str, str]]:
    try:
        return encode_task(premises)
    except ValueError as exc:
        raise TaskDataError(f"{path}: column 'task' has {text!r}: {exc}.") from exc


# --------------------------------------------------------------------------- Wiens 2021

def _end_term_match(term: str, end: str) -> bool:
    # the source abbreviates one end term in one conclusion ('cold-blooded' for 'cold-blooded animal')
    return term == end or end.startswith(term + " ") or term.startswith(end + " ")


def _solver_valid(premises: List[Statement], conclusion: Statement, path: Path, text: str) -> bool:
    code, terms = _encode(premises, path, text)
    q, s, p = conclusion
    if _end_term_match(s, terms["a"]) and _end_term_match(p, terms["c"]):
        x, y = "a", "c"
    elif _end_term_match(s, terms["c"]) and _end_term_match(p, terms["a"]):
        x, y = "c", "a"
    else:
        raise TaskDataError(f"{path}: conclusion {conclusion!r} does not relate the end terms of {text!r}.")
    return follows(premises_of(code), (QUANTIFIERS[q], x, y))


def build_wiens_items(paths: Dict[str, Path], cfg: TaskConfig) -> Tuple[pl.DataFrame, pl.DataFrame]:
    """15 belief-laden items: verify a conclusion; target is the source's `truth` ('true'/'false')."""
    path = paths["trials"]
    raw = _read(path, ["task", "choices", "response", "truth", "type_of_syllogism", "response_time"])
    for column in ("response", "truth"):
        bad = raw.filter(~pl.col(column).str.to_lowercase().is_in(["true", "false"]))
        if bad.height:
            raise TaskDataError(f"{path}: column '{column}' has {bad[column][0]!r}; expected True or False.")
    rt = pl.col("response_time").str.strip_chars().cast(pl.Float64, strict=False)
    bad = raw.filter(rt.is_null() | (rt <= 0))
    if bad.height:
        raise TaskDataError(
            f"{path}: column 'response_time' has {bad['response_time'][0]!r}; expected a positive number of ms."
        )

    items = {}
    for task, choice, kind in raw.select("task", "choices", "type_of_syllogism").unique().iter_rows():
        premises = parse_premises(task, path)
        conclusion = parse_statement(choice, path, "choices")
        code, terms = _encode(premises, path, task)
        slug = re.sub(r"[^a-z0-9]+", "-", premises[0][1].lower()).strip("-")
        items[(task, choice)] = {
            "item_id": f"{code}-{slug}",
            "syllogism": code,
            "premise1": render(premises[0]) + ".",
            "premise2": render(premises[1]) + ".",
            "conclusion": render(conclusion) + ".",
            "type_of_syllogism": kind,
            "solver_valid": _solver_valid(premises, conclusion, path, task),
        }
    if len(items) != raw.select("task", "choices").unique().height:
        raise TaskDataError(f"{path}: an item (task, choices) has more than one 'type_of_syllogism'.")
    keys = pl.DataFrame(
        [{"task": t, "choices": c, **v} for (t, c), v in items.items()],
        schema_overrides={"solver_valid": pl.Boolean},
    )
    truths = raw.group_by("task", "choices").agg(pl.col("truth").str.to_lowercase().n_unique().alias("n"))
    if (truths["n"] > 1).any():
        raise TaskDataError(f"{path}: column 'truth' differs between trials of one item.")

    trials = raw.join(keys.select("task", "choices", "item_id"), on=["task", "choices"]).select(
        "item_id",
        target=pl.col("truth").str.to_lowercase(),
        rt_s=rt / 1000.0,
        correct=(pl.col("response").str.to_lowercase() == pl.col("truth").str.to_lowercase()).cast(pl.Int64),
        participant=participant_ids(raw, "id"),
    )
    table = item_table(trials, cfg.difficulty, path)
    return table.join(keys.drop("task", "choices"), on="item_id"), trial_frame(trials, cfg.difficulty)


# --------------------------------------------------------------------------- Ragni 2016

def conclusion_text(code: str, terms: Dict[str, str] = TERMS) -> str:
    """'Oca' -> 'Some not;chemists;artists' (CCOBRA's format) ; 'NVC' -> 'NVC'."""
    if code == NVC:
        return NVC
    word = {v: k for k, v in QUANTIFIERS.items()}[code[0]]
    return f"{word};{terms[code[1]]};{terms[code[2]]}"


def _sentence(code: str) -> str:
    if code == NVC:
        return NVC_TEXT
    return render(tuple(conclusion_text(code).split(";")))  # type: ignore[arg-type]


def syllogism_fields(code: str) -> Dict[str, str]:
    """The prompt fields and target of one abstract syllogism rendered with TERMS."""
    prem = [(w, TERMS[x], TERMS[y]) for w, x, y in
            ((next(k for k, v in QUANTIFIERS.items() if v == q), x, y) for q, x, y in premises_of(code))]
    valid = valid_table()[code]
    return {
        "syllogism": code,
        "mood": code[:2],
        "figure": int(code[2]),
        "premise1": render(prem[0]) + ".",
        "premise2": render(prem[1]) + ".",
        "options": "\n".join(f"- {_sentence(c)}" for c in CONCLUSIONS + [NVC]),
        "valid_conclusions": "|".join(valid),
        "target": "|".join(conclusion_text(c) for c in valid),
    }


def build_ragni2016_items(paths: Dict[str, Path], cfg: TaskConfig) -> Tuple[pl.DataFrame, pl.DataFrame]:
    """64 abstract syllogisms (mood + figure); a response is correct when it is a valid conclusion."""
    path = paths["trials"]
    raw = _read(path, ["task", "response"])
    valid = valid_table()
    rows = []
    for task, response in raw.select("task", "response").iter_rows():
        premises = parse_premises(task, path)
        code, terms = _encode(premises, path, task)
        if str(response).strip() == NVC:
            answer = NVC
        else:
            try:
                answer = encode_conclusion(parse_statement(response, path, "response"), terms)
            except ValueError as exc:
                raise TaskDataError(f"{path}: column 'response' has {response!r} for {task!r}: {exc}.") from exc
        rows.append((code, answer, int(answer in valid[code])))
    fields = pl.DataFrame([syllogism_fields(code) for code in sorted({r[0] for r in rows})])
    trials = (
        pl.DataFrame(rows, schema=["item_id", "response", "correct"], orient="row")
        .with_columns(raw.select(participant=participant_ids(raw, "id")).to_series())
        .join(fields.select(item_id="syllogism", target="target"), on="item_id")
        .with_columns(rt_s=pl.lit(None, dtype=pl.Float64))
    )
    table = item_table(trials, cfg.difficulty, path)
    items = table.join(fields.drop("target").with_columns(item_id=pl.col("syllogism")), on="item_id")
    return items, trial_frame(trials, cfg.difficulty)


# --------------------------------------------------------------------------- scorer

_NVC_RE = r"no\s+valid\s+conclusion|\bnvc\b|nothing\s+(?:valid\s+)?follows|no\s+conclusion\s+(?:follows|can\s+be\s+drawn)"
_MARKER = re.compile(r"(?i)\banswer\s*(?:is)?\s*\**\s*:")


def _term_pattern(term: str) -> str:
    stem = re.escape(term[:-1] if term.endswith("s") else term)
    return stem + r"s?"


def _conclusion_regex(terms: List[str]) -> re.Pattern:
    alt = "|".join(f"(?:{_term_pattern(t)})" for t in sorted(terms, key=len, reverse=True))
    return re.compile(
        rf"(?i)(?P<nvc>{_NVC_RE})"
        rf"|\b(?P<q>all|some|no)\s+(?:of\s+the\s+)?(?P<s>{alt})\s+(?:are|is)\s*(?P<neg>n't|\s+not)?"
        rf"\s+(?:an?\s+)?(?P<p>{alt})\b"
    )


def _normal_term(word: str, terms: List[str]) -> str:
    word = word.lower()
    for t in terms:
        if word == t.lower() or word + "s" == t.lower() or word == t.lower().rstrip("s"):
            return t
    return word


def _normalise(match: re.Match, terms: List[str]) -> Optional[str]:
    if match.group("nvc"):
        return NVC
    q, neg = match.group("q").lower(), bool(match.group("neg"))
    s, p = _normal_term(match.group("s"), terms), _normal_term(match.group("p"), terms)
    if s == p or (neg and q != "some"):  # 'all x are not y' is ambiguous: no answer
        return None
    word = "Some not" if neg else {"all": "All", "some": "Some", "no": "No"}[q]
    return f"{word};{s};{p}"


def score_conclusion(text: str, target: str) -> Scored:
    """A syllogism conclusion: the first conclusion after the last 'Answer:' marker when there is one,
    else the last conclusion stated anywhere ('Some artists are not chemists', or 'no valid
    conclusion' / 'NVC'). Correct when it is one of the valid conclusions in the target
    ('All;artists;chemists|Some;artists;chemists' or 'NVC').
    """
    valid = [t.strip() for t in str(target).split("|") if t.strip()]
    terms = list(TERMS.values())
    for t in valid:
        for word in t.split(";")[1:]:
            if word not in terms:
                terms.append(word)
    regex = _conclusion_regex(terms)
    found = [(m, a) for m in regex.finditer(text) if (a := _normalise(m, terms)) is not None]
    if not found:
        return Scored(answer=None, start=None, correct=False)
    markers = list(_MARKER.finditer(text))
    after = [f for f in found if markers and f[0].start() >= markers[-1].end()]
    match, answer = after[0] if after else found[-1]
    return Scored(answer=answer, start=match.start(), correct=answer in valid)
