"""Replay: trace records produced elsewhere (a server log, another machine, an earlier run) enter
the same analysis as generated ones.

A record's cost comes from the first of these it has
(docs: Models and engines, "Replay: analysing traces produced elsewhere"):
1. `reasoning_tokens` + `answer_tokens`, taken as given;
2. `reasoning_text` + `answer_text`, counted with the model's tokenizer;
3. a raw `text`, split and counted by traces.trace_row exactly as for a live engine.
Correctness is the record's `correct` when given, else the task's scorer on the answer.

Bounds, as for live generations: a text field holds at most MAX_TEXT_CHARS characters (a live
answer's body is capped at 8 MiB), a JSON line at most MAX_LINE_BYTES (read line by line, never the
whole file at once), and a count, given or counted, at most MAX_TOKENS_LIMIT. Under a budget effort
(effort=budget=N) a record whose reasoning exceeds the budget is refused: it was not generated so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import polars as pl

from cogdistill.config.schema import MAX_SAMPLES, MAX_TOKENS_LIMIT, ModelConfig, ReplayEngineConfig
from cogdistill.engines.base import Generation, Tokenizer
from cogdistill.errors import CogdistillError
from cogdistill.tasks.load import Task
from cogdistill.tasks.scorers import Scored
from cogdistill.engines.protocols import EffortPlan, protocol_for
from cogdistill.traces.logs.base import MAX_LINE_BYTES, MAX_TEXT_CHARS, UNKNOWN as UNKNOWN_FINISH, bounded_lines
from cogdistill.traces.logs.convert import import_log
from cogdistill.traces.logs.detect import detect
from cogdistill.traces.logs.read import read_log
from cogdistill.traces.records import (FAILED, TRACE_SCHEMA, censoring, count_tolerance, failed_row, failure_reason,
                                       scored_answer, trace_row, traces_frame)

COST_SOURCES = "`reasoning_tokens` + `answer_tokens`, or `reasoning_text` + `answer_text`, or `text`"
KNOWN_COLUMNS = set(TRACE_SCHEMA) | {"text"}
TEXT_COLUMNS = ("prompt", "reasoning_text", "answer_text", "text", "extracted_answer")
COUNT_COLUMNS = ("reasoning_tokens", "answer_tokens", "total_tokens")
Records = List[Tuple[str, Dict[str, Any]]]  # ("line 3" / "row 3", record)


class ReplayError(CogdistillError, ValueError):
    """A trace file that cannot be replayed; the message names the file, the record and the fix."""


class TokenizerUnavailable(ReplayError):
    """Records need counting and the model's tokenizer cannot load; load_traces names the records."""


class LazyTokenizer:
    """The model's tokenizer, loaded when a record first needs counting: records that carry token
    counts (the usual case) then never import transformers, a few seconds per replayed job."""

    def __init__(self, load: Callable[[], Tokenizer], model_name: str):
        self._load, self._model_name, self._tokenizer = load, model_name, None

    def _get(self) -> Tokenizer:
        if self._tokenizer is None:
            try:
                self._tokenizer = self._load()
            except Exception as exc:  # noqa: BLE001 - any loading failure means "cannot count"
                raise TokenizerUnavailable(
                    f"the tokenizer of model '{self._model_name}' cannot load to count them "
                    f"({type(exc).__name__}: {str(exc)[:300]})") from exc
        return self._tokenizer

    def encode(self, text: str, add_special_tokens: bool = False) -> List[int]:
        return self._get().encode(text, add_special_tokens=add_special_tokens)

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self._get().decode(ids, skip_special_tokens=skip_special_tokens)


