"""What an analysis is, and the Report: every analysis's results by name, written as report.json
(schema_version 2) and report.md in the order version 2's readers know.

An analysis is one registered unit (cogdistill.report.catalogue lists them in the order they are
computed): its name, the results it needs, `compute`, its methods text, its report.json value, its
sections of report.md and its figures. Version 2's layout fixes where the first analyses appear; an
analysis it does not name comes after them in catalogue order, so a new one moves no existing byte and
readers of version 2 keep working (they ignore a key they do not know).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Tuple

import polars as pl

if TYPE_CHECKING:
    from cogdistill.report.study import Study

# 2: censoring policy, reasons for undefined numbers, q-values, Bayes factors, weighted role means,
#    power, reliability and noise ceilings, multilevel contrasts, JSD instead of KL (docs: The comparison report, "What it computes")
SCHEMA_VERSION = 2

# Version 2's order, by analysis name (report.json keys before timings_s; report.md sections; figures
# after the scatter grid) and by methods key (report.json `methods`).
JSON_V2 = ("models", "alignment", "roles", "precision", "human_reliability", "multilevel", "families",
           "paired_tests", "inflation", "elasticity", "relative_effort", "inverse_efficiency", "fingerprints",
           "wrong_vs_right", "correct_only")
MARKDOWN_V2 = ("alignment", "human_reliability", "roles", "precision", "families", "paired_tests", "multilevel",
               "effort_levels", "inflation", "relative_effort", "fingerprints", "wrong_vs_right", "correct_only")
FIGURES_V2 = ("roles", "families", "fingerprints", "inverse_efficiency", "effort_levels")
METHODS_V2 = ("r", "ci", "q", "bf10", "detectable_r", "power_vs_*", "r_weighted", "r_random", "js_teacher_student",
              "human_reliability", "noise_ceiling", "role_contrasts", "item_model", "censored")


@dataclass(frozen=True)
class Analysis:
    name: str  # its report.json key and its first result's name
    needs: Tuple[str, ...]  # results of earlier analyses or build's inputs, passed to compute by name
    compute: Callable[..., Any]  # -> its result (a tuple of them when it gives several)
    gives: Tuple[str, ...] = ()  # its results' names when not just (name,); a later name may replace an earlier
    methods: Tuple[Tuple[str, str], ...] = ()  # report.json `methods` entries
    to_json: Optional[Callable[["Report"], Any]] = None  # its report.json value (None: no key)
    render: Optional[Callable[["Report", bool], List["Section"]]] = None  # its sections; bool: compact (terminal)
    figures: Tuple[Tuple[str, Callable[["Report", Any], Any]], ...] = ()  # (file name, draw(report, path))
    lap: Optional[str] = None  # the timings_s stage it closes (a stage may hold several analyses)
    optional: bool = False  # an empty result leaves no trace: no key, no stage, no section, no figure
    default: bool = True  # False: computed only when asked for (build(extra=...)), so default bytes never change

    @property
    def outputs(self) -> Tuple[str, ...]:
        return self.gives or (self.name,)


@dataclass
class Report:
    """report[name] (or report.name, as version 2's fields were read) is a result; `results` maps
    every result name to its value, `analyses` are the units that made them, in catalogue order."""

    study: "Study"
    results: Dict[str, Any]
    analyses: Tuple[Analysis, ...]
    censored: str = "drop"
    timings: Dict[str, float] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.results[name]

    def __getattr__(self, name: str) -> Any:
        results = self.__dict__.get("results") or {}
        if name in results:
            return results[name]
        raise AttributeError(f"Report has no analysis result {name!r}")

    def shown(self, order: Tuple[str, ...]) -> List[Analysis]:
        """The analyses with something to show: those `order` names first, in its order, then the rest."""
        live = [a for a in self.analyses if not a.optional or self.results.get(a.name)]
        rank = {name: k for k, name in enumerate(order)}
        return sorted(live, key=lambda a: rank.get(a.name, len(rank)))  # sorted is stable: the rest keep theirs

    def to_json(self) -> Dict[str, Any]:
        head = {
            "schema_version": SCHEMA_VERSION, "source": self.study.source, "censored_policy": self.censored,
            "methods": methods(self.analyses),
            "n": {"models": self.study.models.height, "tasks": self.study.humans["task"].n_unique(),
                  "items": self.study.traces.select("task", "item_id").unique().height,
                  "items_with_a_complete_cost": self.items.select("task", "item_id").unique().height,
                  "traces": self.study.traces.height}}
        body = [(a.name, a.to_json(self)) for a in self.shown(JSON_V2) if a.to_json is not None]
        v2 = [kv for kv in body if kv[0] in JSON_V2]
        return {**head, **dict(v2), "timings_s": self.timings, **{k: v for k, v in body if k not in JSON_V2}}

    def write_json(self, path):
        path.write_text(json.dumps(self.to_json(), indent=2, default=str))
        return path


def methods(analyses: Iterable[Analysis]) -> Dict[str, str]:
    texts = {key: text for a in analyses for key, text in a.methods}
    return {**{k: texts[k] for k in METHODS_V2 if k in texts}, **texts}


def records(frame: pl.DataFrame) -> List[dict]:
    from cogdistill.report.analyses import as_records

    return as_records(frame)


def clean(d: Dict[str, Any]) -> Dict[str, Any]:
    """A dict of numbers as report.json writes a frame's row (NaN as null)."""
    return records(pl.DataFrame([d]))[0] if d else {}


def json_safe(value: Any) -> Any:
    """NaN and infinities become null (JSON has neither), recursively; numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
