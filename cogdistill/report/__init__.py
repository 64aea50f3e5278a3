"""The comparison report: did distillation collapse alignment? (docs: The comparison report)

    study.py      read traces, human difficulties and model roles (MLflow experiment or folder)
    catalogue.py  the analyses, one registered unit each (what it needs, compute, methods, sections, figures)
    build.py      run the catalogue over a study -> Report
    result.py     the Report (results by analysis name) and report.json's version 2 layout
    analyses.py   what most analyses select and compute (the formulas are in cogdistill.stats)
    render.py     rich tables and report.md
    figures.py    the PNGs
    effort.py     the reasoning-effort section: alignment across a config's effort levels
    synthetic.py  a simulated study with known ground truth (tests, benchmarks)
    __main__.py   python -m cogdistill.report
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from cogdistill.report.build import Report, build
from cogdistill.report.study import Study


def write_report(study: Study, out: Path, *, n_boot: int = 2000, seed: int = 0, figures: bool = True,
                 censored: str = "drop", scatter_pages: Optional[int] = 1) -> Tuple[Report, List[Path]]:
    """report.json, report.md, figures/*.png and study/ (the inputs) under `out`; scatter_pages:
    pages of the scatter grid to draw (None: all; figures.scatter_grid)."""
    from cogdistill.report import render

    out.mkdir(parents=True, exist_ok=True)
    scatter = None

    def start_scatter(items, alignment) -> None:
        # the scatter grid needs only per-item costs and r: it is drawn in a forked process while the
        # remaining analyses run (2 cores: the figure's ~1.3 s leaves the wall time)
        from cogdistill.report import figures as F

        nonlocal scatter
        scatter = F.draw_in_background(F.scatter_plan(items, alignment, study.models,
                                                      out / "figures" / "scatter_grid.png", scatter_pages))

    try:
        report = build(study, n_boot=n_boot, seed=seed, censored=censored,
                       on_alignment=start_scatter if figures else None)
        pngs: List[Path] = []
        if figures:
            from cogdistill.report.figures import write_all

            pngs = write_all(report, out / "figures", scatter_pages, scatter)
            scatter = None
    finally:
        if scatter is not None:  # the build failed: reap the drawing process before the error goes on
            scatter()
    files = [report.write_json(out / "report.json"),
             render.write_markdown(report, out / "report.md", {p.stem: f"figures/{p.name}" for p in pngs}), *pngs]
    study.write(out / "study")
    return report, files


def headline_metrics(report: Report) -> Dict[str, float]:
    """The numbers a sweep's parent run shows in the MLflow UI (finite ones only)."""
    metrics: Dict[str, float] = {}
    for row in report.roles.iter_rows(named=True):
        metrics[f"report/r_{row['role']}"] = row["r_mean"]
        metrics[f"report/r_{row['role']}_ci_low"] = row["ci_low"]
        metrics[f"report/r_{row['role']}_ci_high"] = row["ci_high"]
        metrics[f"report/r_{row['role']}_weighted"] = row["r_weighted"]
        for key in ("r_random", "random_ci_low", "random_ci_high"):  # the random-effects mean and its CI
            metrics[f"report/r_{row['role']}_{key.removeprefix('r_')}"] = row.get(key)
    for name, test in report.paired.items():
        metrics[f"report/{name}_t"], metrics[f"report/{name}_p"] = test["t"], test["p"]
        metrics[f"report/{name}_mean_diff"] = test["mean_diff"]
    metrics["report/inflation_vs_base"] = report.inflation_summary["student_vs_base_geomean"]
    metrics["report/inflation_vs_teacher"] = report.inflation_summary["student_vs_teacher_geomean"]
    cells = report.alignment
    if cells.height:
        metrics["report/cells_q_below_05"] = float((cells["q"].fill_nan(None).drop_nulls() < 0.05).sum())
        metrics["report/cells_undefined"] = float(cells["note"].is_not_null().sum())
        metrics["report/cells_conclusion_changes_with_censoring"] = float(
            cells["conclusion_changes_with_censoring"].sum())
    for name, c in (report.multilevel.get("role_contrasts") or {}).get("contrasts", {}).items():
        metrics[f"report/multilevel/{name}_z"], metrics[f"report/multilevel/{name}_p"] = c["estimate"], c["p"]
    for row in report.human_reliability.iter_rows(named=True):
        metrics[f"report/human_reliability/{row['task']}"] = row["reliability"]
    metrics["report/ie_slope"] = report.inverse_efficiency_fit["slope"]
    metrics["report/ie_r2"] = report.inverse_efficiency_fit["r2"]
    human = report.rsa.filter(report.rsa["fingerprint"] != "human")
    if "human" in human.columns:
        metrics.update({f"report/rsa_human/{m}": v for m, v in zip(human["fingerprint"], human["human"])})
    if report.effort_levels:
        from cogdistill.report.effort import headline

        metrics.update(headline(report.effort_levels))
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}


def log_report(client, run_id: str, out: Path, report: Report) -> None:
    """The report's files as artifacts under report/ and its headline numbers as metrics."""
    import time

    from mlflow.entities import Metric

    from cogdistill.tracking.run_format import REPORT_DIR

    client.log_artifacts(run_id, str(out), REPORT_DIR)
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, 0) for k, v in headline_metrics(report).items()]
    for start in range(0, len(metrics), 500):
        client.log_batch(run_id, metrics=metrics[start:start + 500])


__all__ = ["Report", "Study", "build", "write_report", "log_report", "headline_metrics"]