def load_traces(path: Path, task: Task, model: ModelConfig, tokenizer: Optional[Tokenizer],
                label: Optional[str] = None, effort: Optional[EffortPlan] = None,
                settings: Optional[ReplayEngineConfig] = None,
                on_import: Optional[Callable[[str], None]] = None) -> Tuple[pl.DataFrame, List[str]]:
    """The file's records for this task and model as a TRACE_SCHEMA frame, plus warnings. label: the
    model's name in the job (`<config>:<effort>` under an effort level), which the records name;
    effort: the job's effort plan, whose budget the records' reasoning must keep to; settings: the
    engine's (a harness log's format and how its samples match the task's items); on_import: called
    with a harness log's one-line import summary once every record is read."""
    label = label or model.name
    settings = settings or ReplayEngineConfig()
    file = _locate(path)
    task_fix = "select one of them with task=[...], or correct the file's `task` column."
    model_fix = f"run with model=<one of them>, or set `model` to '{label}' in the file."
    fmt = settings.format if settings.format != "auto" else detect(file)
    imported = None
    if fmt != "records":
        imported = import_log(read_log(file, fmt), task, settings, label)
        records = imported.records
        columns = list(dict.fromkeys(k for _, rec in records for k in rec))
    elif file.is_dir():
        raise ReplayError(f"replay trace file {file} is a folder; point engine.path at a .parquet or .jsonl file "
                          "(engine.format=records reads no folders).")
    elif file.suffix.lower() == ".parquet":
        # one file holds every job's records: select this task and model in polars, before any row
        # becomes a Python dict (a 16x sweep otherwise converts 256k rows for each of its 160 tasks)
        frame = _read_parquet(file)
        columns = [c for c in frame.columns if c != _ROW]
        _require_columns(file, columns)
        frame = _select_frame(file, frame, "task", task.name, task_fix)
        frame = _select_frame(file, frame, "model", label, model_fix)
        _check_text_lengths(file, frame)  # before any text becomes a Python string
        records = [(f"row {rec.pop(_ROW)}", rec) for rec in frame.to_dicts()]
    else:
        records, columns = _read(file)
        _require_columns(file, columns)
        records = _select(file, records, "task", task.name, task_fix)
        records = _select(file, records, "model", label, model_fix)
    warnings: List[str] = [imported.summary, *imported.warnings] if imported else []
    ignored = [c for c in columns if c not in KNOWN_COLUMNS]
    if ignored:
        warnings.append(f"{file}: ignored column(s) {ignored} (not trace record fields).")

    items = dict(zip(task.items["item_id"], zip(task.items["target"], task.prompts())))
    keys = [(_item_id(file, where, rec), _natural(file, where, rec, "sample_idx", default=0))
            for where, rec in records]
    unknown = sorted({item for item, _ in keys if item not in items})
    if unknown:
        unpadded = {item.lstrip("0") or "0": item for item in items}  # ids are text: '07' is not 7
        lost_zeros = [item for item in unknown if item.isdigit() and unpadded.get(item) not in (None, item)]
        raise ReplayError(
            f"{file}: {len(unknown)} item id(s) that task '{task.name}' does not have, e.g. {unknown[:5]}; "
            f"its ids look like {list(items)[:5]}. "
            + (f"The file's ids lost their leading zeros (e.g. {lost_zeros[0]} for '{unpadded[lost_zeros[0]]}'): "
               "write item_id as text, a quoted string in JSON Lines or a string column in parquet."
               if lost_zeros else
               "Check that the file is for this task and uses its item ids"
               + (f" (task.max_items={task.config.max_items} keeps only the first items)." if task.config.max_items
                  else "."))
        )
    first_seen: Dict[Tuple[str, int], str] = {}
    for (where, _), key in zip(records, keys):
        if key in first_seen:
            raise ReplayError(
                f"{file}: {where} repeats item_id '{key[0]}' sample_idx {key[1]} (first at {first_seen[key]}); "
                "each (item_id, sample_idx) must occur once: number repeated samples 0, 1, 2, ..."
            )
        first_seen[key] = where

    rows, other_targets, over_budget = [], 0, []
    budget = effort.budget if effort is not None else None
    for (where, rec), (item, sample) in zip(records, keys):
        target, prompt = items[item]
        other_targets += rec.get("target") is not None and str(rec["target"]) != target
        try:
            row = _costs(file, where, rec, model, tokenizer, lambda text, t=target: task.score(text, t))
        except TokenizerUnavailable as exc:
            raise _uncounted(file, records, exc, imported is not None) from exc
        except ReplayError:
            raise
        except Exception as exc:  # noqa: BLE001 - a record the scorer or the split cannot handle: name it
            raise ReplayError(f"{file}: {where} cannot be scored or counted ({failure_reason(exc)}); fix or drop "
                              "the record.") from exc
        if budget is not None and rec.get("effort") in (None, effort.effort) and row["reasoning_tokens"] is not None \
                and row["reasoning_tokens"] > budget + count_tolerance(budget):
            over_budget.append((where, row["reasoning_tokens"]))
        rows.append({**row, "model": label, "task": task.name, "item_id": item, "sample_idx": sample,
                     "prompt": _text(file, where, rec, "prompt") or prompt, "target": target,
                     "engine": "replay"})

    if over_budget:
        shown = ", ".join(f"{where}: {n}" for where, n in over_budget[:5])
        raise ReplayError(
            f"{file}: {len(over_budget)} of {len(rows)} record(s) reason for more tokens than effort={effort.effort} "
            f"allows ({shown}{' ...' if len(over_budget) > 5 else ''}; budget forcing stops the reasoning at {budget}, "
            f"max(3, 5%) tolerated): they were not generated under this budget. Replay them under the effort they "
            "were generated with (effort=..., or an `effort` field per record), or without one (effort=default).")
    covered = {item for item, _ in keys}
    if len(covered) < len(items):
        missing = [i for i in items if i not in covered]
        warnings.append(
            f"{file}: {len(missing)} of {len(items)} items of task '{task.name}' have no record "
            f"(e.g. {missing[:5]}); the analysis uses the {len(covered)} covered items."
        )
    if other_targets:
        warnings.append(f"{file}: {other_targets} record(s) give a `target` other than the task's; "
                        "the task's target is used.")
    if imported is not None and on_import is not None:
        on_import(imported.summary)
    return traces_frame(rows).sort("item_id", "sample_idx"), warnings


