"""Every comparison in the report: each selects its rows from the study and calls cogdistill.stats.

Inputs (built by cogdistill.report.study):
- `traces`: one row per model x task x item x sample: model, task, item_id, sample_idx, cost
  (the tokens the job counted as cost), correct, censored;
- `humans`: one row per task x item: task, item_id, human_difficulty, measure;
- `models`: one row per model: model, role, family, teacher, base.
Outputs are polars frames (one row per model x task, per family x task, ...) or plain dicts.
Undefined numbers are NaN (null in report.json) with a one-line reason in the row's `note`,
never errors and never a number computed from whatever happened to be left: a study of two
controls has no families to compare, and a report over it must still build.

Censoring (stats.CENSORED_POLICIES): `per_item` applies the policy; every analysis downstream
reads its `cost_mean` (null for an item the policy dropped) or the traces `stats.censoring_filter`
keeps, so one policy holds for r, inflation, inverse efficiency, JSD, RSA and the fixed effects.

The mathematics (Fisher z, Williams' t, the JS divergence's bootstrap and permutation test, Cohen's
d, the regressions) is in cogdistill.stats, one function per quantity, with its reference tests.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import numpy as np
import polars as pl

from cogdistill.stats import correlation as stats
from cogdistill.stats import fisher, regression
from cogdistill.stats.dependent import williams_power, williams_t
from cogdistill.stats.divergence import JS_PERMUTATIONS, MIN_EFFORT_ITEMS, effort_divergence
from cogdistill.stats.effects import cohens_d, paired_test
from cogdistill.tasks.item_table import RT_MEASURES

NAN = float("nan")


# ---- 1. per model x task ---------------------------------------------------------------------

def per_item(traces: pl.DataFrame, humans: pl.DataFrame, censored: str = "drop") -> pl.DataFrame:
    """One row per model x task x item: mean cost over the samples the censoring policy keeps
    (null when it keeps none), its log, accuracy, human difficulty. Each task's measure is set on
    every row (items without human data included)."""
    agg = stats.mean_over_samples(traces, "cost", keys=("model", "task", "item_id"), censored=censored)
    measures = humans.group_by("task").agg(pl.col("measure").drop_nulls().first())
    return (agg.join(humans.select("task", "item_id", "human_difficulty"), on=["task", "item_id"], how="left")
            .join(measures, on="task", how="left")
            .sort("model", "task", "item_id"))


def alignment_table(items: pl.DataFrame, traces: pl.DataFrame, *, n_boot: int = 2000, ci: float = 0.95,
                    seed: int = 0, censored: str = "drop") -> pl.DataFrame:
    """The paper's measure per model x task: r(log cost, human RT) with p, rho, bootstrap CI, BF,
    and (multiplicity over every cell of the report) Benjamini-Hochberg q. `items` is per_item's
    output under the same policy, dropped items included (they are counted and listed)."""
    from cogdistill.report.parallel import split_map

    rows, resamples = [], []  # resamples: (row, x, y) of each cell whose CI is to be bootstrapped

    def later(x, y, **_):  # the bootstraps (a third of the report's CPU) run together, on both cores
        resamples.append((len(rows), x, y))
        return math.nan, math.nan, None

    by_cell = traces.partition_by("model", "task", as_dict=True)
    for (model, task), cell in items.partition_by("model", "task", as_dict=True).items():
        al = stats.alignment(task, cell, by_cell[(model, task)], "cost", n_boot=n_boot, ci=ci, seed=seed,
                             censored=censored, bootstrap=later)
        rows.append({"model": model, **al.as_dict(), "measure": cell["measure"][0],
                     "cost_source": cost_source(by_cell[(model, task)])})
    cis = split_map(lambda job: stats.bootstrap_r_ci_checked(job[1], job[2], n_boot=n_boot, ci=ci, seed=seed),
                    resamples)
    for (row, _, _), (low, high, note) in zip(resamples, cis):
        rows[row].update(r_ci_low=low, r_ci_high=high, ci_note=note)
    table = pl.DataFrame(rows, infer_schema_length=None).sort("model", "task")
    if not table.height:
        return table
    table = table.with_columns(
        q=pl.Series(stats.bh_qvalues(table["p"].to_list()), dtype=pl.Float64),
        bf01=1 / pl.col("bf10"))
    return with_budget_sensitivity(table)


def cost_source(traces: pl.DataFrame) -> str:
    """Whose count a cell's cost is: "counted" (ours), "server" (a hosted API's reported reasoning
    tokens, cogdistill.engines.protocols.ServerCount) or "mixed"; never silently one for the other."""
    if "cost_source" not in traces.columns:
        return "counted"
    sources = set(traces["cost_source"].fill_null("counted").unique().to_list())
    return sources.pop() if len(sources) == 1 else "mixed"


def with_budget_sensitivity(table: pl.DataFrame, alpha: float = 0.05) -> pl.DataFrame:
    """For cells with censored items: q under the `budget` reading (the same BH family, budget p
    where a cell has one) and whether the conclusion (sign, or q < alpha) changes with the policy."""
    p_budget = [pb if cens and pb is not None and math.isfinite(pb) else p
                for p, pb, cens in zip(table["p"], table["p_budget"], table["censored_traces"])]
    r_budget = [rb if cens else r for r, rb, cens in zip(table["r"], table["r_budget"], table["censored_traces"])]
    q_budget = stats.bh_qvalues(p_budget)

    def verdict(r, q):  # undefined and not significant are one conclusion: no evidence of alignment
        if r is None or not math.isfinite(r) or q is None or not math.isfinite(q) or q >= alpha:
            return "no evidence"
        return "positive" if r > 0 else "negative"

    changes = [bool(cens) and verdict(r, q) != verdict(rb, qb)
               for r, q, rb, qb, cens in zip(table["r"], table["q"], r_budget, q_budget, table["censored_traces"])]
    return table.with_columns(q_budget=pl.Series(q_budget, dtype=pl.Float64),
                              conclusion_changes_with_censoring=pl.Series(changes, dtype=pl.Boolean))


def reliability_tables(traces: pl.DataFrame, humans: pl.DataFrame, trials: pl.DataFrame, alignment: pl.DataFrame,
                       *, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(per task: the split-half reliability of human difficulty from the trial-level data;
    alignment with, per cell, the cost's split-half reliability over samples, the noise ceiling
    sqrt(rel_human x rel_model) and r / ceiling beside r). `traces` are the policy's traces."""
    from cogdistill.stats import reliability as R

    measures = dict(humans.group_by("task").agg(pl.col("measure").drop_nulls().first()).iter_rows())
    by_task = trials.partition_by("task", as_dict=True) if trials.height else {}
    human_rows, human = [], {}
    for task in sorted(alignment["task"].unique()):
        part = by_task.get((task,))
        res = (R.human_split_half(part, measures.get(task) or "mean_rt", seed=seed) if part is not None
               else {"reliability": NAN, "note": R.NO_TRIALS})
        human[task] = res
        human_rows.append({"task": task, "measure": measures.get(task), **{k: res.get(k) for k in _REL_KEYS}})
    cells = []
    cost_by_cell = traces.select("model", "task", "item_id", "sample_idx", "cost").partition_by(
        "model", "task", as_dict=True)
    for row in alignment.select("model", "task", "r").iter_rows(named=True):
        cell = cost_by_cell.get((row["model"], row["task"]))
        model = R.model_split_half(cell, seed=seed) if cell is not None else {"reliability": NAN, "note": "no traces"}
        ceiling = R.cell_ceiling(row["r"], human[row["task"]], model)
        cells.append({"model": row["model"], "task": row["task"], **ceiling, "cost_reliability_note": model.get("note")})
    ceiling_schema = {"model": pl.Utf8, "task": pl.Utf8, "human_reliability": pl.Float64,
                      "cost_reliability": pl.Float64, "noise_ceiling": pl.Float64, "r_normalised": pl.Float64,
                      "ceiling_note": pl.Utf8, "cost_reliability_note": pl.Utf8}
    human_schema = {"task": pl.Utf8, "measure": pl.Utf8, "reliability": pl.Float64, "median": pl.Float64,
                    "sd": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64, "r_half": pl.Float64,
                    "n_splits_used": pl.Int64, "n_participants": pl.Int64, "n_items": pl.Int64, "note": pl.Utf8}
    return (pl.DataFrame(human_rows, schema=human_schema),
            alignment.join(pl.DataFrame(cells, schema=ceiling_schema), on=["model", "task"], how="left"))


