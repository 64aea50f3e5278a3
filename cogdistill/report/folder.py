"""A study folder in, a checked Study out (layout: cogdistill/report/study.py's docstring).

A folder is checked before anything is computed from it: each refusal is one StudyError line,
`<file>: row N (line N+1; key values): <problem>; <fix>`, rows counting data rows from 1. Item ids
are text throughout (`07` stays `07`); a trace item with no human row is kept (no human data) and
counted in `Study.notes` and `Study.items_without_humans()`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import polars as pl

from cogdistill.registry import MEASURES, SECONDS_MEASURES
from cogdistill.report.study import (HUMAN_COLUMNS, MODEL_COLUMNS, PLAUSIBLE_FLAG, PLAUSIBLE_RT_S, ROLES,
                                     TEXT_COLUMNS, TRACE_COLUMNS, TRIAL_COLUMNS, Study,
                                     StudyError, _conform, _coverage_notes, empty_trials)

@dataclass
class _Table:
    """A folder file read with `_row` (1-based data row) added, and what a message needs to name it."""
    path: Path
    frame: pl.DataFrame

    def where(self, row: Mapping[str, Any], *keys: str) -> str:
        n = row["_row"]
        line = f"line {n + 1}" if self.path.suffix == ".csv" else ""
        key = ", ".join(f"{k} {row[k]!r}" for k in keys if k in row)
        detail = "; ".join(filter(None, (line, key)))
        return f"row {n}" + (f" ({detail})" if detail else "")


def _fail(file: Any, where: Optional[str], problem: str, fix: str) -> StudyError:
    """Every folder refusal has this one shape: `file: where: problem; fix` (one line)."""
    return StudyError(f"{file}: " + (f"{where}: " if where else "") + f"{problem}; {fix}")


def from_folder(folder: Path, plausible_rt: Optional[Mapping[str, Tuple[float, float]]] = None) -> Study:
    """A study folder (layout above), checked row by row. plausible_rt: per task, the range
    (seconds) its median RT may lie in, for tasks that are truly outside PLAUSIBLE_RT_S."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StudyError(f"{folder}: not a folder. Pass a folder holding traces/, humans.csv and models.csv "
                         "(docs: The comparison report, 'A study folder, and traces from elsewhere'), or --experiment for an MLflow study.")
    models = _read_table(_one_of(folder, "models", ("csv", "parquet")), {"model", "role"})
    _check_models(models)
    humans = _read_table(_one_of(folder, "humans", ("csv", "parquet")),
                         {"task", "item_id", "human_difficulty", "measure"})
    ranges = _plausible_ranges(plausible_rt, humans)
    humans_frame = _check_humans(humans, ranges)
    files = sorted(_inside(folder, p) for ext in ("parquet", "jsonl") for p in (folder / "traces").glob(f"*.{ext}"))
    if not files:
        raise StudyError(f"{folder / 'traces'}: no *.parquet or *.jsonl trace files.")
    cost_of = dict(zip(models.frame["model"], models.frame["cost"])) if "cost" in models.frame.columns else {}
    traces = [_read_traces(file, cost_of) for file in files]
    frame = _check_duplicate_traces(traces)
    unknown = sorted(set(frame["model"]) - set(models.frame["model"]))
    if unknown:
        raise StudyError(f"{models.path}: no row for model(s) {unknown} found in the traces; "
                         "add them (model, role, family, teacher, base).")
    trials = _read_trials(folder, ranges, humans_frame)
    return Study(frame, humans_frame, _conform(models.frame, MODEL_COLUMNS), source=str(folder), trials=trials,
                 notes=_coverage_notes(frame, humans_frame, humans.path.name))


def parse_plausible_rt(values: Optional[Iterable[str]]) -> Dict[str, Tuple[float, float]]:
    """`TASK=LOW:HIGH` (seconds) strings, as the CLI's --plausible-rt takes them."""
    ranges: Dict[str, Tuple[float, float]] = {}
    for value in values or ():
        task, _, span = value.partition("=")
        low, _, high = span.partition(":")
        try:
            lo, hi = float(low), float(high)
        except ValueError:
            lo = hi = float("nan")
        if not task or not (0 < lo < hi < math.inf):
            raise StudyError(f"{PLAUSIBLE_FLAG} {value!r}: expected TASK=LOW:HIGH in seconds with 0 < LOW < HIGH, "
                             f"e.g. {PLAUSIBLE_FLAG} lexical-decision=0.05:1000.")
        ranges[task] = (lo, hi)
    return ranges


