"""A study in, every analysis out: the Report object behind report.json, report.md, the tables
and the figures."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

import polars as pl

from cogdistill.report import analyses as A
from cogdistill.stats import correlation as stats
from cogdistill.report.study import Study

# 2: censoring policy, reasons for undefined numbers, q-values, Bayes factors, weighted role means,
#    power, reliability and noise ceilings, multilevel contrasts, JSD instead of KL (docs: "The report", report.json)
SCHEMA_VERSION = 2

METHODS = {
    "r": "Pearson r between log(1 + mean cost per item) and human difficulty across a task's items",
    "ci": f"percentile bootstrap over items; none when r is undefined, n < {stats.MIN_CI_ITEMS}, or more than "
          f"{stats.MAX_UNDEFINED_RESAMPLES:.0%} of resamples have a constant side",
    "q": "Benjamini-Hochberg over every cell's r test (alignment) and over every Williams' test (families)",
    "bf10": "default Bayes factor for a correlation, stretched beta prior of width 1 "
            "(Ly, Verhagen & Wagenmakers 2016; JASP, pingouin); bf01 = 1 / bf10",
    "detectable_r": "smallest |r| with 80% power at alpha .05 over the cell's items (Fisher z)",
    "power_vs_*": "power of the Williams/Steiger test to detect the paper's teacher 0.64 vs student 0.34 at the "
                  "comparison's shared items and observed cost correlation; below 0.8 is underpowered",
    "r_weighted": "inverse-variance (n - 3) weighted mean of Fisher z over a role's cells, fixed-effect CI "
                  "(assumes one common correlation: too narrow when cells differ)",
    "r_random": "random-effects mean of Fisher z over a role's cells: known variance 1/(n-3) plus tau2 between "
                "cells by REML (as metafor::rma(method = 'REML')), Wald CI; i2 = share of variation between cells; "
                "cells still count as independent (the multilevel role means do not)",
    "js_teacher_student": "Jensen-Shannon divergence (bits, 0..1) between the teacher's and the student's "
                          "log(1 + cost / teacher mean) distributions over shared Freedman-Diaconis bins "
                          "(2..sqrt(n)), bootstrap CI over items with the bins held fixed (biased up: it never reaches 0), "
                          "and js_p, a permutation test swapping each item's two values at random "
                          f"({A.JS_PERMUTATIONS:,} permutations; js_p_mc_se = sqrt(p (1 - p) / js_n_perm), its "
                          "Monte Carlo SE)",
    "human_reliability": "split-half over participants: random halves, item difficulty by the task's measure in "
                         "each, Pearson r across items, Spearman-Brown; mean over 1,000 seeded splits (Parsons, "
                         "Kruijt & Fox 2019); undefined without participant ids",
    "noise_ceiling": "sqrt(human reliability x cost reliability); the cost's split-half reliability over samples "
                     "(halves of floor(k/2) and the rest, corrected for those lengths to the mean over all k: "
                     "Spearman-Brown when k is even) needs >= 2 per item, else the human reliability alone (a "
                     "deterministic cost); "
                     "r_normalised = r / noise_ceiling, beside r, never instead of it",
    "role_contrasts": "multilevel.role_contrasts: atanh(r) per cell, known variance 1/(n-3), crossed random "
                      "intercepts for model and task, REML (as metafor::rma.mv); rl is its own role",
    "item_model": "multilevel.item_mixed_model: log_cost ~ hd_z * role + (1 + hd_z | model) + (1 | task:item), "
                  "REML (as lme4::lmer); hd_z = human difficulty z-scored within task",
    "censored": "drop: an item's cost is the mean over its uncensored samples, items with none leave the cell; "
                "budget: censored samples count at max_tokens (sensitivity; r_budget, q_budget)",
}


@dataclass
class Report:
    study: Study
    items: pl.DataFrame
    alignment: pl.DataFrame
    models: pl.DataFrame
    roles: pl.DataFrame
    families: pl.DataFrame
    paired: Dict[str, Dict[str, Any]]
    inflation: pl.DataFrame
    inflation_summary: Dict[str, float]
    elasticity: pl.DataFrame
    relative_effort: pl.DataFrame
    inverse_efficiency: pl.DataFrame
    inverse_efficiency_fit: Dict[str, Any]
    fingerprints: pl.DataFrame
    fingerprints_dropped: Dict[str, str]
    rsa: pl.DataFrame
    rsa_items: int
    wrong_vs_right: pl.DataFrame
    wrong_vs_right_fe: pl.DataFrame
    correct_only: pl.DataFrame
    precision: pl.DataFrame = field(default_factory=pl.DataFrame)
    human_reliability: pl.DataFrame = field(default_factory=pl.DataFrame)
    multilevel: Dict[str, Any] = field(default_factory=dict)  # report.multilevel: role_contrasts, item_model
    # report.effort.effort_levels: {config: {task: ...}} for configs run at >= 2 effort levels; not
    # `relative_effort` (a student's cost relative to its teacher's), hence the name
    effort_levels: Dict[str, Any] = field(default_factory=dict)
    censored: str = "drop"
    timings: Dict[str, float] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        rec = A.as_records
        return {
            "schema_version": SCHEMA_VERSION, "source": self.study.source, "censored_policy": self.censored,
            "methods": METHODS,
            "n": {"models": self.study.models.height, "tasks": self.study.humans["task"].n_unique(),
                  "items": self.study.traces.select("task", "item_id").unique().height,
                  "items_with_a_complete_cost": self.items.select("task", "item_id").unique().height,
                  "traces": self.study.traces.height},
            "models": rec(self.study.models.join(self.models, on="model", how="left")),
            "alignment": rec(self.alignment),
            "roles": rec(self.roles),
            "precision": rec(self.precision),
            "human_reliability": rec(self.human_reliability),
            "multilevel": _json_safe(self.multilevel),
            "families": rec(self.families),
            "paired_tests": {k: _clean(v) for k, v in self.paired.items()},
            "inflation": {"cells": rec(self.inflation), "summary": _clean(self.inflation_summary)},
            "elasticity": rec(self.elasticity),
            "relative_effort": rec(self.relative_effort),
            "inverse_efficiency": {"cells": rec(self.inverse_efficiency), "fit": _clean(self.inverse_efficiency_fit)},
            "fingerprints": {"n_items": self.rsa_items, "models": [c for c in self.rsa["fingerprint"] if c != "human"],
                             "dropped": self.fingerprints_dropped, "rsa": rec(self.rsa)},
            "wrong_vs_right": {"cells": rec(self.wrong_vs_right), "fixed_effects": rec(self.wrong_vs_right_fe)},
            "correct_only": rec(self.correct_only),
            "timings_s": self.timings,
            # only when the study has an effort factor: a report without one is unchanged
            **({"effort_levels": _json_safe(self.effort_levels)} if self.effort_levels else {}),
        }

    def write_json(self, path):
        path.write_text(json.dumps(self.to_json(), indent=2, default=str))
        return path


def _clean(d: Dict[str, Any]) -> Dict[str, Any]:
    return A.as_records(pl.DataFrame([d]))[0] if d else {}


def build(study: Study, *, n_boot: int = 2000, ci: float = 0.95, seed: int = 0, censored: str = "drop",
          on_alignment: Optional[Callable[[pl.DataFrame, pl.DataFrame], None]] = None) -> Report:
    """Every analysis; on_alignment(items, alignment) is called as soon as those two are known
    (write_report starts the scatter grid there, in parallel with the rest)."""
    from cogdistill.report.multilevel import one_blas_thread

    with one_blas_thread():
        return _build(study, n_boot=n_boot, ci=ci, seed=seed, censored=censored, on_alignment=on_alignment)


def _build(study: Study, *, n_boot: int, ci: float, seed: int, censored: str, on_alignment=None) -> Report:
    t0 = time.perf_counter()
    timings: Dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal t0
        now = time.perf_counter()
        timings[name] = round(now - t0, 4)
        t0 = now

    all_items = A.per_item(study.traces, study.humans, censored)
    items = all_items.filter(pl.col("cost_mean").is_not_null())  # what every analysis below reads
    traces = stats.censoring_filter(study.traces, censored)  # the trace-level analyses' input
    alignment = A.alignment_table(all_items, study.traces, n_boot=n_boot, ci=ci, seed=seed, censored=censored)
    lap("alignment")
    if on_alignment is not None:
        on_alignment(items, alignment)
    human_reliability, alignment = A.reliability_tables(traces, study.humans, study.trials, alignment, seed=seed)
    lap("reliability")
    summary = A.model_summary(alignment, items)
    roles = A.role_means(alignment, study.models, ci)
    families = A.family_table(all_items, study.models)  # a student whose items were all dropped gets its reason
    paired = A.zoo_paired_tests(families)
    lap("families")
    finish_multilevel = start_design_models(alignment, items, study.models)  # its REML fit runs on the other core
    lap("multilevel")
    inflation = A.inflation(items, study.models)
    students = inflation.filter(pl.col("role") == "student")
    infl_summary = {"student_vs_base_geomean": A.geometric_mean(students["vs_base"].to_list()),
                    "student_vs_teacher_geomean": A.geometric_mean(students["vs_teacher"].to_list()),
                    "student_vs_base_cv": _cv(students["vs_base"]), "n_cells": students.height}
    elasticity = A.elasticity(items)
    effort = A.relative_effort(items, study.models, seed=seed)
    ie, ie_fit = A.inverse_efficiency(alignment, study.models)
    lap("cargo_cult")
    fp, fp_dropped = A.fingerprints(all_items)  # all models: one whose every item was dropped is named
    rsa = A.rsa(fp)
    lap("fingerprints")
    wvr = A.wrong_vs_right(traces)
    wvr_fe = A.wrong_vs_right_fixed_effects(traces)
    correct_only = A.correct_only_alignment(traces, study.humans, alignment)
    lap("wrong_vs_right")
    multilevel = finish_multilevel()
    lap("multilevel_fit")
    effort_levels = _effort_levels(items, study, alignment, n_boot=n_boot, seed=seed)
    if effort_levels:
        lap("effort_levels")
    return Report(study, items, alignment, summary, roles, families, paired, inflation, infl_summary, elasticity,
                  effort, ie, ie_fit, fp, fp_dropped, rsa, A.rsa_rows(fp).height, wvr, wvr_fe, correct_only,
                  precision=A.precision_table(alignment), human_reliability=human_reliability,
                  multilevel=multilevel, effort_levels=effort_levels, censored=censored,
                  timings=timings)


def _effort_levels(items: pl.DataFrame, study: Study, alignment: pl.DataFrame, *, n_boot: int,
                   seed: int) -> Dict[str, Any]:
    from cogdistill.report.effort import effort_design, effort_levels

    if not effort_design(study.models).height:  # no effort factor: nothing to import or compute
        return {}
    return effort_levels(items, study.traces, alignment, study.models, n_boot=n_boot, seed=seed)


def design_models(alignment: pl.DataFrame, items: pl.DataFrame, models: pl.DataFrame) -> Dict[str, Any]:
    """The inference that respects the design (report.multilevel): role contrasts from a
    multilevel model of the cells' Fisher z, and the item-level mixed model of log cost."""
    return start_design_models(alignment, items, models)()


