"""The report as text: the same sections printed as rich tables and written as Markdown."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import polars as pl

from cogdistill.report.build import Report


@dataclass
class Section:
    title: str
    headers: List[str]
    rows: List[List[str]]
    note: str = ""


def fmt(x: Optional[float], digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}f}"


def fmt_p(p: Optional[float]) -> str:
    return "-" if p is None or not math.isfinite(p) else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def _r_ci(r, low, high) -> str:
    return fmt(r) if low is None or not math.isfinite(low) else f"{fmt(r)} [{fmt(low)}, {fmt(high)}]"


def _r_star(r, low, high) -> str:
    """Compact: r, starred when its CI excludes 0 (terminal tables stay readable with many tasks)."""
    excludes = low is not None and math.isfinite(low) and (low > 0 or high < 0)
    return fmt(r) + ("*" if excludes else "")


def sections(report: Report, compact: bool = False) -> List[Section]:
    roles = dict(zip(report.study.models["model"], report.study.models["role"]))
    tasks = sorted(report.alignment["task"].unique())
    grid = {(r["model"], r["task"]): r for r in report.alignment.iter_rows(named=True)}
    summary = {r["model"]: r for r in report.models.iter_rows(named=True)}
    cell = _r_star if compact else _r_ci
    out = [Section(
        "r(log token cost, human difficulty) per model and task"
        + (" (*: 95% bootstrap CI excludes 0; CIs in report.md)" if compact else ", 95% bootstrap CI"),
        ["model", "role", *tasks, "mean r", "Fisher mean", "cross-task r"],
        [[m, roles.get(m) or "?",
          *[cell(grid[(m, t)]["r"], grid[(m, t)]["r_ci_low"], grid[(m, t)]["r_ci_high"]) if (m, t) in grid else ""
            for t in tasks],
          fmt(summary[m]["r_mean"]), fmt(summary[m]["r_mean_fisher"]), fmt(summary[m]["r_cross_task"])]
         for m in sorted(summary)],
        "'-' = undefined (e.g. every item cost the same, or fewer than 3 items with human data).")]
    out.append(Section(
        "Mean r by role (model x task cells; CI: t interval on Fisher z)",
        ["role", "models", "cells", "mean r", "Fisher mean", "95% CI"],
        [[r["role"], str(r["n_models"]), str(r["n_cells"]), fmt(r["r_mean"]), fmt(r["r_mean_fisher"]),
          f"[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]"] for r in report.roles.iter_rows(named=True)],
        "The paper: teachers 0.64, distilled students 0.34."))
    fam_rows = [[r["student"], r["task"], fmt(r["r_teacher"]), fmt(r["r_student"]), fmt(r["r_base"]),
                 f"{fmt(r['delta_teacher'])} (p {fmt_p(r['p_vs_teacher'])})",
                 f"{fmt(r['delta_base'])} (p {fmt_p(r['p_vs_base'])})"]
                for r in report.families.iter_rows(named=True)]
    tests = report.paired
    note = "; ".join(
        f"{name.replace('_', ' ')}: mean diff {fmt(t['mean_diff'])}, t({t['df']}) = {fmt(t['t'])}, p = {fmt_p(t['p'])}, "
        f"n = {t['n_pairs']}" for name, t in tests.items() if t["n_pairs"]) or \
        "No student with its teacher or base in this study: nothing to compare."
    out.append(Section(
        "Collapse and negative transfer: student vs teacher and vs base (Williams' t on shared items)",
        ["student", "task", "r teacher", "r student", "r base", "student - teacher", "student - base"],
        fam_rows, "Across the zoo (paired t over student x task cells): " + note
        + " The paper: students below their bases, t = -2.60, p = 0.011."))
    infl = report.inflation_summary
    ie = report.inverse_efficiency_fit
    kl = report.relative_effort["kl_teacher_student"].drop_nulls().drop_nans()
    el = report.elasticity.join(report.study.models.select("model", "role"), on="model", how="left")
    el_roles = el.group_by("role").agg(pl.col("slope").drop_nans().mean()).sort("role")
    out.append(Section(
        "Cargo cult: verbosity without difficulty tracking",
        ["measure", "value"],
        [["tokens student / base (geometric mean over cells)", fmt(infl["student_vs_base_geomean"])],
         ["  its coefficient of variation (near 0: a constant factor)", fmt(infl["student_vs_base_cv"])],
         ["tokens student / teacher (geometric mean)", fmt(infl["student_vs_teacher_geomean"])],
         ["KL(teacher || student) of relative effort, mean over cells", fmt(kl.mean() if kl.len() else None)],
         ["inverse efficiency, student on base: slope", fmt(ie["slope"])],
         ["  intercept", fmt(ie["intercept"], 1)], ["  R^2", fmt(ie["r2"])], ["  cells", str(ie["n"])],
         *[[f"elasticity d log tokens / d log RT, {r['role']}", fmt(r["slope"])] for r in el_roles.iter_rows(named=True)]],
        "The paper: students inflate tokens ~2.44x over their bases, linearly."))
    rsa = report.rsa
    if "human" in rsa.columns:
        to_human = rsa.filter(pl.col("fingerprint") != "human").select("fingerprint", "human").sort("human", descending=True)
        out.append(Section(
            f"Difficulty fingerprints: RSA with humans over {report.fingerprints.height} shared items",
            ["model", "role", "r with human fingerprint"],
            [[m, roles.get(m) or "?", fmt(v)] for m, v in to_human.iter_rows()],
            "Full matrix: report.json `fingerprints.rsa` and figures/rsa_heatmap.png."))
    fe = report.wrong_vs_right_fe
    out.append(Section(
        "Beyond the paper: effort on wrong vs right answers (item and model fixed effects)",
        ["task", "traces", "wrong", "log-cost premium of wrong", "SE", "d"],
        [[r["task"], str(r["n_traces"]), str(r["n_wrong"]), fmt(r["beta"], 3), fmt(r["se"], 3), fmt(r["d"])]
         for r in fe.iter_rows(named=True)],
        "Positive: wrong answers cost more tokens than right ones on the same items. Per model: report.json."))
    co = report.correct_only
    out.append(Section(
        "Beyond the paper: alignment on correct traces only vs all traces",
        ["model", "task", "r all", "items", "r correct only", "items correct"],
        [[r["model"], r["task"], fmt(r["r_all"]), str(r["n_items"]), fmt(r["r_correct_only"]),
          str(r["n_items_correct"] or 0)] for r in co.iter_rows(named=True)]))
    return out


def print_report(report: Report, console) -> None:
    from rich.table import Table

    for sec in sections(report, compact=True):
        table = Table(title=sec.title, title_justify="left")
        for k, head in enumerate(sec.headers):
            table.add_column(head, justify="left" if k == 0 else "right")
        for row in sec.rows:
            table.add_row(*row)
        console.print(table)
        if sec.note:
            console.print(f"[dim]{sec.note}[/]", soft_wrap=True)


def markdown(report: Report, figures: Dict[str, str]) -> str:
    n = report.to_json()["n"]
    lines = ["# cogdistill report", "",
             f"Source: {report.study.source}. {n['models']} models, {n['tasks']} tasks, {n['items']} items, "
             f"{n['traces']} traces.", ""]
    for sec in sections(report):
        lines += [f"## {sec.title}", "", "| " + " | ".join(sec.headers) + " |",
                  "|" + "---|" * len(sec.headers)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in sec.rows]
        lines += ["", sec.note, ""] if sec.note else [""]
    if figures:
        lines += ["## Figures", ""] + [f"![{name}]({path})" for name, path in figures.items()] + [""]
    return "\n".join(lines)


def write_markdown(report: Report, path: Path, figures: Dict[str, str]) -> Path:
    path.write_text(markdown(report, figures))
    return path