Ranges = Dict[str, Tuple[float, float]]


def _plausible_ranges(given: Optional[Mapping[str, Tuple[float, float]]], humans: _Table) -> Ranges:
    tasks = set(humans.frame["task"].drop_nulls())
    unknown = sorted(set(given or {}) - tasks)
    if unknown:
        raise _fail(humans.path, None, f"{PLAUSIBLE_FLAG} names task(s) {unknown} that have no rows here",
                    f"use task names from the file: {sorted(tasks)}")
    return dict(given or {})


def _one_of(folder: Path, stem: str, exts) -> Path:
    path = _maybe_one_of(folder, stem, exts)
    if path is None:
        raise StudyError(f"{folder}: no {stem}.csv or {stem}.parquet (docs: The comparison report, 'A study folder, and traces from elsewhere').")
    return path


def _maybe_one_of(folder: Path, stem: str, exts) -> Optional[Path]:
    found = next((folder / f"{stem}.{ext}" for ext in exts if (folder / f"{stem}.{ext}").is_file()), None)
    return None if found is None else _inside(folder, found)


def _inside(folder: Path, path: Path) -> Path:
    """path, unless a link leads it out of the study folder: a study is what its folder holds, and a
    refusal quotes what it read (a link to /etc/passwd would show that file's first line)."""
    target = path.resolve()
    if not target.is_relative_to(folder.resolve()):
        raise _fail(path, None, f"a link to {target}, outside the study folder",
                    "copy the file into the folder (a study folder holds its own files)")
    return path


def _read_table(path: Path, required: set) -> _Table:
    """A CSV / parquet / JSONL file with its text columns as text and `_row` added."""
    try:
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
        elif path.suffix == ".jsonl":
            frame = pl.read_ndjson(path, infer_schema_length=None)  # JSON strings stay strings: "07" is "07"
        else:
            frame = pl.read_csv(path, infer_schema_length=None,
                                schema_overrides={c: pl.Utf8 for c in TEXT_COLUMNS})
    except Exception as exc:  # noqa: BLE001 - polars raises several types for unreadable files
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise _fail(path, None, f"unreadable ({type(exc).__name__}: {first})",
                    "rewrite it as a plain CSV, parquet or JSON Lines file") from exc
    missing = required - set(frame.columns)
    if missing:
        raise _fail(path, None, f"missing column(s) {sorted(missing)} (found {frame.columns})",
                    f"add them; this file needs {sorted(required)}")
    text = [pl.col(c).cast(pl.Utf8) for c in TEXT_COLUMNS if c in frame.columns and c != "cost"
            and frame.schema[c] != pl.Utf8]
    return _Table(path, frame.with_columns(*text).with_row_index("_row", offset=1))


def _first(table: _Table, mask: pl.Expr) -> Optional[Dict[str, Any]]:
    bad = table.frame.filter(mask.fill_null(True))
    return bad.row(0, named=True) if bad.height else None


def _require_values(table: _Table, columns: Sequence[str], keys: Sequence[str], fix: str) -> None:
    for column in columns:
        row = _first(table, pl.col(column).is_null() | (pl.col(column).str.strip_chars() == ""))
        if row:
            raise _fail(table.path, table.where(row, *keys), f"`{column}` is empty", fix)


def _numbers(table: _Table, column: str, keys: Sequence[str], fix: str) -> pl.Series:
    """The column as Float64; a value that is no number (text, a boolean) is an error."""
    series = table.frame[column]
    if series.dtype.is_numeric():
        return series.cast(pl.Float64)
    if series.dtype == pl.Null:
        return series.cast(pl.Float64)
    if series.dtype == pl.Utf8:
        parsed = series.str.strip_chars().cast(pl.Float64, strict=False)
        bad = table.frame.filter(parsed.is_null() & series.is_not_null() & (series.str.strip_chars() != ""))
        if not bad.height:
            return parsed
        row = bad.row(0, named=True)
        raise _fail(table.path, table.where(row, *keys), f"`{column}` is {row[column]!r}, not a number", fix)
    raise _fail(table.path, None, f"column `{column}` holds {series.dtype} values, not numbers", fix)