def _count(file: Path, where: str, tokenizer: Optional[Tokenizer], text: str) -> int:
    if tokenizer is None:
        raise ReplayError(f"{file}: {where} needs its answer counted, and no tokenizer was given: add "
                          "`answer_tokens`, or use a model config whose tokenizer loads.")
    return len(tokenizer.encode(text, add_special_tokens=False)) if text else 0


def _uncounted(file: Path, records: Records, cause: Exception, log: bool = False) -> ReplayError:
    """Which records need a tokenizer, and the two ways out."""
    uncounted = [where for where, rec in records
                 if rec.get("reasoning_tokens") is None or rec.get("answer_tokens") is None]
    shown = ", ".join(uncounted[:5]) + (f" and {len(uncounted) - 5} more" if len(uncounted) > 5 else "")
    if log:
        return ReplayError(
            f"{file}: {len(uncounted)} of {len(records)} logged sample(s) carry texts without the provider's counts "
            f"({shown}), and {cause}. Point the model config's `weights` at a folder holding the tokenizer of the "
            "model that wrote the log (weights.source: local), or log the provider's usage (reasoning tokens).")
    return ReplayError(
        f"{file}: {len(uncounted)} of {len(records)} record(s) carry texts without token counts ({shown}), and "
        f"{cause}. Add `reasoning_tokens` and `answer_tokens` to those records (then no tokenizer is needed and "
        "the model config needs no `weights`), or point the model config's `weights` at a folder holding its "
        "tokenizer.")