_REL_KEYS = ("reliability", "median", "sd", "ci_low", "ci_high", "r_half", "n_splits_used", "n_participants",
             "n_items", "note")


# ---- 2. per model ----------------------------------------------------------------------------

def model_summary(alignment: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    rows = []
    for (model,), cells in alignment.partition_by("model", as_dict=True).items():
        rs = cells["r"].to_list()
        rt_tasks = items.filter((pl.col("model") == model) & pl.col("measure").is_in(list(RT_MEASURES)))
        per_task = {t: df for (t,), df in rt_tasks.partition_by("task", as_dict=True).items()}
        rows.append({"model": model, "n_tasks": cells.height, "r_mean": stats.plain_mean(rs),
                     "r_mean_fisher": fisher.fisher_mean(rs), "r_cross_task": stats.cross_task_r(per_task)})
    return pl.DataFrame(rows, schema={"model": pl.Utf8, "n_tasks": pl.Int64, "r_mean": pl.Float64,
                                      "r_mean_fisher": pl.Float64, "r_cross_task": pl.Float64}).sort("model")


# ---- 3. by role ------------------------------------------------------------------------------



def role_means(alignment: pl.DataFrame, models: pl.DataFrame, ci: float = 0.95) -> pl.DataFrame:
    """Mean r of each role over its model x task cells: the paper's unweighted mean (teachers
    0.64, students 0.34); the inverse-variance weighted Fisher-z mean, in which a 60-item task
    weighs 19 times a 6-item one (weights n - 3), with its fixed-effect CI (r_weighted: as if every
    cell estimated one correlation, too narrow when cells differ); and the random-effects mean
    (r_random: tau^2 between cells by REML, as metafor::rma), whose CI is the one to read. Cells
    are not independent either (they share models and tasks): the multilevel model
    (report.multilevel) is the inference."""
    from cogdistill.stats.random_effects import random_effects_fisher_mean

    joined = alignment.join(models.select("model", "role"), on="model", how="left")
    if "n_items" not in joined.columns:
        joined = joined.with_columns(n_items=pl.lit(None, pl.Int64))
    rows = []
    for (role,), cells in joined.partition_by("role", as_dict=True).items():
        defined = cells.filter(pl.col("r").is_not_null() & pl.col("r").is_not_nan())
        rs = defined["r"].to_list()
        low, high = fisher.fisher_ci(rs, ci)
        weighted = fisher.weighted_fisher_mean(rs, defined["n_items"].to_list(), ci)
        random = random_effects_fisher_mean(rs, defined["n_items"].to_list(), ci)
        rows.append({"role": role or "?", "n_models": cells["model"].n_unique(), "n_cells": len(rs),
                     "n_cells_undefined": cells.height - len(rs),
                     "r_mean": stats.plain_mean(rs), "r_mean_fisher": fisher.fisher_mean(rs),
                     "ci_low": low, "ci_high": high, "r_weighted": weighted["r"],
                     "weighted_ci_low": weighted["ci_low"], "weighted_ci_high": weighted["ci_high"],
                     "r_random": random["r"], "random_ci_low": random["ci_low"], "random_ci_high": random["ci_high"],
                     "tau2": random["tau2"], "i2": random["i2"],
                     "n_items_total": int(defined["n_items"].fill_null(0).sum())})
    return pl.DataFrame(rows, schema={"role": pl.Utf8, "n_models": pl.Int64, "n_cells": pl.Int64,
                                      "n_cells_undefined": pl.Int64, "r_mean": pl.Float64,
                                      "r_mean_fisher": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
                                      "r_weighted": pl.Float64, "weighted_ci_low": pl.Float64,
                                      "weighted_ci_high": pl.Float64, "r_random": pl.Float64,
                                      "random_ci_low": pl.Float64, "random_ci_high": pl.Float64, "tau2": pl.Float64,
                                      "i2": pl.Float64, "n_items_total": pl.Int64}).sort("role")


def precision_table(alignment: pl.DataFrame) -> pl.DataFrame:
    """Per task: how much its item count can show. The median CI width over its cells, the
    smallest |r| detectable at 80% power, and the power to detect the paper's teacher-student
    difference (0.64 vs 0.34) between two models on all its items (cost correlation 0: the
    conservative case; the family table uses each pair's observed one)."""
    rows = []
    for (task,), cells in alignment.partition_by("task", as_dict=True).items():
        n = int(cells["n_items"].max() or 0)
        width = (cells["r_ci_high"] - cells["r_ci_low"]).drop_nulls().drop_nans()
        power = williams_power(n, 0.0)
        rows.append({"task": task, "n_items": n, "median_ci_width": float(width.median()) if width.len() else NAN,
                     "detectable_r": stats.detectable_r(n), "power_teacher_vs_student": power,
                     "underpowered": not (math.isfinite(power) and power >= 0.8)})
    return pl.DataFrame(rows, schema={"task": pl.Utf8, "n_items": pl.Int64, "median_ci_width": pl.Float64,
                                      "detectable_r": pl.Float64, "power_teacher_vs_student": pl.Float64,
                                      "underpowered": pl.Boolean}).sort("task")


# ---- 4. collapse and negative transfer ---------------------------------------------------------





def compare_dependent(items: pl.DataFrame, task: str, model_a: str, model_b: str) -> Dict[str, Any]:
    """r(a), r(b) on their shared items of `task`, r between their costs, and Williams' t of r(a) - r(b)."""
    def costs(model: str) -> pl.DataFrame:
        return items.filter((pl.col("model") == model) & (pl.col("task") == task)
                            & pl.col("human_difficulty").is_not_null() & pl.col("log_cost").is_not_null()
                            ).select("item_id", "human_difficulty", pl.col("log_cost").alias(model))

    both = costs(model_a).join(costs(model_b).drop("human_difficulty"), on="item_id", how="inner")
    h, a, b = (both[c].to_numpy() for c in ("human_difficulty", model_a, model_b))
    r_a, r_b, r_ab = stats.pearson(h, a)[0], stats.pearson(h, b)[0], stats.pearson(a, b)[0]
    t, p = williams_t(r_a, r_b, r_ab, both.height)
    note = None
    if both.height <= 3:
        note = f"{both.height} shared item(s) with human data: Williams' t needs at least 4"
    elif not (math.isfinite(r_a) and math.isfinite(r_b)):
        note = f"r undefined for {model_a if not math.isfinite(r_a) else model_b} on the shared items"
    elif not math.isfinite(t):
        note = "the three correlations are not jointly possible (singular): no test"
    return {"n": both.height, "r_a": r_a, "r_b": r_b, "r_ab": r_ab, "t": t, "p": p,
            "power": williams_power(both.height, r_ab), "note": note}






LINK_ROLES = ("student", "rl")  # models compared with their teacher and base; rl never pooled with students


def family_table(items: pl.DataFrame, models: pl.DataFrame, power_threshold: float = 0.8) -> pl.DataFrame:
    """Per student or rl model (a model with a teacher or a base in the study) x task: its r
    against the teacher's and the base's, each difference tested with Williams' t on the items
    both have (r_student_vs_* is the student's r on exactly those items). A comparison whose
    power to detect the paper's 0.64 vs 0.34 is below 80% at its size is marked underpowered."""
    present = set(models["model"])
    rows = []
    for m in models.iter_rows(named=True):
        teacher = m["teacher"] if m["teacher"] in present else None
        base = m["base"] if m["base"] in present else None
        if m["role"] not in LINK_ROLES or not (teacher or base):
            continue
        for task in sorted(items.filter(pl.col("model") == m["model"])["task"].unique()):
            own = items.filter((pl.col("model") == m["model"]) & (pl.col("task") == task)
                               & pl.col("human_difficulty").is_not_null() & pl.col("log_cost").is_not_null())
            row = {"student": m["model"], "role": m["role"], "family": m["family"], "task": task,
                   "teacher": teacher, "base": base, "n_student": own.height,
                   "r_student": stats.pearson(own["human_difficulty"].to_numpy(), own["log_cost"].to_numpy())[0]}
            notes = [] if own.height else ["no item with human data and a complete cost (all censored?)"]
            for other, link, label in ((teacher, m["teacher"], "teacher"), (base, m["base"], "base")):
                res = compare_dependent(items, task, m["model"], other) if other else {}
                if not other:
                    notes.append(f"{label} {link!r} is not in this study" if link else f"no {label} link")
                elif res["note"]:
                    notes.append(f"vs {label}: {res['note']}")
                row[f"r_{label}"] = res.get("r_b", NAN)
                row[f"r_student_vs_{label}"] = res.get("r_a", NAN)  # the student's r on the shared items
                row[f"n_vs_{label}"] = res.get("n", 0)
                row[f"delta_{label}"] = res.get("r_a", NAN) - res.get("r_b", NAN)
                row[f"t_vs_{label}"], row[f"p_vs_{label}"] = res.get("t", NAN), res.get("p", NAN)
                row[f"power_vs_{label}"] = res.get("power", NAN)
                power = row[f"power_vs_{label}"]
                row[f"underpowered_vs_{label}"] = bool(other) and not (math.isfinite(power) and power >= power_threshold)
            row["note"] = "; ".join(notes) or None
            rows.append(row)
    schema = {"student": pl.Utf8, "role": pl.Utf8, "family": pl.Utf8, "task": pl.Utf8, "teacher": pl.Utf8,
              "base": pl.Utf8, "n_student": pl.Int64, "r_student": pl.Float64}
    for label in ("teacher", "base"):
        schema.update({f"r_{label}": pl.Float64, f"r_student_vs_{label}": pl.Float64, f"n_vs_{label}": pl.Int64,
                       f"delta_{label}": pl.Float64, f"t_vs_{label}": pl.Float64, f"p_vs_{label}": pl.Float64,
                       f"power_vs_{label}": pl.Float64, f"underpowered_vs_{label}": pl.Boolean})
    schema["note"] = pl.Utf8
    table = pl.DataFrame(rows, schema=schema).select(list(schema))
    # one BH family over every Williams' test of the report (vs teacher and vs base together)
    q = stats.bh_qvalues(table["p_vs_teacher"].to_list() + table["p_vs_base"].to_list())
    return table.with_columns(q_vs_teacher=pl.Series(q[:table.height], dtype=pl.Float64),
                              q_vs_base=pl.Series(q[table.height:], dtype=pl.Float64))




def zoo_paired_tests(families: pl.DataFrame) -> Dict[str, Dict[str, Any]]:
    """Across the zoo (every student x task cell), the paper's test: paired t of the student's r
    against the base's and the teacher's (the paper: students below their bases, t = -2.60,
    p = 0.011), each pair on the items both models have. Distilled students only: rl models get
    their own lines, never pooled with them. Cells share models and tasks, so these t tests
    overstate the evidence; report.multilevel has the design-respecting contrasts."""
    out = {}
    for role, prefix in (("student", "student"), ("rl", "rl")):
        cells = families.filter(pl.col("role") == role)
        for label in ("base", "teacher"):
            test = paired_test(cells[f"r_student_vs_{label}"].to_list(), cells[f"r_{label}"].to_list())
            test["label"] = ("the paper's test: " if role == "student" else "") + f"{role} vs {label}, paired t over cells"
            out[f"{prefix}_vs_{label}"] = test
    return out


# ---- 5. cargo cult -------------------------------------------------------------------------------

def _paired_means(items: pl.DataFrame, model: str, other: Optional[str]) -> Dict[str, tuple]:
    """Per task: (mean cost of `model`, mean cost of `other`) over the items both have a complete
    cost for, so the censoring policy and missing items never compare different item sets."""
    if not other:
        return {}
    a = items.filter(pl.col("model") == model).select("task", "item_id", pl.col("cost_mean").alias("a"))
    b = items.filter(pl.col("model") == other).select("task", "item_id", pl.col("cost_mean").alias("b"))
    both = a.join(b, on=["task", "item_id"]).drop_nulls().group_by("task").agg(pl.col("a").mean(), pl.col("b").mean())
    return {t: (x, y) for t, x, y in both.iter_rows()}


def inflation(items: pl.DataFrame, models: pl.DataFrame) -> pl.DataFrame:
    """Verbosity inflation per student x task: its mean tokens over the base's and the teacher's,
    each ratio on the items the two models share."""
    own = items.group_by("model", "task").agg(pl.col("cost_mean").mean().alias("tokens"))
    rows = []
    for m in models.filter(pl.col("role").is_in(list(LINK_ROLES))).iter_rows(named=True):
        vs_base, vs_teacher = _paired_means(items, m["model"], m["base"]), _paired_means(items, m["model"], m["teacher"])
        for task, tokens in own.filter(pl.col("model") == m["model"]).select("task", "tokens").iter_rows():
            base, teacher = vs_base.get(task), vs_teacher.get(task)
            notes = [why for why in (_ratio_note("base", m["base"], base), _ratio_note("teacher", m["teacher"], teacher))
                     if why]
            rows.append({"student": m["model"], "role": m["role"], "task": task, "tokens": tokens,
                         "tokens_base": base[1] if base else None, "tokens_teacher": teacher[1] if teacher else None,
                         "vs_base": base[0] / base[1] if base and base[1] else None,
                         "vs_teacher": teacher[0] / teacher[1] if teacher and teacher[1] else None,
                         "note": "; ".join(notes) or None})
    return pl.DataFrame(rows, schema={"student": pl.Utf8, "role": pl.Utf8, "task": pl.Utf8, "tokens": pl.Float64,
                                      "tokens_base": pl.Float64, "tokens_teacher": pl.Float64,
                                      "vs_base": pl.Float64, "vs_teacher": pl.Float64,
                                      "note": pl.Utf8}).sort("student", "task")


def _ratio_note(which: str, other: Optional[str], means: Optional[tuple]) -> Optional[str]:
    """Why an inflation ratio is null (None when it is defined)."""
    if not other:
        return f"vs_{which}: no {which} linked in the models table"
    if not means:
        return f"vs_{which}: {other!r} has no item with a complete cost shared with this model on this task"
    if not means[1]:
        return f"vs_{which}: {other!r} spends 0 tokens on the shared items"
    return None




def elasticity(items: pl.DataFrame) -> pl.DataFrame:
    """Slope of log tokens on log human RT per model x task: how much cost grows with difficulty
    (1 = proportional). RT measures only: an error rate has no meaningful log."""
    rows = []
    rt_items = items.filter(pl.col("measure").is_in(list(RT_MEASURES)) & (pl.col("human_difficulty") > 0))
    for (model, task), cell in rt_items.partition_by("model", "task", as_dict=True).items():
        rows.append({"model": model, "task": task,
                     **regression.elasticity(cell["human_difficulty"].to_numpy(), cell["log_cost"].to_numpy())})
    return pl.DataFrame(rows, schema={"model": pl.Utf8, "task": pl.Utf8, "n": pl.Int64, "slope": pl.Float64,
                                      "slope_se": pl.Float64, "r2": pl.Float64, "note": pl.Utf8}).sort("model", "task")






















def relative_effort(items: pl.DataFrame, models: pl.DataFrame, *, n_boot: int = 500, n_perm: int = JS_PERMUTATIONS,
                    seed: int = 0) -> pl.DataFrame:
    """Per student x task, on the items both it and its teacher have: each item's cost over the
    teacher's mean cost on those items. The mean (about the inflation over the teacher), its
    spread, and the Jensen-Shannon divergence between the teacher's and the student's
    log(1 + relative effort) distributions, with a bootstrap CI (0 when the student allocates
    exactly like the teacher; a uniformly more verbose student shifts its distribution, so > 0),
    its permutation p over n_perm permutations and the p's Monte Carlo SE."""
    rows = []
    present = set(models["model"])
    for m in models.filter(pl.col("role").is_in(list(LINK_ROLES))).iter_rows(named=True):
        teacher = m["teacher"]
        for task in sorted(items.filter(pl.col("model") == m["model"])["task"].unique()):
            row = {"student": m["model"], "teacher": teacher, "task": task, "n_items": 0, "effort_mean": NAN,
                   "effort_sd": NAN, "teacher_effort_sd": NAN, "js_teacher_student": NAN, "js_ci_low": NAN,
                   "js_ci_high": NAN, "js_p": NAN, "js_p_mc_se": NAN, "js_n_perm": None, "note": None}
            pair = (items.filter((pl.col("model") == m["model"]) & (pl.col("task") == task))
                    .select("item_id", pl.col("cost_mean").alias("s"))
                    .join(items.filter((pl.col("model") == teacher) & (pl.col("task") == task))
                          .select("item_id", pl.col("cost_mean").alias("t")), on="item_id")
                    .drop_nulls())
            t_cost, s_cost = pair["t"].to_numpy().astype(float), pair["s"].to_numpy().astype(float)
            row["n_items"] = pair.height
            if not teacher or teacher not in present:
                row["note"] = f"teacher {teacher!r} is not in this study" if teacher else "no teacher link"
            elif pair.height < MIN_EFFORT_ITEMS:
                row["note"] = f"{pair.height} shared item(s) with a complete cost: needs at least {MIN_EFFORT_ITEMS}"
            elif not (np.isfinite(t_cost).all() and np.isfinite(s_cost).all()) or t_cost.mean() <= 0:
                row["note"] = "the teacher's mean cost is zero or undefined: no relative effort"
            else:
                row.update(effort_divergence(t_cost, s_cost, n_boot=n_boot, n_perm=n_perm, seed=seed))
            rows.append(row)
    return pl.DataFrame(rows, schema={"student": pl.Utf8, "teacher": pl.Utf8, "task": pl.Utf8, "n_items": pl.Int64,
                                      "effort_mean": pl.Float64, "effort_sd": pl.Float64,
                                      "teacher_effort_sd": pl.Float64, "js_teacher_student": pl.Float64,
                                      "js_ci_low": pl.Float64, "js_ci_high": pl.Float64, "js_p": pl.Float64,
                                      "js_p_mc_se": pl.Float64, "js_n_perm": pl.Int64, "note": pl.Utf8})


def inverse_efficiency(alignment: pl.DataFrame, models: pl.DataFrame) -> tuple[pl.DataFrame, Dict[str, float]]:
    """Mean tokens / accuracy per student x task and its base's, and the student-on-base
    regression (the "linear inflation law"). Cells with zero accuracy have no IE and are dropped."""
    ie = {(r["model"], r["task"]): (r["tokens_mean"] / r["accuracy"] if r["accuracy"] else None)
          for r in alignment.iter_rows(named=True)}
    rows = [{"student": m["model"], "role": m["role"], "base": m["base"], "task": task, "ie_student": value,
             "ie_base": ie.get((m["base"], task))}
            for m in models.filter(pl.col("role").is_in(list(LINK_ROLES))).iter_rows(named=True)
            for (model, task), value in ie.items() if model == m["model"]]
    table = pl.DataFrame(rows, schema={"student": pl.Utf8, "role": pl.Utf8, "base": pl.Utf8, "task": pl.Utf8,
                                       "ie_student": pl.Float64, "ie_base": pl.Float64}).sort("student", "task")
    students = table.filter(pl.col("role") == "student")  # the law is about distilled students; rl is not pooled
    usable = students.drop_nulls(["ie_student", "ie_base"]).filter(pl.col("ie_student").is_finite()
                                                                    & pl.col("ie_base").is_finite())
    fit = {"n": usable.height, "slope": NAN, "intercept": NAN, "r2": NAN, "p": NAN,
           "dropped_cells": students.height - usable.height, "note": None}
    if usable.height >= 3 and not stats.is_constant(usable["ie_base"].to_numpy()):
        fit.update(regression.line(usable["ie_base"].to_numpy(), usable["ie_student"].to_numpy()))
    else:
        fit["note"] = (f"{usable.height} student/base cell(s) with accuracy > 0: the regression needs 3 with "
                       "different base IE")
    return table, fit


# ---- 6. difficulty fingerprints ----------------------------------------------------------------

def fingerprints(items: pl.DataFrame, min_coverage: float = 0.9) -> tuple[pl.DataFrame, Dict[str, str]]:
    """Wide frame: one row per (task, item) shared by every kept model, one column per model of
    log cost z-scored within task, and `human` (human difficulty z-scored within task); and the
    models left out, each with its reason. A model whose cost is defined on fewer than
    `min_coverage` of the items the best-covered model has (censored, missing, constant within a
    task) is left out rather than shrinking every fingerprint to its items."""
    def z(col: str, *over: str) -> pl.Expr:
        return (pl.col(col) - pl.col(col).mean().over(*over)) / pl.col(col).std().over(*over)

    everyone = sorted(items["model"].unique().to_list())
    scored = (items.filter(pl.col("log_cost").is_not_null()).with_columns(z("log_cost", "model", "task").alias("z"))
              .filter(pl.col("z").is_finite()))
    dropped: Dict[str, str] = {}
    if scored.height:
        wide = scored.pivot(on="model", index=["task", "item_id"], values="z")
    else:
        wide = pl.DataFrame(schema={"task": pl.Utf8, "item_id": pl.Utf8})
    models = [c for c in wide.columns if c not in ("task", "item_id")]
    for m in everyone:
        if m not in models:
            dropped[m] = "no item with a complete cost that varies within a task (all censored, or constant)"
    coverage = {m: int(wide[m].is_not_null().sum()) for m in models}
    best = max(coverage.values(), default=0)
    for m in models:
        if coverage[m] < min_coverage * best:
            dropped[m] = (f"cost defined on {coverage[m]} of the {best} items the best-covered model has "
                          "(censored, missing or constant within a task)")
    keep = [m for m in models if m not in dropped]
    wide = wide.select("task", "item_id", *keep).drop_nulls()
    humans = (items.select("task", "item_id", "human_difficulty").unique(["task", "item_id"], maintain_order=True)
              .with_columns(human=z("human_difficulty", "task")).drop("human_difficulty"))
    return wide.join(humans, on=["task", "item_id"], how="left").sort("task", "item_id"), dropped


def rsa(fp: pl.DataFrame) -> pl.DataFrame:
    """Pairwise Pearson r between fingerprints (models and humans) over the items where all are
    defined (rsa_items says how many)."""
    cols = [c for c in fp.columns if c not in ("task", "item_id")]
    mat = stats.pearson_matrix(rsa_rows(fp).select(cols).to_numpy().astype(float))
    return pl.DataFrame({"fingerprint": cols, **{c: mat[:, k] for k, c in enumerate(cols)}})


def rsa_rows(fp: pl.DataFrame) -> pl.DataFrame:
    """The (task, item) rows RSA uses: every fingerprint, the human one included, defined."""
    return fp.drop_nulls().fill_nan(None).drop_nulls()


# ---- 7. beyond the paper: wrong vs right, correct-only alignment ---------------------------------



def wrong_vs_right(traces: pl.DataFrame) -> pl.DataFrame:
    """Per model x task: Cohen's d of log(1 + cost), wrong minus right traces, raw and within item
    (costs centred on their item's mean, so item difficulty is held fixed; needs items with both
    right and wrong samples, i.e. sampling with n > 1)."""
    t = traces.with_columns(log_cost=(pl.col("cost").cast(pl.Float64) + 1).log(), wrong=~pl.col("correct"))
    t = t.with_columns(centred=pl.col("log_cost") - pl.col("log_cost").mean().over("model", "task", "item_id"),
                       mixed=pl.col("wrong").n_unique().over("model", "task", "item_id") > 1)
    rows = []
    for (model, task), cell in t.partition_by("model", "task", as_dict=True).items():
        wrong, right = cell.filter(pl.col("wrong")), cell.filter(~pl.col("wrong"))
        mixed = cell.filter(pl.col("mixed"))
        rows.append({"model": model, "task": task, "n_wrong": wrong.height, "n_right": right.height,
                     "d": cohens_d(wrong["log_cost"].to_numpy(), right["log_cost"].to_numpy()),
                     "d_within_item": cohens_d(mixed.filter(pl.col("wrong"))["centred"].to_numpy(),
                                               mixed.filter(~pl.col("wrong"))["centred"].to_numpy()),
                     "n_mixed_items": mixed["item_id"].n_unique()})
    return pl.DataFrame(rows, schema={"model": pl.Utf8, "task": pl.Utf8, "n_wrong": pl.Int64, "n_right": pl.Int64,
                                      "d": pl.Float64, "d_within_item": pl.Float64,
                                      "n_mixed_items": pl.Int64}).sort("model", "task")


def wrong_vs_right_fixed_effects(traces: pl.DataFrame, max_iter: int = 50, tol: float = 1e-10) -> pl.DataFrame:
    """Per task, over all models: log(1 + cost) = item effect + model effect + beta * wrong.
    beta is the log-cost premium of a wrong answer with item difficulty and model verbosity
    held fixed (arXiv 2606.26502's design); d = beta / residual SD (stats.regression.wrong_premium)."""
    rows = []
    for (task,), cell in traces.partition_by("task", as_dict=True).items():
        frame = cell.select(
            "model", "item_id", y=(pl.col("cost").cast(pl.Float64) + 1).log(), w=(~pl.col("correct")).cast(pl.Float64))
        rows.append({"task": task, "n_traces": frame.height, "n_wrong": int(frame["w"].sum()),
                     **regression.wrong_premium(frame, max_iter=max_iter, tol=tol)})
    return pl.DataFrame(rows, schema={"task": pl.Utf8, "n_traces": pl.Int64, "n_wrong": pl.Int64, "beta": pl.Float64,
                                      "se": pl.Float64, "d": pl.Float64, "note": pl.Utf8}).sort("task")


def correct_only_alignment(traces: pl.DataFrame, humans: pl.DataFrame, alignment: pl.DataFrame) -> pl.DataFrame:
    """r on correct traces only (items the model never got right drop out) beside r on all traces."""
    correct = per_item(traces.filter(pl.col("correct")), humans)
    rows = []
    for (model, task), cell in correct.partition_by("model", "task", as_dict=True).items():
        known = cell.filter(pl.col("human_difficulty").is_not_null())
        rows.append({"model": model, "task": task, "n_items_correct": known.height,
                     "r_correct_only": stats.pearson(known["human_difficulty"].to_numpy(),
                                                     known["log_cost"].to_numpy())[0]})
    frame = pl.DataFrame(rows, schema={"model": pl.Utf8, "task": pl.Utf8, "n_items_correct": pl.Int64,
                                       "r_correct_only": pl.Float64})
    return (alignment.select("model", "task", pl.col("r").alias("r_all"), pl.col("n_items"))
            .join(frame, on=["model", "task"], how="left").sort("model", "task"))


def as_records(frame: pl.DataFrame) -> List[dict]:
    """Rows for JSON: NaN becomes None (JSON has no NaN)."""
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
            for row in frame.iter_rows(named=True)]
