"""A study in, every analysis out: the Report object behind report.json, report.md, the tables
and the figures."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict

import polars as pl

from cogdistill import analyses as A
from cogdistill.report.study import Study

SCHEMA_VERSION = 1


@dataclass
class Report:
    study: Study
    items: pl.DataFrame
    alignment: pl.DataFrame
    models: pl.DataFrame
    roles: pl.DataFrame
    families: pl.DataFrame
    paired: Dict[str, Dict[str, float]]
    inflation: pl.DataFrame
    inflation_summary: Dict[str, float]
    elasticity: pl.DataFrame
    relative_effort: pl.DataFrame
    inverse_efficiency: pl.DataFrame
    inverse_efficiency_fit: Dict[str, float]
    fingerprints: pl.DataFrame
    rsa: pl.DataFrame
    wrong_vs_right: pl.DataFrame
    wrong_vs_right_fe: pl.DataFrame
    correct_only: pl.DataFrame
    timings: Dict[str, float] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        rec = A.as_records
        return {
            "schema_version": SCHEMA_VERSION, "source": self.study.source,
            "n": {"models": self.study.models.height, "tasks": self.study.humans["task"].n_unique(),
                  "items": self.items.select("task", "item_id").unique().height, "traces": self.study.traces.height},
            "models": rec(self.study.models.join(self.models, on="model", how="left")),
            "alignment": rec(self.alignment),
            "roles": rec(self.roles),
            "families": rec(self.families),
            "paired_tests": {k: _clean(v) for k, v in self.paired.items()},
            "inflation": {"cells": rec(self.inflation), "summary": _clean(self.inflation_summary)},
            "elasticity": rec(self.elasticity),
            "relative_effort": rec(self.relative_effort),
            "inverse_efficiency": {"cells": rec(self.inverse_efficiency), "fit": _clean(self.inverse_efficiency_fit)},
            "fingerprints": {"n_items": self.fingerprints.height, "rsa": rec(self.rsa)},
            "wrong_vs_right": {"cells": rec(self.wrong_vs_right), "fixed_effects": rec(self.wrong_vs_right_fe)},
            "correct_only": rec(self.correct_only),
            "timings_s": self.timings,
        }

    def write_json(self, path: Path) -> Path:
        path.write_text(json.dumps(self.to_json(), indent=2, default=str))
        return path


def _clean(d: Dict[str, Any]) -> Dict[str, Any]:
    return A.as_records(pl.DataFrame([d]))[0] if d else {}


def build(study: Study, *, n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> Report:
    t0 = time.perf_counter()
    timings: Dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal t0
        now = time.perf_counter()
        timings[name] = round(now - t0, 4)
        t0 = now

    items = A.per_item(study.traces, study.humans)
    alignment = A.alignment_table(items, study.traces, n_boot=n_boot, ci=ci, seed=seed)
    lap("alignment")
    summary = A.model_summary(alignment, items)
    roles = A.role_means(alignment, study.models, ci)
    families = A.family_table(items, study.models)
    paired = A.zoo_paired_tests(families)
    lap("families")
    inflation = A.inflation(items, study.models)
    infl_summary = {"student_vs_base_geomean": A.geometric_mean(inflation["vs_base"].to_list()),
                    "student_vs_teacher_geomean": A.geometric_mean(inflation["vs_teacher"].to_list()),
                    "student_vs_base_cv": _cv(inflation["vs_base"])}
    elasticity = A.elasticity(items)
    effort = A.relative_effort(items, study.models)
    ie, ie_fit = A.inverse_efficiency(alignment, study.models)
    lap("cargo_cult")
    fp = A.fingerprints(items)
    rsa = A.rsa(fp)
    lap("fingerprints")
    wvr = A.wrong_vs_right(study.traces)
    wvr_fe = A.wrong_vs_right_fixed_effects(study.traces)
    correct_only = A.correct_only_alignment(study.traces, study.humans, alignment)
    lap("wrong_vs_right")
    return Report(study, items, alignment, summary, roles, families, paired, inflation, infl_summary, elasticity,
                  effort, ie, ie_fit, fp, rsa, wvr, wvr_fe, correct_only, timings)


def _cv(series: pl.Series) -> float:
    """Coefficient of variation of the inflation factors: near 0 = a near-constant factor."""
    vals = series.drop_nulls().drop_nans()
    return float(vals.std() / vals.mean()) if vals.len() >= 2 and vals.mean() else float("nan")
