"""Tasks: human data in, a frozen Task (items + human difficulty + trials + prompts + scorer) out.

cogdistill.registry.TASK_KINDS maps a config's `kind` to the function that builds its item table
and its trial frame (item_table.trial_frame); its module is imported only when a task of that kind
is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import polars as pl

from cogdistill.config.schema import TaskConfig
from cogdistill.tasks.item_table import ITEM_COLUMNS, TaskDataError, check_trial_frame, empty_trials
from cogdistill.registry import SCORERS, TASK_KINDS
from cogdistill.tasks.scorers import Scored
from cogdistill.tasks.sources import fetch
from cogdistill.tasks.split import apply_split

@dataclass(frozen=True)
class Task:
    name: str
    config: TaskConfig
    items: pl.DataFrame  # ITEM_COLUMNS + the prompt template's fields
    # one row per human trial of `items` (human.TRIAL_SCHEMA: item_id, participant, rt_s, correct,
    # keep); no rows when the source has no trial-level data
    trials: pl.DataFrame = field(default_factory=empty_trials)

    def prompts(self) -> List[str]:
        return [self.config.prompt.format(**row) for row in self.items.iter_rows(named=True)]

    def score(self, text: str, target: str) -> Scored:
        return SCORERS.load(self.config.scorer)(text, target)


def _builder(kind: str) -> Callable[[Dict[str, Path], TaskConfig], Tuple[pl.DataFrame, pl.DataFrame]]:
    return TASK_KINDS.load(kind)


def load_task(cfg: TaskConfig, *, mirror: str | None, cache: Path, timeout_s: float) -> Task:
    if cfg.max_items is not None and cfg.max_items < 1:
        raise TaskDataError(f"task '{cfg.name}': max_items={cfg.max_items} keeps no items; use a positive "
                            f"number (task.{cfg.name}.max_items=10) or null for all items.")
    paths = {
        key: fetch(src, mirror=mirror, cache=cache, timeout_s=timeout_s, task=cfg.name)
        for key, src in cfg.sources.items()
    }
    # a sweep's jobs share their tasks: built once per process while the config and files are unchanged
    key = (repr(cfg), tuple((k, str(p), *_stamp(p)) for k, p in paths.items()))
    if key not in _LOADED:
        _LOADED[key] = _build(cfg, paths)
    return _LOADED[key]


_LOADED: Dict[tuple, Task] = {}


def _stamp(path: Path) -> Tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


def _build(cfg: TaskConfig, paths: Dict[str, Path]) -> Task:
    items, trials = _builder(cfg.kind)(paths, cfg)
    trials = check_trial_frame(trials, cfg.kind)
    missing = [c for c in ITEM_COLUMNS if c not in items.columns]
    if missing:
        raise TaskDataError(f"task kind '{cfg.kind}' built an item table without {missing}.")
    if items["item_id"].dtype != pl.Utf8:  # ids are text end to end: '07' must stay '07'
        raise TaskDataError(f"task kind '{cfg.kind}' built item ids of type {items['item_id'].dtype}; "
                            "item ids must be read as text (Utf8).")
    if items["item_id"].is_duplicated().any():
        dup = items.filter(items["item_id"].is_duplicated())["item_id"][0]
        raise TaskDataError(f"task '{cfg.name}': duplicate item id {dup!r} in {list(paths.values())}; "
                            "every item needs its own id: fix the file's ids (or the task kind's id scheme).")
    if items.height == 0:
        raise TaskDataError(f"task '{cfg.name}': no items in {list(paths.values())}; the file holds no data "
                            "rows that make an item: check that it is the intended file and not cut short.")
    items = apply_split(items.sort("item_id"), cfg.name, cfg.items_split, cfg.split_k)
    if cfg.max_items is not None:
        items = items.head(cfg.max_items)
    try:
        Task(cfg.name, cfg, items.head(1)).prompts()
    except KeyError as exc:
        raise TaskDataError(
            f"task '{cfg.name}': prompt template uses {{{exc.args[0]}}} but items have only {items.columns}: "
            "add that column to the data file or change `prompt:` in the task config."
        ) from exc
    except (IndexError, ValueError) as exc:  # "{0}", "{a", "{a!z}": str.format's own complaints
        raise TaskDataError(
            f"task '{cfg.name}': `prompt:` is not a valid template ({exc}); name item fields as {{field}} "
            "and write literal braces as {{ and }}."
        ) from exc
    trials = trials.filter(pl.col("item_id").is_in(items["item_id"].implode()))
    return Task(name=cfg.name, config=cfg, items=items, trials=trials)