def _costs(file: Path, where: str, rec: Dict[str, Any], model: ModelConfig, tokenizer: Optional[Tokenizer],
           score: Callable[[str], Scored]) -> Dict[str, Any]:
    """The per-generation fields of one record (as trace_row returns them), given values first."""
    finish = _text(file, where, rec, "finish_reason") or "stop"
    # a harness that logs no finish reason (lm-eval): a reasoning block that never closed was cut (censored);
    # for a model without one nothing tells a cut, and the record counts as stopped
    unknown = finish == UNKNOWN_FINISH
    if unknown:
        finish = "length" if protocol_for(model).separates_reasoning else "stop"
    prompt_tokens = _natural(file, where, rec, "prompt_tokens")
    latency = rec.get("latency_s")
    if latency is not None and (isinstance(latency, bool) or not isinstance(latency, (int, float))
                                or not math.isfinite(latency) or latency < 0):
        raise ReplayError(f"{file}: {where}: `latency_s` is {latency!r}; give seconds as a non-negative number, "
                          "or null.")
    reasoning, answer, raw = (_text(file, where, rec, c) for c in ("reasoning_text", "answer_text", "text"))
    if finish == FAILED:  # a generation that could not be scored or counted where it was made: it stays failed
        gen = Generation(text=answer or raw or "", token_ids=None, prompt_tokens=0, finish_reason=FAILED,
                         latency_s=latency, reasoning_text=reasoning)
        return {**failed_row(gen, _text(file, where, rec, "failure") or "failed where it was generated"),
                "effort": _text(file, where, rec, "effort")}
    split_given = True  # False only for a raw `text`, which trace_row splits itself

    def given(r_tok: int, a_tok: int) -> Dict[str, Any]:
        row = {"reasoning_text": reasoning, "answer_text": answer, "reasoning_tokens": r_tok,
               "answer_tokens": a_tok, "total_tokens": r_tok + a_tok, "prompt_tokens": prompt_tokens,
               "finish_reason": finish, "extracted_answer": None, "correct": None, "latency_s": latency}
        if answer is not None:  # scored as trace_row scores: an empty answer is wrong
            scored = scored_answer(score, answer)
            row.update(extracted_answer=scored.answer, correct=scored.correct)
        return row

    given_total = _natural(file, where, rec, "total_tokens")
    if rec.get("reasoning_tokens") is not None and rec.get("answer_tokens") is not None:
        row = given(_natural(file, where, rec, "reasoning_tokens"), _natural(file, where, rec, "answer_tokens"))
    elif rec.get("reasoning_tokens") is not None and answer is not None:  # a provider's reasoning count, our answer's
        row = given(_natural(file, where, rec, "reasoning_tokens"), _count(file, where, tokenizer, answer))
    elif given_total is not None and answer is not None and reasoning is None and raw is None:
        # a harness log with only the provider's output count: the reasoning is what the answer leaves of it
        a_tok = _count(file, where, tokenizer, answer)
        if a_tok > given_total:
            raise ReplayError(f"{file}: {where}: the answer counts {a_tok} tokens with the model's tokenizer, more "
                              f"than the {given_total} output tokens given: the counts are not of this model's "
                              "tokenizer; give the reasoning text or its count instead.")
        row = given(given_total - a_tok, a_tok)
    elif reasoning is not None or answer is not None or raw is not None:
        if tokenizer is None:
            raise ReplayError(
                f"{file}: {where} has texts but no token counts, and no tokenizer was given to count them: "
                "add `reasoning_tokens` and `answer_tokens`, or use a model config whose tokenizer loads."
            )
        split_given = reasoning is not None or answer is not None
        gen = Generation(text=(answer or "") if split_given else raw, token_ids=None,  # type: ignore[arg-type]
                         prompt_tokens=prompt_tokens, finish_reason=finish, latency_s=latency,
                         reasoning_text=(reasoning or "") if split_given else None)
        row = trace_row(gen, tokenizer=tokenizer, protocol=protocol_for(model), score=score)
    else:
        raise ReplayError(f"{file}: {where} has no cost: give {COST_SOURCES}.")

    if split_given:  # the one censoring rule, "closed" read off the given split (trace_row assumes it)
        closed = row["answer_tokens"] > 0 or bool(model.think_end and model.think_end in (row["reasoning_text"] or ""))
        row["finish_reason"], row["censored"] = censoring(finish, closed=closed, think_end=model.think_end)
    if unknown and not row["censored"]:
        row["finish_reason"] = "stop"
    for field in ("censored", "correct", "token_count_mismatch"):
        value = rec.get(field)
        if value is not None and not isinstance(value, bool):
            raise ReplayError(f"{file}: {where}: `{field}` is {value!r}; use true/false (or leave it out).")
        if value is not None:
            row[field] = value
    if row["correct"] is None:
        raise ReplayError(f"{file}: {where} has neither `correct` nor an `answer_text` to score; add one of them.")
    row["extracted_answer"] = _text(file, where, rec, "extracted_answer") or row["extracted_answer"]
    total = _natural(file, where, rec, "total_tokens")
    if total is not None and split_given:  # the total may exceed the parts by the markup (tags, headers)
        if total < row["reasoning_tokens"] + row["answer_tokens"]:
            raise ReplayError(f"{file}: {where}: `total_tokens` is {total}, less than reasoning_tokens + answer_tokens "
                              f"({row['reasoning_tokens'] + row['answer_tokens']}); fix the counts or drop "
                              "`total_tokens` (it is then their sum).")
        row["total_tokens"] = total
    for field, kind in (("effort", str), ("budget_hit", bool), ("cost_source", str)):  # an effort sweep's records
        value = rec.get(field)
        if value is not None and not isinstance(value, kind):
            raise ReplayError(f"{file}: {where}: `{field}` is {value!r}; give a {kind.__name__} (or leave it out).")
        if value is not None:
            row[field] = value
    for field in ("usage_prompt_tokens", "usage_completion_tokens", "usage_reasoning_tokens"):
        row[field] = _natural(file, where, rec, field)
    for field in COUNT_COLUMNS:  # counted from texts: the bound given counts have (MAX_TOKENS_LIMIT)
        if row[field] is not None and row[field] > MAX_TOKENS_LIMIT:
            raise ReplayError(f"{file}: {where}: its texts count {row[field]:,} {field}, more than {MAX_TOKENS_LIMIT:,} "
                              "(the largest max_tokens cogdistill accepts): no generation is that long; check how "
                              "the file was written.")
    return row