def _booleans(table: _Table, column: str, keys: Sequence[str], *, nullable: bool) -> pl.Series:
    """true/false, 0/1 (also as text, as JSON Lines writers and spreadsheets produce them) as Boolean."""
    series = table.frame[column]
    fix = f"write `{column}` as true/false or 1/0" + ("" if nullable else " on every row")
    if series.dtype == pl.Boolean:
        parsed = series
    elif series.dtype == pl.Null:
        parsed = series.cast(pl.Boolean)
    elif series.dtype.is_numeric():
        as_float = series.cast(pl.Float64)
        parsed = as_float == 1.0  # null stays null
        invalid = table.frame.filter(series.is_not_null() & ~as_float.is_in([0.0, 1.0]).fill_null(False))
        if invalid.height:
            row = invalid.row(0, named=True)
            raise _fail(table.path, table.where(row, *keys), f"`{column}` is {row[column]!r}, not true/false or 1/0",
                        fix)
    elif series.dtype == pl.Utf8:
        lower = series.str.strip_chars().str.to_lowercase()
        parsed = lower.replace_strict({"true": True, "1": True, "false": False, "0": False, "": None},
                                      default=None, return_dtype=pl.Boolean)
        invalid = table.frame.filter(series.is_not_null() & parsed.is_null() & (lower != ""))
        if invalid.height:
            row = invalid.row(0, named=True)
            raise _fail(table.path, table.where(row, *keys), f"`{column}` is {row[column]!r}, not true/false or 1/0",
                        fix)
    else:
        raise _fail(table.path, None, f"column `{column}` holds {series.dtype} values, not true/false", fix)
    if not nullable and parsed.null_count():
        row = table.frame.filter(parsed.is_null()).row(0, named=True)
        raise _fail(table.path, table.where(row, *keys), f"`{column}` is empty", fix)
    return parsed.alias(column)


def _proportions(table: _Table, column: str, keys: Sequence[str]) -> pl.Series:
    """Numbers in [0, 1], true/false (as booleans or text) as 1/0, empty as null."""
    series = table.frame[column]
    if series.dtype == pl.Boolean:
        return series.cast(pl.Float64)
    if series.dtype == pl.Utf8:
        words = series.str.strip_chars().str.to_lowercase().replace({"true": "1", "false": "0"})
        table = _Table(table.path, table.frame.with_columns(words.alias(column)))
    values = _numbers(table, column, keys, f"give `{column}` as 1/0, true/false or a proportion, or leave it empty")
    bad = values.is_not_null() & (values.is_nan() | ~values.is_between(0, 1))
    if bad.any():
        row = table.frame.filter(bad).row(0, named=True)
        raise _fail(table.path, table.where(row, *keys), f"`{column}` is {row[column]!r}",
                    "give 1/0, true/false or a proportion in [0, 1], or leave it empty")
    return values


def _duplicates(table: _Table, keys: Sequence[str], fix: str) -> None:
    dup = table.frame.filter(pl.struct(keys).is_duplicated())
    if dup.height:
        first = dup.row(0, named=True)
        again = dup.filter(pl.all_horizontal(pl.col(k).eq_missing(first[k]) for k in keys)).row(1, named=True)
        raise _fail(table.path, table.where(again, *keys), f"repeats row {first['_row']}", fix)


