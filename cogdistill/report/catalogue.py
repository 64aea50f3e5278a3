"""The report's analyses, one registered unit each (result.Analysis), in the order build computes
them: an analysis needs only results named above it. Adding a statistic is its module (compute,
methods text, sections, figures and its ANALYSIS; split_half.py is one) and one line in ANALYSES.
Where it appears in report.json, report.md and figures: result.py's version 2 layout, then the rest.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

import polars as pl

from cogdistill.report import analyses as A
from cogdistill.report import figures as F
from cogdistill.report import render as R
from cogdistill.report import split_half
from cogdistill.report.result import Analysis, clean, json_safe, records
from cogdistill.stats import correlation as stats
from cogdistill.stats.divergence import JS_PERMUTATIONS
from cogdistill.stats.effects import geometric_mean

INPUTS = ("study", "n_boot", "ci", "seed", "censored")  # what build hands every analysis, beside results


def _items(study, censored: str):
    """(every item, those with a complete cost under the policy, the traces the policy keeps)."""
    all_items = A.per_item(study.traces, study.humans, censored)
    return (all_items, all_items.filter(pl.col("cost_mean").is_not_null()),
            stats.censoring_filter(study.traces, censored))


def _inflation(items: pl.DataFrame, study):
    table = A.inflation(items, study.models)
    students = table.filter(pl.col("role") == "student")
    return table, {"student_vs_base_geomean": geometric_mean(students["vs_base"].to_list()),
                   "student_vs_teacher_geomean": geometric_mean(students["vs_teacher"].to_list()),
                   "student_vs_base_cv": _cv(students["vs_base"]), "n_cells": students.height}


def _cv(series: pl.Series) -> float:
    """Coefficient of variation of the inflation factors: near 0 = a near-constant factor."""
    vals = series.drop_nulls().drop_nans()
    return float(vals.std() / vals.mean()) if vals.len() >= 2 and vals.mean() else float("nan")


def _fingerprints(all_items: pl.DataFrame):
    fp, dropped = A.fingerprints(all_items)  # all models: one whose every item was dropped is named
    return fp, dropped, A.rsa(fp), A.rsa_rows(fp).height


def start_design_models(alignment: pl.DataFrame, items: pl.DataFrame,
                        models: pl.DataFrame) -> Callable[[], Dict[str, Any]]:
    """The inference that respects the design (report.multilevel): role contrasts from a multilevel
    model of the cells' Fisher z now, and the item-level mixed model's REML fit (~0.7 s at 256k
    traces, numpy only) in a forked process while the caller goes on; the returned call waits."""
    from cogdistill.report import multilevel

    roles = models.select("model", "role")
    cells = alignment.join(roles, on="model", how="left").select("model", "task", "role", "r",
                                                                  pl.col("n_items").alias("n"))
    rows = items.filter(pl.col("human_difficulty").is_not_null()).join(roles, on="model", how="left").select(
        "model", "task", "item_id", "role", "log_cost", "human_difficulty")
    contrasts = multilevel.role_contrasts(cells)
    item_model = multilevel.start_item_mixed_model(rows)
    return lambda: {"role_contrasts": contrasts, "item_model": item_model()}


def _effort_levels(items: pl.DataFrame, study, alignment: pl.DataFrame, n_boot: int, seed: int) -> Dict[str, Any]:
    from cogdistill.report.effort import effort_design, effort_levels

    if not effort_design(study.models).height:  # no effort factor: nothing to import or compute
        return {}
    return effort_levels(items, study.traces, alignment, study.models, n_boot=n_boot, seed=seed)


def _rsa_json(report) -> Dict[str, Any]:
    return {"n_items": report.rsa_items, "models": [c for c in report.rsa["fingerprint"] if c != "human"],
            "dropped": report.fingerprints_dropped, "rsa": records(report.rsa)}


def _frame(name: str) -> Callable:
    return lambda report: records(report[name])


ALIGNMENT_METHODS = (
    ("r", "Pearson r between log(1 + mean cost per item) and human difficulty across a task's items"),
    ("ci", f"percentile bootstrap over items; none when r is undefined, n < {stats.MIN_CI_ITEMS}, or more than "
           f"{stats.MAX_UNDEFINED_RESAMPLES:.0%} of resamples have a constant side"),
    ("q", "Benjamini-Hochberg over every cell's r test (alignment) and over every Williams' test (families)"),
    ("bf10", "default Bayes factor for a correlation, stretched beta prior of width 1 "
             "(Ly, Verhagen & Wagenmakers 2016; JASP, pingouin); bf01 = 1 / bf10"),
    ("detectable_r", "smallest |r| with 80% power at alpha .05 over the cell's items (Fisher z)"))
RELIABILITY_METHODS = (
    ("human_reliability", "split-half over participants: random halves, item difficulty by the task's measure in "
                          "each, Pearson r across items, Spearman-Brown; mean over 1,000 seeded splits (Parsons, "
                          "Kruijt & Fox 2019); undefined without participant ids"),
    ("noise_ceiling", "sqrt(human reliability x cost reliability); the cost's split-half reliability over samples "
                      "(halves of floor(k/2) and the rest, corrected for those lengths to the mean over all k: "
                      "Spearman-Brown when k is even) needs >= 2 per item, else the human reliability alone (a "
                      "deterministic cost); "
                      "r_normalised = r / noise_ceiling, beside r, never instead of it"))
ROLE_METHODS = (
    ("r_weighted", "inverse-variance (n - 3) weighted mean of Fisher z over a role's cells, fixed-effect CI "
                   "(assumes one common correlation: too narrow when cells differ)"),
    ("r_random", "random-effects mean of Fisher z over a role's cells: known variance 1/(n-3) plus tau2 between "
                 "cells by REML (as metafor::rma(method = 'REML')), Wald CI; i2 = share of variation between cells; "
                 "cells still count as independent (the multilevel role means do not)"))
FAMILY_METHODS = (
    ("power_vs_*", "power of the Williams/Steiger test to detect the paper's teacher 0.64 vs student 0.34 at the "
                   "comparison's shared items and observed cost correlation; below 0.8 is underpowered"),)
JSD_METHODS = (
    ("js_teacher_student", "Jensen-Shannon divergence (bits, 0..1) between the teacher's and the student's "
                           "log(1 + cost / teacher mean) distributions over shared Freedman-Diaconis bins "
                           "(2..sqrt(n)), bootstrap CI over items with the bins held fixed (biased up: it never "
                           "reaches 0), and js_p, a permutation test swapping each item's two values at random "
                           f"({JS_PERMUTATIONS:,} permutations; js_p_mc_se = sqrt(p (1 - p) / js_n_perm), its "
                           "Monte Carlo SE)"),)
MULTILEVEL_METHODS = (
    ("role_contrasts", "multilevel.role_contrasts: atanh(r) per cell, known variance 1/(n-3), crossed random "
                       "intercepts for model and task, REML (as metafor::rma.mv); rl is its own role"),
    ("item_model", "multilevel.item_mixed_model: log_cost ~ hd_z * role + (1 + hd_z | model) + (1 | task:item), "
                   "REML (as lme4::lmer); hd_z = human difficulty z-scored within task"))
CENSORED_METHODS = (
    ("censored", "drop: an item's cost is the mean over its uncensored samples, items with none leave the cell; "
                 "budget: censored samples count at max_tokens (sensitivity; r_budget, q_budget)"),)

ANALYSES: Tuple[Analysis, ...] = (
    Analysis("items", ("study", "censored"), _items, gives=("all_items", "items", "kept_traces"),
             methods=CENSORED_METHODS),
    Analysis("alignment", ("all_items", "study", "n_boot", "ci", "seed", "censored"),
             lambda all_items, study, **kw: A.alignment_table(all_items, study.traces, **kw),
             methods=ALIGNMENT_METHODS, to_json=_frame("alignment"), render=R.alignment_sections, lap="alignment"),
    Analysis("human_reliability", ("kept_traces", "study", "alignment", "seed"),
             lambda kept_traces, study, alignment, seed: A.reliability_tables(
                 kept_traces, study.humans, study.trials, alignment, seed=seed),
             gives=("human_reliability", "alignment"), methods=RELIABILITY_METHODS,
             to_json=_frame("human_reliability"), render=lambda r, _: R.reliability_sections(r), lap="reliability"),
    Analysis("models", ("alignment", "items"), A.model_summary,
             to_json=lambda r: records(r.study.models.join(r.models, on="model", how="left"))),
    Analysis("roles", ("alignment", "study", "ci"),
             lambda alignment, study, ci: A.role_means(alignment, study.models, ci),
             methods=ROLE_METHODS, to_json=_frame("roles"), render=lambda r, _: [R.role_section(r)],
             figures=(("r_by_role.png", F.r_by_role),)),
    Analysis("precision", ("alignment",), A.precision_table, to_json=_frame("precision"),
             render=lambda r, _: [R.precision_section(r)]),
    Analysis("families", ("all_items", "study"), lambda all_items, study: A.family_table(all_items, study.models),
             methods=FAMILY_METHODS, to_json=_frame("families"), render=lambda r, _: [R.family_section(r)],
             figures=(("family_slopes.png", F.family_slopes),)),
    Analysis("paired_tests", ("families",), A.zoo_paired_tests, gives=("paired",),
             to_json=lambda r: {k: clean(v) for k, v in r.paired.items()}, render=lambda r, _: [R.paired_section(r)],
             lap="families"),
    # the design's inference starts here (its REML fit runs in a forked process) and is collected below
    Analysis("multilevel_start", ("alignment", "items", "study"),
             lambda alignment, items, study: start_design_models(alignment, items, study.models), lap="multilevel"),
    Analysis("inflation", ("items", "study"), _inflation, gives=("inflation", "inflation_summary"),
             to_json=lambda r: {"cells": records(r.inflation), "summary": clean(r.inflation_summary)},
             render=lambda r, _: [R.cargo_cult_section(r)]),
    Analysis("elasticity", ("items",), A.elasticity, to_json=_frame("elasticity")),
    Analysis("relative_effort", ("items", "study", "seed"),
             lambda items, study, seed: A.relative_effort(items, study.models, seed=seed),
             methods=JSD_METHODS, to_json=_frame("relative_effort"), render=R.relative_effort_sections),
    Analysis("inverse_efficiency", ("alignment", "study"),
             lambda alignment, study: A.inverse_efficiency(alignment, study.models),
             gives=("inverse_efficiency", "inverse_efficiency_fit"),
             to_json=lambda r: {"cells": records(r.inverse_efficiency), "fit": clean(r.inverse_efficiency_fit)},
             figures=(("inflation_regression.png", F.inflation_regression),), lap="cargo_cult"),
    Analysis("fingerprints", ("all_items",), _fingerprints,
             gives=("fingerprints", "fingerprints_dropped", "rsa", "rsa_items"), to_json=_rsa_json,
             render=lambda r, _: R.fingerprint_sections(r), figures=(("rsa_heatmap.png", F.rsa_heatmap),),
             lap="fingerprints"),
    Analysis("wrong_vs_right", ("kept_traces",),
             lambda kept_traces: (A.wrong_vs_right(kept_traces), A.wrong_vs_right_fixed_effects(kept_traces)),
             gives=("wrong_vs_right", "wrong_vs_right_fe"),
             to_json=lambda r: {"cells": records(r.wrong_vs_right), "fixed_effects": records(r.wrong_vs_right_fe)},
             render=lambda r, _: [R.wrong_vs_right_section(r)]),
    Analysis("correct_only", ("kept_traces", "study", "alignment"),
             lambda kept_traces, study, alignment: A.correct_only_alignment(kept_traces, study.humans, alignment),
             to_json=_frame("correct_only"), render=lambda r, _: [R.correct_only_section(r)], lap="wrong_vs_right"),
    Analysis("multilevel", ("multilevel_start",), lambda multilevel_start: multilevel_start(),
             methods=MULTILEVEL_METHODS, to_json=lambda r: json_safe(r.multilevel),
             render=lambda r, _: R.multilevel_sections(r), lap="multilevel_fit"),
    # only a study with an effort factor (report.effort): a report without one is unchanged
    Analysis("effort_levels", ("items", "study", "alignment", "n_boot", "seed"), _effort_levels,
             to_json=lambda r: json_safe(r.effort_levels), render=lambda r, _: R.effort_sections(r),
             figures=(("effort.png", F.effort_levels),), lap="effort_levels", optional=True),
    split_half.ANALYSIS,
)


def _check(analyses: Tuple[Analysis, ...]) -> None:
    """Each analysis needs only build's inputs and results named above it; names are unique."""
    known = set(INPUTS)
    names = [a.name for a in analyses]
    if len(names) != len(set(names)):
        raise RuntimeError(f"an analysis name is registered twice: {names}")
    for a in analyses:
        missing = [n for n in a.needs if n not in known]
        if missing:
            raise RuntimeError(f"analysis {a.name!r} needs {missing}, which no analysis above it gives")
        known.update(a.outputs)


_check(ANALYSES)
BY_NAME: Dict[str, Analysis] = {a.name: a for a in ANALYSES}