def _locate(path: Optional[Path]) -> Path:
    if path is None or str(path) == "":
        raise ReplayError("engine=replay needs a trace file: pass engine.path=<file.parquet|file.jsonl>.")
    file = Path(path).expanduser().resolve()  # relative paths: against the working directory
    if not file.exists():
        raise ReplayError(f"replay trace file {file} does not exist (engine.path={path}; relative paths are "
                          f"resolved against the working directory {Path.cwd()}).")
    if not file.is_file() and not (file / "scenario_state.json").is_file():  # the one folder read: a HELM run
        raise ReplayError(f"replay trace file {file} is not a regular file; point engine.path at a "
                          ".parquet or .jsonl file, a harness log, or a HELM run folder (scenario_state.json).")
    return file


def _read(file: Path) -> Tuple[Records, List[str]]:
    """A JSON Lines file's records, each with where it is in the file, and the column names (in
    order); parquet files are read by _read_parquet."""
    suffix = file.suffix.lower()
    if suffix in (".jsonl", ".json"):
        records, seen = [], {}
        for n, line in _lines(file):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ReplayError(f"{file}: line {n} is not valid JSON ({exc.msg}, column {exc.colno}); "
                                  "write one JSON object per line (JSON Lines).") from exc
            if not isinstance(rec, dict):
                raise ReplayError(f"{file}: line {n} is a JSON {type(rec).__name__}, not an object; "
                                  "write one JSON object per line (JSON Lines).")
            for field in TEXT_COLUMNS:
                _text(file, f"line {n}", rec, field)  # a text over MAX_TEXT_CHARS is refused here
            records.append((f"line {n}", rec))
            seen.update(dict.fromkeys(rec))
        columns = list(seen)
    else:
        raise ReplayError(f"{file}: unsupported file type '{file.suffix}'; replay reads .parquet and "
                          ".jsonl (JSON Lines, also as .json).")
    if not records:
        raise ReplayError(f"{file}: holds no trace records.")
    return records, columns