def _check_models(models: _Table) -> None:
    keys = ("model",)
    _require_values(models, ["model", "role"], keys, f"give every model a name and a role (one of {list(ROLES)})")
    _duplicates(models, keys, "keep one row per model")
    row = _first(models, ~pl.col("role").is_in(list(ROLES)))
    if row:
        raise _fail(models.path, models.where(row, *keys), f"unknown role {row['role']!r}",
                    f"use one of {list(ROLES)}")
    _check_effort(models)
    links = {}
    for row in models.frame.iter_rows(named=True):
        links[row["model"]] = [(kind, row.get(kind)) for kind in ("teacher", "base") if row.get(kind)]
        for kind, target in links[row["model"]]:
            if target == row["model"]:
                raise _fail(models.path, models.where(row, *keys), f"the model is its own {kind}",
                            f"set `{kind}` to the model it was trained from, or leave it empty")
    cycle = _find_cycle(links)
    if cycle:
        path = " ".join(f"{m} -{kind}->" for m, kind in cycle) + f" {cycle[0][0]}"
        row = models.frame.filter(pl.col("model") == cycle[0][0]).row(0, named=True)
        raise _fail(models.path, models.where(row, *keys), f"teacher/base links form a cycle: {path}",
                    "no model can be its own (indirect) teacher or base: fix `teacher`/`base` in one of these rows")


def _check_effort(models: _Table) -> None:
    """Optional `effort` and `config`: one row per effort level of a config, budgets as budget=N."""
    from cogdistill.stats.effort import budget_of, normalise_level

    if "effort" not in models.frame.columns:
        return
    seen: Dict[Tuple[str, str], int] = {}
    for row in models.frame.iter_rows(named=True):
        effort, level = row["effort"], normalise_level(row["effort"])
        if level.startswith("budget") and budget_of(level) is None:
            raise _fail(models.path, models.where(row, "model"), f"effort {effort!r} is not a budget",
                        "write a thinking-token budget as budget=N, N a whole number (e.g. budget=256)")
        key = (row.get("config") or row["model"], level)
        if key in seen:
            raise _fail(models.path, models.where(row, "model"),
                        f"config {key[0]!r} at effort {level!r} repeats row {seen[key]}",
                        "keep one row per effort level of a config (`config` names the model config, "
                        "`effort` its level; empty effort is the default)")
        seen[key] = row["_row"]


