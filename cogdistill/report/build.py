"""A study in, every analysis of the catalogue out: the Report behind report.json, report.md, the
tables and the figures (cogdistill.report.result)."""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

import polars as pl

from cogdistill.report.catalogue import ANALYSES, BY_NAME, start_design_models
from cogdistill.report.result import SCHEMA_VERSION, Analysis, Report, methods
from cogdistill.report.study import Study

METHODS = methods(a for a in ANALYSES if a.default)  # report.json `methods` of a default report


def chosen(extra: Iterable[str] = ()) -> Tuple[Analysis, ...]:
    """The default analyses and the `extra` ones asked for by name, in catalogue order."""
    extra = set(extra)
    unknown = sorted(extra - set(BY_NAME))
    if unknown:
        raise ValueError(f"unknown analysis {', '.join(unknown)}; the catalogue has {', '.join(BY_NAME)}")
    return tuple(a for a in ANALYSES if a.default or a.name in extra)


def build(study: Study, *, n_boot: int = 2000, ci: float = 0.95, seed: int = 0, censored: str = "drop",
          on_alignment: Optional[Callable[[pl.DataFrame, pl.DataFrame], None]] = None,
          extra: Iterable[str] = ()) -> Report:
    """Every default analysis (and the `extra` ones); on_alignment(items, alignment) is called as soon
    as those two are known (write_report starts the scatter grid there, in parallel with the rest)."""
    from cogdistill.stats.multilevel import one_blas_thread

    analyses = chosen(extra)
    with one_blas_thread():
        return _build(study, analyses, {"study": study, "n_boot": n_boot, "ci": ci, "seed": seed,
                                        "censored": censored}, on_alignment)


def _build(study: Study, analyses: Tuple[Analysis, ...], inputs: Dict[str, Any], on_alignment=None) -> Report:
    t0 = time.perf_counter()
    timings: Dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal t0
        now = time.perf_counter()
        timings[name] = round(now - t0, 4)
        t0 = now

    results: Dict[str, Any] = {}
    for a in analyses:
        out = a.compute(**{n: results[n] if n in results else inputs[n] for n in a.needs})
        results.update(zip(a.outputs, out if len(a.outputs) > 1 else (out,)))
        if a.name == "alignment" and on_alignment is not None:
            on_alignment(results["items"], results["alignment"])
        if a.lap and (not a.optional or results.get(a.name)):
            lap(a.lap)
    return Report(study, results, analyses, censored=inputs["censored"], timings=timings)


def design_models(alignment: pl.DataFrame, items: pl.DataFrame, models: pl.DataFrame) -> Dict[str, Any]:
    """The inference that respects the design (report.multilevel): role contrasts from a
    multilevel model of the cells' Fisher z, and the item-level mixed model of log cost."""
    return start_design_models(alignment, items, models)()


__all__ = ["Report", "build", "chosen", "design_models", "METHODS", "SCHEMA_VERSION"]