def _lines(file: Path):
    """(line number, text) of a JSON Lines file, one line at a time: a line longer than
    MAX_LINE_BYTES is refused after reading that much of it, never held whole."""
    def too_long(n: int) -> ReplayError:
        return ReplayError(
            f"{file}: line {n} is longer than {MAX_LINE_BYTES // 2 ** 20} MiB; a record's texts hold at "
            f"most {MAX_TEXT_CHARS:,} characters each (a live answer is capped at 8 MiB): this is no "
            "generation's record. Check how the file was written.")

    try:
        for n, raw in bounded_lines(file, MAX_LINE_BYTES, too_long):
            try:
                yield n, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ReplayError(f"{file}: line {n} is not UTF-8 text ({exc}).") from exc
    except OSError as exc:
        raise ReplayError(f"{file}: cannot be read ({exc}).") from exc


def _check_text_lengths(file: Path, frame: pl.DataFrame) -> None:
    """_text's bound on a parquet frame, checked in polars (no row becomes a Python dict first)."""
    for column in TEXT_COLUMNS:
        if column in frame.columns and frame.schema[column] == pl.String:
            long = frame.filter(pl.col(column).str.len_chars() > MAX_TEXT_CHARS)
            if long.height:
                raise ReplayError(_too_long(file, f"row {long[_ROW][0]}", column, long[column].str.len_chars()[0]))


def _too_long(file: Path, where: str, field: str, chars: int) -> str:
    return (f"{file}: {where}: `{field}` holds {chars:,} characters, more than {MAX_TEXT_CHARS:,} (live answers are "
            f"capped at 8 MiB, and no count may pass {MAX_TOKENS_LIMIT:,} tokens): it is no generation's text; check "
            "how the file was written.")


_ROW = "__cogdistill_row__"  # a record's 1-based row number, for messages ("row 3")
_PARQUET_CACHE: Dict[Tuple[str, int, int], pl.DataFrame] = {}  # the last file read: a sweep's jobs share it


def _read_parquet(file: Path) -> pl.DataFrame:
    """The file's records with their row numbers; read once per process while the file is unchanged."""
    stat = file.stat()
    key = (str(file), stat.st_mtime_ns, stat.st_size)
    if key not in _PARQUET_CACHE:
        try:
            df = pl.read_parquet(file)
        except Exception as exc:  # polars raises several kinds for a damaged file
            raise ReplayError(f"{file}: cannot be read as parquet ({exc}); rewrite it with a parquet writer.") from exc
        if df.is_empty():
            raise ReplayError(f"{file}: holds no trace records.")
        _PARQUET_CACHE.clear()
        _PARQUET_CACHE[key] = df.with_row_index(_ROW, offset=1)
    return _PARQUET_CACHE[key]