def _find_cycle(links: Dict[str, List[Tuple[str, str]]]) -> Optional[List[Tuple[str, str]]]:
    """A cycle of (model, link kind) steps in the teacher/base graph, or None."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(model: str, path: List[Tuple[str, str]]) -> Optional[List[Tuple[str, str]]]:
        state[model] = 1
        for kind, target in links.get(model, ()):
            step = path + [(model, kind)]
            if state.get(target) == 1:
                start = next(i for i, (m, _) in enumerate(step) if m == target)
                return step[start:]
            if target in links and not state.get(target):
                found = visit(target, step)
                if found:
                    return found
        state[model] = 2
        return None

    for model in sorted(links):
        if not state.get(model):
            found = visit(model, [])
            if found:
                return found
    return None


def _check_humans(humans: _Table, plausible: Mapping[str, Tuple[float, float]]) -> pl.DataFrame:
    keys = ("task", "item_id")
    _require_values(humans, ["task", "item_id", "measure"], keys,
                    "fill it in (task, item_id, human_difficulty, measure on every row) or drop the row")
    _duplicates(humans, keys, "keep one row per (task, item_id): average the duplicates or drop one")
    row = _first(humans, ~pl.col("measure").is_in(list(MEASURES)))
    if row:
        raise _fail(humans.path, humans.where(row, *keys), f"unknown measure {row['measure']!r}",
                    f"use one of {list(MEASURES)}")
    mixed = (humans.frame.group_by("task").agg(pl.col("measure").unique().sort())
             .filter(pl.col("measure").list.len() > 1))
    if mixed.height:
        task, measures = mixed.row(0)
        raise _fail(humans.path, f"task {task!r}", f"mixes measures {measures}",
                    "use one measure per task (its items are correlated with each other)")
    fix = "give a number, or drop the row (a trace item without a human row has no human data)"
    value = _numbers(humans, "human_difficulty", keys, fix)
    table = _Table(humans.path, humans.frame.with_columns(value.alias("human_difficulty")))
    v, measure = pl.col("human_difficulty"), pl.col("measure")
    row = _first(table, v.is_null() | v.is_nan() | v.is_infinite())
    if row:
        raise _fail(table.path, table.where(row, *keys), f"`human_difficulty` is {_show(row['human_difficulty'])}", fix)
    row = _first(table, measure.is_in(list(SECONDS_MEASURES)) & (v <= 0))
    if row:
        raise _fail(table.path, table.where(row, *keys),
                    f"`human_difficulty` is {row['human_difficulty']} but measure {row['measure']} is an RT in seconds",
                    "RTs are positive: fix the value or drop the row (only mean_log_rt, a mean of log seconds, "
                    "may be negative)")
    row = _first(table, (measure == "error_rate") & ((v < 0) | (v > 1)))
    if row:
        raise _fail(table.path, table.where(row, *keys),
                    f"`human_difficulty` is {row['human_difficulty']} but an error_rate lies in [0, 1]",
                    "give the proportion of wrong trials (a percentage divided by 100)")
    medians = (table.frame.filter(measure.is_in([*SECONDS_MEASURES, "mean_log_rt"]))
               .group_by("task", "measure").agg(v.median().alias("median")).sort("task"))
    for task, kind, median in medians.iter_rows():
        seconds = math.exp(median) if kind == "mean_log_rt" else median
        _check_plausible(table.path, f"task {task!r}", task, seconds, plausible,
                         what=f"the median human_difficulty ({kind})" + (f" is {median:.3g}, i.e. exp(median) ="
                                                                          if kind == "mean_log_rt" else " is"),
                         log=kind == "mean_log_rt")
    return _conform(table.frame, HUMAN_COLUMNS)


def _check_plausible(path: Path, where: str, task: str, seconds: float, plausible: Mapping[str, Tuple[float, float]],
                     what: str, log: bool = False) -> None:
    low, high = plausible.get(task, PLAUSIBLE_RT_S)
    if low <= seconds <= high:
        return
    if log:
        hint = ("a mean of log milliseconds? subtract log(1000) = 6.908" if seconds > high
                else "log of another unit than seconds? convert to log seconds")
    else:
        hint = ("milliseconds given as seconds? divide by 1000" if seconds > high
                else "minutes or another unit given as seconds? convert to seconds")
    raise _fail(path, where, f"{what} {seconds:.4g} s, outside the plausible range {low:g}-{high:g} s of a human RT",
                f"{hint}; if these are truly seconds, pass {PLAUSIBLE_FLAG} {task}=LOW:HIGH to python -m "
                "cogdistill.report")


def _show(value: Any) -> str:
    return "empty" if value is None else repr(value)


def _read_traces(file: Path, cost_of: Dict[str, str]) -> _Table:
    table = _read_table(file, {"model", "task", "item_id", "correct"})
    keys = ("model", "task", "item_id")
    _require_values(table, ["model", "task", "item_id"], keys,
                    "every record needs model, task and item_id: fill them in or drop the record")
    frame = table.frame
    if "cost" in frame.columns:
        frame = frame.with_columns(_cost_src=pl.lit("cost"))
    else:
        frame = _cost_from_models(file, frame, cost_of)
    table = _Table(file, frame)
    keys = ("model", "task", "item_id", "sample_idx")
    cost = _numbers(table, "cost", keys, "token counts are whole numbers: fix the value or drop the record")
    bad = (cost.is_null() | cost.is_nan() | cost.is_infinite() | (cost < 0) | (cost != cost.floor())).fill_null(True)
    if bad.any():
        row, value = frame.filter(bad).row(0, named=True), cost.filter(bad)[0]
        problem = ("empty" if value is None else "NaN" if math.isnan(value) else "infinite" if math.isinf(value)
                   else f"{value:g}, negative" if value < 0 else f"{value:g}, not a whole number")
        raise _fail(file, table.where(row, *keys), f"the cost (column `{row['_cost_src']}`) is {problem}",
                    "a cost is a token count, a whole number >= 0: fix the record or drop it")
    columns = [cost.alias("cost"), _booleans(table, "correct", keys, nullable=False)]
    if "sample_idx" in frame.columns:
        idx = _numbers(table, "sample_idx", keys, "number a record's samples 0, 1, 2, ...")
        bad = idx.is_not_null() & (idx.is_nan() | idx.is_infinite() | (idx < 0) | (idx != idx.floor()))
        if bad.any():
            row = frame.filter(bad).row(0, named=True)
            raise _fail(file, table.where(row, *keys), f"`sample_idx` is {row['sample_idx']!r}",
                        "number a record's samples 0, 1, 2, ... (whole numbers)")
        columns.append(idx.cast(pl.Int64).alias("sample_idx"))
    for flag in ("censored", "budget_hit"):  # budget_hit stays null where a trace had no budget
        if flag in frame.columns:
            columns.append(_booleans(table, flag, keys, nullable=True))
    frame = frame.with_columns(columns)
    out = _conform(frame, TRACE_COLUMNS).with_columns(
        pl.col("sample_idx").fill_null(0), pl.col("censored").fill_null(False))
    return _Table(file, out.with_columns(frame["_row"]))


def _check_duplicate_traces(tables: List[_Table]) -> pl.DataFrame:
    keys = ["model", "task", "item_id", "sample_idx"]
    frame = pl.concat([t.frame.with_columns(_file=pl.lit(i, pl.Int32)) for i, t in enumerate(tables)])
    dup = frame.filter(pl.struct(keys).is_duplicated())
    if dup.height:
        first = dup.row(0, named=True)
        again = dup.filter(pl.all_horizontal(pl.col(k) == first[k] for k in keys)).row(1, named=True)
        table, other = tables[again["_file"]], tables[first["_file"]]
        seen = f"row {first['_row']}" + ("" if other is table else f" of {other.path}")
        raise _fail(table.path, table.where(again, *keys), f"repeats {seen} (same model, task, item_id, sample_idx)",
                    "drop the copy, or number repeated samples of an item 0, 1, 2, ... in `sample_idx`")
    return frame.drop("_row", "_file")


def _read_trials(folder: Path, plausible: Mapping[str, Tuple[float, float]], humans: pl.DataFrame) -> pl.DataFrame:
    """trials.csv | trials.parquet, or no trials. RTs are checked (positive where kept, a plausible
    median) as a task's loader checks them: for tasks whose difficulty is an RT, not an error rate."""
    path = _maybe_one_of(folder, "trials", ("csv", "parquet"))
    if path is None:
        return empty_trials()
    table = _read_table(path, {"task", "item_id", "rt_s", "correct"})
    keys = ("task", "item_id", "participant")
    _require_values(table, ["task", "item_id"], keys, "every trial needs its task and item_id: fill them in or drop it")
    rt = _numbers(table, "rt_s", keys, "give the RT in seconds as a number, or leave it empty")
    correct = _proportions(table, "correct", keys)
    keep = _booleans(table, "keep", keys, nullable=True).fill_null(True) if "keep" in table.frame.columns \
        else pl.Series("keep", [True] * table.frame.height, pl.Boolean)
    frame = table.frame.with_columns(rt.alias("rt_s"), correct.alias("correct"), keep.alias("keep"))
    checked = _Table(path, frame)
    r, error_rate_tasks = pl.col("rt_s"), humans.filter(pl.col("measure") == "error_rate")["task"].unique()
    rt_kept = pl.col("keep") & ~pl.col("task").is_in(error_rate_tasks.to_list())
    row = _first(checked, rt_kept & r.is_not_null() & (r.is_nan() | r.is_infinite() | (r <= 0)))
    if row:
        raise _fail(path, checked.where(row, *keys), f"`rt_s` is {row['rt_s']} on a kept trial",
                    "RTs are positive seconds: fix it, leave it empty, or set `keep` to false for this trial")
    medians = frame.filter(rt_kept).group_by("task").agg(r.median().alias("median")).drop_nulls().sort("task")
    for task, median in medians.iter_rows():
        _check_plausible(path, f"task {task!r}", task, median, plausible, what="the median kept `rt_s` is")
    return _conform(frame, TRIAL_COLUMNS)


def _cost_from_models(file: Path, traces: pl.DataFrame, cost_of: Dict[str, str]) -> pl.DataFrame:
    parts = []
    for (model,), part in traces.partition_by("model", as_dict=True, maintain_order=True).items():
        column = cost_of.get(model)
        if not column or column not in part.columns:
            raise StudyError(f"{file}: no cost for model '{model}': add a `cost` column to the traces, or a "
                             "`cost` column to models.csv naming one (reasoning_tokens or total_tokens).")
        parts.append(part.with_columns(pl.col(column).alias("cost"), _cost_src=pl.lit(column)))
    return pl.concat(parts, how="diagonal_relaxed").sort("_row")
