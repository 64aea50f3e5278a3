"""ARC evaluation tasks (H-ARC stimuli): grids as text, the test output grid as the target.

Stimuli: `sources.stimuli`, the H-ARC copy of the 400 ARC evaluation tasks (one CSV row per
train/test example, grids in the "|row|row|" digit-string format). One item per test example:
item_id is the task name ("00576224"), or "<task>#<k>" for the 19 tasks with several test inputs.

Human data (optional): the H-ARC human data live on OSF (https://osf.io/bh8yq), not in the
mirror. Add `sources.human` pointing at your copy of their `summary_data.csv` (one row per
attempt: task_name, joint_id_task, attempt_number, solved, test_output_grid, ...) and each item
gets n_trials = participants who attempted the task, accuracy = share of them who solved it
within their attempts (the H-ARC success measure), and human_difficulty = the error rate. That
file has no solve times, so only `difficulty.measure: error_rate` is possible. Without
`sources.human`, every human column is null (n_trials 0) and only accuracy and cost are reported.
Participant ids: the summary file's `hashed_id` (null when the file lacks that column); without
`sources.human`, Task.trials has no rows.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import polars as pl

from cogdistill.config.schema import TaskConfig
from cogdistill.registry import RT_MEASURES
from cogdistill.tasks.item_table import (
    ITEM_COLUMNS,
    TaskDataError,
    empty_trials,
    item_table,
    read_csv,
    require_columns,
    trial_frame,
)
from cogdistill.tasks.scorers import Scored

STIMULUS_COLUMNS = ["task_type", "task_name", "example_type", "example_number", "input_grid", "output_grid"]
HUMAN_COLUMNS = ["task_name", "joint_id_task", "solved"]
_PIPE_GRID = re.compile(r"^\|(\d+\|)+$")


def grid_rows(grid: str) -> List[str]:
    """'|12|34|' -> ['12', '34']."""
    return [row for row in grid.strip().split("|") if row]


def render_grid(grid: str) -> str:
    return "\n".join(grid_rows(grid))


def render_problem(train: List[Tuple[str, str]], test_input: str) -> str:
    parts = []
    for k, (inp, out) in enumerate(train, 1):
        parts.append(f"Example {k}\nInput:\n{render_grid(inp)}\nOutput:\n{render_grid(out)}")
    parts.append(f"Test\nInput:\n{render_grid(test_input)}")
    return "\n\n".join(parts)


def _task_id(name: str) -> str:
    return name.strip().removesuffix(".json")




def _stimuli(path: Path) -> pl.DataFrame:
    raw = read_csv(path, as_text=True)
    require_columns(raw, STIMULUS_COLUMNS, path)
    for col in ("input_grid", "output_grid"):
        bad = [g for g in raw[col].to_list() if g is None or not _PIPE_GRID.match(g.strip())]
        if bad:
            raise TaskDataError(f"{path}: column '{col}' has {bad[0]!r}; expected a '|row|row|' digit grid.")
    rows: List[dict] = []
    for task, examples in raw.group_by("task_name", maintain_order=True):
        examples = examples.with_columns(pl.col("example_number").cast(pl.Int64)).sort("example_number")
        train = examples.filter(pl.col("example_type") == "train")
        tests = examples.filter(pl.col("example_type") == "test")
        name = _task_id(task[0])
        if train.height == 0 or tests.height == 0:
            raise TaskDataError(f"{path}: task {name!r} has {train.height} train and {tests.height} test examples.")
        pairs = list(zip(train["input_grid"], train["output_grid"]))
        for k, (inp, out) in enumerate(zip(tests["input_grid"], tests["output_grid"]), 1):
            rows.append({
                "item_id": name if tests.height == 1 else f"{name}#{k}",
                "task_name": name,
                "test_index": k,
                "n_test": tests.height,
                "target": out.strip(),
                "problem": render_problem(pairs, inp),
                "n_train": len(pairs),
            })
    return pl.DataFrame(rows)


def _truthy(col: str) -> pl.Expr:
    text = pl.col(col).cast(pl.Utf8).str.strip_chars().str.to_lowercase()
    return pl.when(text.is_in(["true", "1", "1.0", "yes"])).then(1).when(
        text.is_in(["false", "0", "0.0", "no"])).then(0).otherwise(None)


def _human_trials(path: Path, items: pl.DataFrame) -> pl.DataFrame:
    """One trial per participant x item: correct = solved in any attempt; participant = hashed_id."""
    raw = read_csv(path, as_text=True)
    require_columns(raw, HUMAN_COLUMNS, path)
    if "task_type" in raw.columns:  # H-ARC mixes training- and evaluation-set tasks
        raw = raw.filter(pl.col("task_type").str.strip_chars() == "evaluation")
    raw = raw.with_columns(task_id=pl.col("task_name").str.strip_chars().str.replace(r"\.json$", ""),
                           _solved=_truthy("solved"))
    if raw["_solved"].null_count():
        bad = raw.filter(pl.col("_solved").is_null())["solved"][0]
        raise TaskDataError(f"{path}: column 'solved' has {bad!r}; expected True/False (or 1/0).")
    has_grid = "test_output_grid" in raw.columns
    if has_grid:
        raw = raw.with_columns(_grid=pl.col("test_output_grid").map_elements(
            lambda g: normalise_grid(g) or "", return_dtype=pl.Utf8))
    frames = []
    for row in items.iter_rows(named=True):
        mine = raw.filter(pl.col("task_id") == row["task_name"])
        if row["n_test"] > 1 and has_grid:
            # tasks with several test inputs: the attempts at this test input, when the file says which
            matched = mine.filter(pl.col("_grid") == row["target"])
            mine = matched if matched.height else mine
        who = pl.col("hashed_id").first() if "hashed_id" in raw.columns else pl.lit(None, dtype=pl.Utf8)
        frames.append(
            mine.group_by("joint_id_task").agg(pl.col("_solved").max().alias("correct"), who.alias("participant"))
            .with_columns(item_id=pl.lit(row["item_id"]), target=pl.lit(row["target"]),
                          rt_s=pl.lit(None, dtype=pl.Float64))
        )
    return pl.concat(frames).select("item_id", "target", "rt_s", pl.col("correct").cast(pl.Int64),
                                    pl.col("participant").cast(pl.Utf8))


def _without_human(items: pl.DataFrame) -> pl.DataFrame:
    return items.with_columns(
        n_trials=pl.lit(0, dtype=pl.UInt32), n_rt_trials=pl.lit(0, dtype=pl.UInt32),
        **{c: pl.lit(None, dtype=pl.Float64) for c in
           ("accuracy", "rt_mean", "rt_median", "log_rt_mean", "human_difficulty")},
    )


def build_items(paths: Dict[str, Path], cfg: TaskConfig) -> Tuple[pl.DataFrame, pl.DataFrame]:
    if "stimuli" not in paths:
        raise TaskDataError(f"task '{cfg.name}': `sources.stimuli` (the H-ARC ARC_evaluation_tasks.csv) is required.")
    items = _stimuli(paths["stimuli"])
    human = paths.get("human")
    if human is None:
        return _without_human(items).select(ITEM_COLUMNS + [c for c in items.columns if c not in ITEM_COLUMNS]), empty_trials()
    if cfg.difficulty.measure in RT_MEASURES:
        raise TaskDataError(
            f"{human}: the H-ARC summary file has no solve times, so `difficulty.measure: "
            f"{cfg.difficulty.measure}` cannot be computed; use `difficulty.measure: error_rate`."
        )
    trials = _human_trials(human, items)
    if trials.height == 0:
        raise TaskDataError(f"{human}: no attempt matches any ARC evaluation task name of {paths['stimuli']}.")
    table = item_table(trials, cfg.difficulty, human)
    out = _without_human(items).drop([c for c in ITEM_COLUMNS if c not in ("item_id", "target")])
    out = out.join(table.drop("target"), on="item_id", how="left").with_columns(
        pl.col("n_trials").fill_null(0), pl.col("n_rt_trials").fill_null(0))
    return out.select(ITEM_COLUMNS + [c for c in items.columns if c not in ITEM_COLUMNS]), trial_frame(trials, cfg.difficulty)


# --- scorer -------------------------------------------------------------------------------

_PIPE = re.compile(r"\|(?:\d+\|)+")
# a row of digits on its own line: "123", "1 2 3", "1,2,3", "[1, 2, 3]," (JSON-ish rows)
_ROW = re.compile(r"[\s\[]*(\d(?:[ \t,]*\d)*)[\s\],]*")


def _line_grids(text: str) -> List[Tuple[int, str]]:
    """Blocks of consecutive digit-row lines, as (start offset, '|row|row|')."""
    grids: List[Tuple[int, str]] = []
    start: Optional[int] = None
    rows: List[str] = []
    pos = 0
    for line in text.splitlines(keepends=True):
        match = _ROW.fullmatch(line.rstrip("\r\n"))
        if match:
            if start is None:
                start = pos + match.start(1)
            rows.append(re.sub(r"[^\d]", "", match.group(1)))
        elif start is not None:
            grids.append((start, "|" + "|".join(rows) + "|"))
            start, rows = None, []
        pos += len(line)
    if start is not None:
        grids.append((start, "|" + "|".join(rows) + "|"))
    return grids


def find_grids(text: str) -> List[Tuple[int, str]]:
    """Every grid in the text, in order of position: '|12|34|' strings and blocks of digit rows."""
    found = [(m.start(), m.group(0)) for m in _PIPE.finditer(text)] + _line_grids(text)
    return sorted(found)


def normalise_grid(grid: Optional[str]) -> Optional[str]:
    if grid is None:
        return None
    grids = find_grids(str(grid))
    return grids[-1][1] if grids else None


def score_grid(text: str, target: str) -> Scored:
    """The last grid in the answer, exact match against the target grid ('|row|row|')."""
    grids = find_grids(text)
    if not grids:
        return Scored(answer=None, start=None, correct=False)
    start, answer = grids[-1]
    return Scored(answer=answer, start=start, correct=answer == normalise_grid(target))