def _select_frame(file: Path, frame: pl.DataFrame, column: str, wanted: str, fix: str) -> pl.DataFrame:
    """_select on a frame: the same rows kept, the same errors."""
    if column not in frame.columns or frame[column].null_count() == frame.height:
        return frame
    nulls = frame.filter(pl.col(column).is_null())
    if nulls.height:
        raise ReplayError(f"{file}: row {nulls[_ROW][0]} has no `{column}` while other records do; "
                          f"fill in `{column}` for every record, or drop the column.")
    values = frame[column]
    textual = values.dtype == pl.String or isinstance(values.dtype, (pl.Categorical, pl.Enum))
    # a non-text column never equals the wanted name, as in _select (5 != "5")
    kept = frame.filter(pl.col(column).cast(pl.String) == wanted) if textual else frame.head(0)
    if kept.is_empty():
        raise ReplayError(f"{file}: no record is for {column} '{wanted}'; the file holds "
                          f"{column}(s) {sorted({str(v) for v in values.to_list()})}: {fix}")
    return kept


def _require_columns(file: Path, columns: List[str]) -> None:
    cols = set(columns)
    has_cost = {"reasoning_tokens", "answer_tokens"} <= cols or {"reasoning_text", "answer_text"} <= cols \
        or "text" in cols
    if "item_id" not in cols or not has_cost:
        need = (["`item_id`"] if "item_id" not in cols else []) + ([COST_SOURCES] if not has_cost else [])
        raise ReplayError(f"{file}: missing required column(s): {', '.join(need)}; found {columns}. "
                          "See the docs, 'Models and engines' > 'Replay', for the accepted columns.")


def _select(file: Path, records: Records, column: str, wanted: str, fix: str) -> Records:
    """Keep the records whose `column` is `wanted`; a file without the column is all `wanted`."""
    values = [rec.get(column) for _, rec in records]
    if all(v is None for v in values):
        return records
    unnamed = next((where for where, rec in records if rec.get(column) is None), None)
    if unnamed:
        raise ReplayError(f"{file}: {unnamed} has no `{column}` while other records do; "
                          f"fill in `{column}` for every record, or drop the column.")
    kept = [(where, rec) for where, rec in records if rec[column] == wanted]
    if not kept:
        raise ReplayError(f"{file}: no record is for {column} '{wanted}'; the file holds "
                          f"{column}(s) {sorted({str(v) for v in values})}: {fix}")
    return kept


def _item_id(file: Path, where: str, rec: Dict[str, Any]) -> str:
    """The record's item id as text, exactly as written: '07' stays '07' (a JSON or parquet integer
    becomes its decimal digits; leading zeros it never had cannot be restored)."""
    value = rec.get("item_id")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ReplayError(f"{file}: {where}: `item_id` is {value!r}; every record needs the task's item id.")
    return value if isinstance(value, str) else str(value)


def _natural(file: Path, where: str, rec: Dict[str, Any], field: str, default: Optional[int] = None) -> Optional[int]:
    """A non-negative integer field (integral floats accepted, as some writers produce them), no larger
    than any real count: 1e30 is integral too, and would overflow the trace table or every sum."""
    value = rec.get(field)
    if value is None:
        return default
    integral = not isinstance(value, bool) and (isinstance(value, int) or (isinstance(value, float) and value.is_integer()))
    if not integral or value < 0:
        raise ReplayError(f"{file}: {where}: `{field}` is {value!r}; it must be a non-negative integer.")
    limit = MAX_SAMPLES if field == "sample_idx" else MAX_TOKENS_LIMIT
    if value > limit:
        raise ReplayError(f"{file}: {where}: `{field}` is {value!r}, more than {limit:,} (the largest "
                          f"{'sampling.n' if field == 'sample_idx' else 'max_tokens'} cogdistill accepts); "
                          "it is not a real count: check how the file was written (a wrong column or unit?) "
                          "and fix the value.")
    return int(value)


def _text(file: Path, where: str, rec: Dict[str, Any], field: str) -> Optional[str]:
    value = rec.get(field)
    if value is not None and not isinstance(value, str):
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:80] + "..."
        raise ReplayError(f"{file}: {where}: `{field}` is {shown}; it must be a string (or null).")
    if value is not None and len(value) > MAX_TEXT_CHARS:
        raise ReplayError(_too_long(file, where, field, len(value)))
    return value
