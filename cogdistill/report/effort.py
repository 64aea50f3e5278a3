"""The reasoning-effort section of the report (report.json `effort_levels`): for every model config
run at two or more effort levels, per task, does alignment change with effort, or does effort only
cap length? The statistics are cogdistill/stats/effort.py's; here they meet the study.

A config's levels are the models rows that share `config` (null: the row's own model name), one
level per row from `effort` (null: `default`). Per config x task:

  levels           per level: its model and its alignment cell (r, bootstrap CI, p, n items)
  pairwise         every pair of levels: Williams' t on the items both have (analyses.compare_dependent),
                   Holm-adjusted over the config x task's pairs
  omnibus, bf01    the test of "the r's differ" (Steiger's equal dependent correlations) and BF01 for
                   "they do not"; p_holm: Holm over every config x task's omnibus test in the report
  manipulation     per level: mean and median cost, traces, budget-hit and censored fractions
  ceiling_or_dial  r(log cost at the highest level - at the lowest, human difficulty) and its verdict,
                   decided on Holm's p over every ceiling-or-dial test in the report (the family a
                   reader scans when looking for a dial), and BF01 for a ceiling
  missing_levels   levels the models table declares for the config that have no trace for the task

Named `effort_levels` because `relative_effort` (a student's per-item cost relative to its
teacher's) is a different analysis.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any, Dict, List, Optional

import polars as pl

from cogdistill.report import analyses as A
from cogdistill.stats import effort as E

LEVEL_CELL_KEYS = ("n_items", "r", "p", "r_ci_low", "r_ci_high", "bf10", "tokens_mean", "accuracy", "note",
                   "ci_note")


def effort_design(models: pl.DataFrame) -> pl.DataFrame:
    """model, config, level for the configs with at least two levels, sorted by config then level
    order. A repeated (config, level) keeps its first model by name (its others are ordinary models)."""
    schema = {"model": pl.Utf8, "config": pl.Utf8, "level": pl.Utf8}
    if not models.height:
        return pl.DataFrame(schema=schema)
    config = models["config"] if "config" in models.columns else pl.Series([None] * models.height, dtype=pl.Utf8)
    effort = models["effort"] if "effort" in models.columns else pl.Series([None] * models.height, dtype=pl.Utf8)
    rows = [{"model": m, "config": c or m, "level": E.normalise_level(e)}
            for m, c, e in zip(models["model"], config, effort)]
    frame = (pl.DataFrame(rows, schema=schema).sort("model").unique(["config", "level"], keep="first")
             .filter(pl.col("level").n_unique().over("config") >= 2))
    order = {level: k for k, level in enumerate(E.order_levels(frame["level"].to_list()))}
    return frame.with_columns(_rank=pl.col("level").replace_strict(order, return_dtype=pl.Int64)).sort(
        "config", "_rank").drop("_rank")


def effort_levels(items: pl.DataFrame, traces: pl.DataFrame, alignment: pl.DataFrame, models: pl.DataFrame, *,
                  n_boot: int = 2000, seed: int = 0) -> Dict[str, Dict[str, Any]]:
    """{config: {task: section}} (module docstring); empty when no config has two levels.
    items: analyses.per_item rows with a complete cost; traces: every trace of the study."""
    design = effort_design(models)
    out: Dict[str, Dict[str, Any]] = {}
    if not design.height:
        return out
    cells = {(r["model"], r["task"]): r for r in alignment.iter_rows(named=True)} if alignment.height else {}
    by_cell = traces.partition_by("model", "task", as_dict=True) if traces.height else {}
    for (config,), rows in design.partition_by("config", as_dict=True, maintain_order=True).items():
        members = set(rows["model"])
        tasks = sorted({task for (model, task) in cells if model in members})
        for task in tasks:
            declared = list(zip(rows["level"], rows["model"]))
            levels = [(lvl, m) for lvl, m in declared if (m, task) in cells]
            missing = [{"level": lvl, "model": m, "reason": f"declared for config {config!r} but no trace of "
                        f"{m!r} for task {task!r}"} for lvl, m in declared if (m, task) not in cells]
            if len(levels) < 2 and not missing:
                continue
            section = config_task(items, by_cell, cells, task, levels, n_boot=n_boot, seed=seed)
            section["missing_levels"] = missing
            if missing:
                said = f"level(s) {[m['level'] for m in missing]} declared but without traces for this task"
                section["note"] = "; ".join(filter(None, [section["note"], said]))
            out.setdefault(config, {})[task] = section
    adjust_families(out)
    return out


def adjust_families(effort: Dict[str, Dict[str, Any]], alpha: float = 0.05) -> None:
    """Holm over the families a reader scans: every omnibus test of the report, and every ceiling-or-
    dial test (whose verdict is then decided on the adjusted p). The pairwise tests keep their own
    family (the pairs of one config x task)."""
    sections = [sec for tasks in effort.values() for sec in tasks.values()]
    for sec, p in zip(sections, E.holm([sec["omnibus"]["p"] for sec in sections])):
        sec["omnibus"]["p_holm"] = p
    for sec, p in zip(sections, E.holm([sec["ceiling_or_dial"]["p"] for sec in sections])):
        cd = sec["ceiling_or_dial"]
        cd["p_holm"] = p
        if math.isfinite(cd["r"]):
            cd["verdict"], cd["verdict_reason"] = E.verdict(cd["r"], p, cd["bf01"], alpha=alpha)


def config_task(items: pl.DataFrame, by_cell: Dict, cells: Dict, task: str, levels: List[tuple], *,
                n_boot: int, seed: int) -> Dict[str, Any]:
    """One config x task: `levels` is [(level, model)] in level order."""
    names = [level for level, _ in levels]
    rows = _level_rows(items, task, levels)
    if len(levels) < 2:  # the other levels were declared but have no traces: a section that says so
        return {"levels": [{"level": level, "model": model, "budget": E.budget_of(level),
                            **{k: cells[(model, task)].get(k) for k in LEVEL_CELL_KEYS}} for level, model in levels],
                "pairwise": [], "omnibus": E.level_interaction(rows, names), "bf01": float("nan"),
                "manipulation": [{"level": level, "model": model, **E.manipulation(by_cell.get((model, task),
                                  pl.DataFrame(schema={"cost": pl.Float64})))} for level, model in levels],
                "ceiling_or_dial": E.ceiling_or_dial([], [], low=names[0] if names else "-",
                                                     high=names[-1] if names else "-"),
                "note": None}
    omnibus = E.level_interaction(rows, names)
    empty = pl.DataFrame(schema={"cost": pl.Float64})
    section = {
        "levels": [{"level": level, "model": model, "budget": E.budget_of(level),
                    **{k: cells[(model, task)].get(k) for k in LEVEL_CELL_KEYS}} for level, model in levels],
        "pairwise": _pairwise(items, task, levels),
        "omnibus": omnibus,
        "bf01": omnibus["bf01"],
        "manipulation": [{"level": level, "model": model, **E.manipulation(by_cell.get((model, task), empty))}
                         for level, model in levels],
        "ceiling_or_dial": _ceiling_or_dial(rows, names[0], names[-1], n_boot=n_boot, seed=seed),
    }
    unknown = [level for level in names if not E.is_known_level(level)]
    section["note"] = (f"level(s) {unknown} are not known effort names: ordered after `high`, before `default`"
                       if unknown else None)
    return section


def _level_rows(items: pl.DataFrame, task: str, levels: List[tuple]) -> pl.DataFrame:
    level_of = pl.DataFrame({"model": [m for _, m in levels], "level": [lvl for lvl, _ in levels]})
    return (items.filter(pl.col("task") == task).join(level_of, on="model")
            .select("item_id", "level", "log_cost", "human_difficulty"))


def _pairwise(items: pl.DataFrame, task: str, levels: List[tuple]) -> List[Dict[str, Any]]:
    """Williams' t for every pair of levels on their shared items (one family: Holm over it)."""
    tests = []
    for (level_a, model_a), (level_b, model_b) in combinations(levels, 2):
        res = A.compare_dependent(items, task, model_a, model_b)
        tests.append({"level_a": level_a, "level_b": level_b, "n": res["n"], "r_a": res["r_a"], "r_b": res["r_b"],
                      "r_ab": res["r_ab"], "t": res["t"], "df": res["n"] - 3 if res["n"] > 3 else None,
                      "p": res["p"], "note": res["note"]})
    for test, p_holm in zip(tests, E.holm([t["p"] for t in tests])):
        test["p_holm"] = p_holm
    return tests