def start_design_models(alignment: pl.DataFrame, items: pl.DataFrame,
                        models: pl.DataFrame) -> Callable[[], Dict[str, Any]]:
    """design_models with the item-level model's REML fit (~0.7 s at 256k traces, numpy only) in a
    forked process while the caller goes on; the returned call waits and gives design_models' dict."""
    from cogdistill.report import multilevel

    roles = models.select("model", "role")
    cells = alignment.join(roles, on="model", how="left").select("model", "task", "role", "r",
                                                                  pl.col("n_items").alias("n"))
    rows = items.filter(pl.col("human_difficulty").is_not_null()).join(roles, on="model", how="left").select(
        "model", "task", "item_id", "role", "log_cost", "human_difficulty")
    contrasts = multilevel.role_contrasts(cells)
    item_model = multilevel.start_item_mixed_model(rows)
    return lambda: {"role_contrasts": contrasts, "item_model": item_model()}


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null (JSON has neither), recursively; numpy scalars plain numbers."""
    import math

    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _cv(series: pl.Series) -> float:
    """Coefficient of variation of the inflation factors: near 0 = a near-constant factor."""
    vals = series.drop_nulls().drop_nans()
    return float(vals.std() / vals.mean()) if vals.len() >= 2 and vals.mean() else float("nan")