def _ceiling_or_dial(rows: pl.DataFrame, low: str, high: str, *, n_boot: int, seed: int) -> Dict[str, Any]:
    def at(level: str) -> pl.DataFrame:
        return rows.filter((pl.col("level") == level) & pl.col("log_cost").is_not_null()).select(
            "item_id", "human_difficulty", pl.col("log_cost").alias(level))

    both = (at(low).join(at(high).drop("human_difficulty"), on="item_id")
            .filter(pl.col("human_difficulty").is_not_null()))
    return E.ceiling_or_dial((both[high] - both[low]).to_numpy(), both["human_difficulty"].to_numpy(),
                             low=low, high=high, n_boot=n_boot, seed=seed)


def metric_name(*parts: str) -> str:
    """An MLflow metric name from config and task names (MLflow allows [A-Za-z0-9_-. /])."""
    import re

    return "/".join(re.sub(r"[^A-Za-z0-9_\-. ]", "_", p) for p in parts)


def headline(effort: Dict[str, Dict[str, Any]]) -> Dict[str, Optional[float]]:
    """report/effort/<config>/<task>/bf01 and .../dial_r (the caller keeps the finite ones)."""
    metrics: Dict[str, Optional[float]] = {}
    for config, tasks in effort.items():
        for task, sec in tasks.items():
            metrics[f"report/effort/{metric_name(config, task)}/bf01"] = sec["bf01"]
            metrics[f"report/effort/{metric_name(config, task)}/dial_r"] = sec["ceiling_or_dial"]["r"]
    return metrics
