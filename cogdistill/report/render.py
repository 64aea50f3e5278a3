"""The report as text: the same sections printed as rich tables and written as Markdown."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import polars as pl

from cogdistill.report.result import MARKDOWN_V2, Report


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


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def _r_star(row: dict) -> str:
    """Compact: r, starred when q < .05 (BH over every cell) and r has a CI (n >= 4), a dagger when the conclusion
    changes with the censoring policy (terminal tables stay readable with many tasks)."""
    significant = _finite(row.get("q")) and row["q"] < 0.05 and _finite(row.get("r_ci_low"))  # no CI: no star
    text = fmt(row["r"]) + ("*" if significant else "")
    return text + ("†" if row.get("conclusion_changes_with_censoring") else "")


def fmt_bf(bf) -> str:
    if not _finite(bf):
        return "-"
    return f"{bf:.3g}" if 0.01 <= bf < 1000 else f"{bf:.1e}"


COMPACT_CELLS = 60  # more cells than this: the terminal lists only those to read with care


def _reasons(c: dict) -> str:
    return "; ".join(filter(None, [
        c["note"], f"no CI: {c['ci_note']}" if c["ci_note"] and not c["note"] else None,
        f"{c['n_items_dropped']} censored item(s) dropped, r budget {fmt(c['r_budget'])}" if c["n_items_dropped"]
        else None,
        "conclusion changes with censoring" if c["conclusion_changes_with_censoring"] else None]))


def alignment_sections(report: Report, compact: bool) -> List[Section]:
    roles = dict(zip(report.study.models["model"], report.study.models["role"]))
    tasks = sorted(report.alignment["task"].unique())
    grid = {(r["model"], r["task"]): r for r in report.alignment.iter_rows(named=True)}
    summary = {r["model"]: r for r in report.models.iter_rows(named=True)}
    out = [Section(
        "r(log token cost, human difficulty) per model and task (*: BH q < .05 over every cell, with a CI; "
        "†: the conclusion changes when censored costs count at the budget)",
        ["model", "role", *tasks, "mean r", "Fisher mean", "cross-task r"],
        [[m, roles.get(m) or "?", *[_r_star(grid[(m, t)]) if (m, t) in grid else "" for t in tasks],
          fmt(summary[m]["r_mean"]), fmt(summary[m]["r_mean_fisher"]), fmt(summary[m]["r_cross_task"])]
         for m in sorted(summary)],
        "'-' = undefined; the reason is in the cell table (report.md) and report.json `alignment[].note`.")]
    cells = report.alignment.sort("task", "model")
    if not compact:
        out.append(Section(
            "Every cell: r with its 95% bootstrap CI, q, Bayes factors, power, censoring",
            ["model", "task", "n", "r [95% CI]", "p", "q", "BF10", "BF01", "r / ceiling", "min detectable |r|",
             "censored items (dropped)", "r budget", "note"],
            [[c["model"], c["task"], str(c["n_items"]), _r_ci(c["r"], c["r_ci_low"], c["r_ci_high"]),
              fmt_p(c["p"]), fmt_p(c["q"]), fmt_bf(c["bf10"]), fmt_bf(c["bf01"]), fmt(c.get("r_normalised")),
              fmt(c["detectable_r"]),
              f"{c['censored_items']} ({c['n_items_dropped']})", fmt(c["r_budget"]) if c["censored_traces"] else "",
              "; ".join(filter(None, [c["note"], f"no CI: {c['ci_note']}" if c["ci_note"] and not c["note"] else None,
                                      f"cost reported by the server ({c['cost_source']})"
                                      if c.get("cost_source") not in (None, "counted") else None,
                                      "conclusion changes with censoring" if c["conclusion_changes_with_censoring"]
                                      else None]))]
             for c in cells.iter_rows(named=True)],
            f"Censoring policy: {report.censored}. BF10 > 3: evidence for alignment; BF01 > 3: evidence for none. "
            "n = items with human data and a complete cost."))
    elif cells.height <= COMPACT_CELLS:
        out.append(Section(
            "Every cell: raw r, q, Bayes factor, r / noise ceiling, and why a number is undefined",
            ["model", "task", "n", "r", "q", "BF10", "r / ceiling", "reason"],
            [[c["model"], c["task"], str(c["n_items"]), fmt(c["r"]), fmt_p(c["q"]), fmt_bf(c["bf10"]),
              fmt(c.get("r_normalised")), _reasons(c)] for c in cells.iter_rows(named=True)],
            f"Censoring policy: {report.censored}; CIs, BF01 and power in report.md."))
    else:
        flagged = cells.filter(pl.col("note").is_not_null() | pl.col("ci_note").is_not_null()
                               | (pl.col("censored_traces") > 0))
        if flagged.height:
            out.append(Section(
                "Cells to read with care: undefined numbers and censored items",
                ["model", "task", "n", "r", "r budget", "dropped", "reason"],
                [[c["model"], c["task"], str(c["n_items"]), fmt(c["r"]),
                  fmt(c["r_budget"]) if c["censored_traces"] else "", str(c["n_items_dropped"]),
                  "; ".join(filter(None, [c["note"], f"no CI: {c['ci_note']}" if c["ci_note"] and not c["note"]
                                          else None, "conclusion changes with censoring"
                                          if c["conclusion_changes_with_censoring"] else None]))]
                 for c in flagged.head(40).iter_rows(named=True)],
                f"{flagged.height} cell(s); all of them in report.md and report.json."
                if flagged.height > 40 else ""))
    return out


def role_section(report: Report) -> Section:
    return Section(
        "Mean r by role over model x task cells: the paper's unweighted mean and the inverse-variance weighted "
        "ones (fixed-effect and random-effects)",
        ["role", "models", "cells", "mean r", "95% CI (t on z)", "weighted r, fixed-effect", "95% CI (fixed)",
         "weighted r, random-effects", "95% CI (random)", "tau^2", "undefined cells"],
        [[r["role"], str(r["n_models"]), str(r["n_cells"]), fmt(r["r_mean"]),
          f"[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]", fmt(r["r_weighted"]),
          f"[{fmt(r['weighted_ci_low'])}, {fmt(r['weighted_ci_high'])}]", fmt(r.get("r_random")),
          f"[{fmt(r.get('random_ci_low'))}, {fmt(r.get('random_ci_high'))}]", fmt(r.get("tau2"), 4),
          str(r["n_cells_undefined"])]
         for r in report.roles.iter_rows(named=True)],
        "The paper: teachers 0.64, distilled students 0.34. Fixed-effect: as if every cell of a role estimated one "
        "correlation (too narrow when cells differ); random-effects: tau^2 between cells by REML, as "
        "metafor::rma (needs 2 cells). Cells also share models and tasks, which neither CI models: see the "
        "multilevel contrasts.")


def reliability_sections(report: Report) -> List[Section]:
    rel = report.human_reliability
    out = [Section(
        "How much r is reachable: split-half reliability of human difficulty per task",
        ["task", "measure", "participants", "items", "reliability", "95% range over splits", "note"],
        [[r["task"], r["measure"] or "", str(r["n_participants"] or "-"), str(r["n_items"] or "-"),
          fmt(r["reliability"]), f"[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]" if _finite(r["ci_low"]) else "-",
          r["note"] or ""] for r in rel.iter_rows(named=True)],
        "Random halves of participants, Spearman-Brown corrected, 1,000 seeded splits.")]
    cells = report.alignment.filter(pl.col("noise_ceiling").is_not_nan())
    if cells.height:
        out.append(Section(
            "r beside its noise ceiling sqrt(rel_human x rel_cost) and r / ceiling",
            ["model", "task", "r", "cost reliability", "ceiling", "r / ceiling"],
            [[c["model"], c["task"], fmt(c["r"]), fmt(c["cost_reliability"]), fmt(c["noise_ceiling"]),
              fmt(c["r_normalised"])] for c in cells.sort("task", "model").iter_rows(named=True)],
            "Cost reliability needs >= 2 samples per item; without it the ceiling is the human reliability's "
            "square root (a deterministic cost)."))
    return out


def multilevel_sections(report: Report) -> List[Section]:
    ml = report.multilevel
    if not ml:
        return []
    rc, im = ml["role_contrasts"], ml["item_model"]

    def row(name: str, c: dict) -> List[str]:
        ci = f"[{fmt(c.get('ci_low'))}, {fmt(c.get('ci_high'))}]" if _finite(c.get("ci_low")) else "-"
        df = c.get("df")
        return [name, fmt(c.get("estimate"), 3), fmt(c.get("se"), 3), ci, fmt(c.get("z")),
                fmt(df, 1) if _finite(df) else "-", fmt_p(c.get("p")), fmt_p(c.get("p_holm")), c.get("note") or ""]

    heads = ["", "estimate", "SE", "95% CI", "t", "df", "p", "p Holm", "note"]
    out = [Section(
        "Role contrasts that respect the design: multilevel model of Fisher z per cell "
        "(known variance 1/(n-3), crossed random intercepts for model and task)",
        heads, [row(f"{name.replace('_', ' ')} (z units)", c) for name, c in rc["contrasts"].items()]
        + [row(f"role mean: {role} (z)", c) for role, c in rc["roles"].items()],
        f"{rc['n_cells']} cells, {rc['n_models']} models, {rc['n_tasks']} tasks; sigma2 model "
        f"{fmt(rc['sigma2_model'], 4)}, task {fmt(rc['sigma2_task'], 4)}."
        + (f" {rc['note']}." if rc.get("note") else "") + " rl models are their own role, never pooled with students. "
        "t on cells - roles df (metafor's test = \"t\"); p Holm: over the distinct contrasts "
        "(teacher vs student is student vs teacher reversed).")]
    out.append(Section(
        f"Item-level mixed model: {im['formula']}",
        heads, [row(f"difficulty slope: {role}", c) for role, c in im.get("role_slopes", {}).items()]
        + [row(f"slope difference: {role} - {im.get('reference_role')}", c)
           for role, c in im.get("slope_differences", {}).items()],
        f"{im.get('n_rows')} model x item rows, {im.get('n_models')} models, {im.get('n_items')} items; "
        f"hd_z: difficulty z-scored within task; t on Satterthwaite's df (as lmerTest); p Holm: over the slope "
        "differences." + (f" {im['note']}." if im.get("note") else "")))
    return out


def family_section(report: Report) -> Section:
    def vs(r: dict, label: str) -> str:
        if not r[label]:
            return "-"
        flag = " (underpowered)" if r[f"underpowered_vs_{label}"] else ""
        return (f"{fmt(r[f'r_student_vs_{label}'])} vs {fmt(r[f'r_{label}'])}, n {r[f'n_vs_{label}']}: "
                f"q {fmt_p(r[f'q_vs_{label}'])}{flag}")

    rows = [[r["student"], r["role"], r["task"], fmt(r["r_student"]), vs(r, "teacher"), vs(r, "base"), r["note"] or ""]
            for r in report.families.iter_rows(named=True)]
    return Section(
        "Collapse and negative transfer: student vs teacher and vs base, Williams' t on the items both have",
        ["student", "role", "task", "r (all items)", "vs teacher", "vs base", "note"], rows,
        "Each comparison: the student's r and the other's on their shared items; q: BH over every Williams' test; "
        "underpowered: below 80% power to detect the paper's 0.64 vs 0.34 at that size.")


def paired_section(report: Report) -> Section:
    tests = [(name, t) for name, t in report.paired.items() if t["n_pairs"]]
    return Section(
        "Across the zoo: paired t over cells (distilled students = the paper's test; rl models apart)",
        ["comparison", "pairs", "mean diff", "t", "df", "p", "note"],
        [[t["label"], str(t["n_pairs"]), fmt(t["mean_diff"]), fmt(t["t"]), str(t["df"]), fmt_p(t["p"]),
          t["note"] or ""] for _, t in tests],
        "The paper: students below their bases, t = -2.60, p = 0.011. Cells share models and tasks: these tests "
        "treat them as independent and overstate the evidence.")


def effort_sections(report: Report) -> List[Section]:
    """The reasoning-effort factor (report.json `effort_levels`); none without one."""
    eff = report.effort_levels
    if not eff:
        return []
    cells = [(config, task, sec) for config, tasks in eff.items() for task, sec in tasks.items()]
    levels, tests, pairs = [], [], []
    for config, task, sec in cells:
        for lv, mp in zip(sec["levels"], sec["manipulation"]):
            levels.append([config, task, lv["level"], lv["model"], str(lv["n_items"] or 0),
                           _r_ci(lv["r"], lv["r_ci_low"], lv["r_ci_high"]), fmt(mp["cost_mean"], 0),
                           fmt(mp["cost_median"], 0), str(mp["n_traces"]), fmt(mp["budget_hit_fraction"]),
                           fmt(mp["censored_fraction"]), mp["cost_source"] or ""])
        om, cd = sec["omnibus"], sec["ceiling_or_dial"]
        tests.append([config, task, " < ".join(om["levels"]), str(om["n_items"]),
                      f"{fmt(om['chi2'])} ({om['df']})", fmt_p(om["p"]), fmt_p(om.get("p_holm")), fmt_bf(sec["bf01"]),
                      f"{cd['high']} - {cd['low']}: {fmt(cd['mean_delta'])} (x{fmt(cd['ratio'])})",
                      _r_ci(cd["r"], cd["ci_low"], cd["ci_high"]), fmt_p(cd["p"]), fmt_p(cd.get("p_holm")),
                      fmt_bf(cd.get("bf01")), cd["verdict"] or "-", cd.get("verdict_reason") or "",
                      "; ".join(filter(None, [om["note"], cd["note"], sec.get("note")]))])
        pairs += [[config, task, t["level_a"], t["level_b"], str(t["n"]), fmt(t["r_a"]), fmt(t["r_b"]), fmt(t["r_ab"]),
                   fmt(t["t"]), fmt_p(t["p"]), fmt_p(t["p_holm"]), t["note"] or ""] for t in sec["pairwise"]]
    return [
        Section("Reasoning effort: r and cost per effort level of a model config",
                ["config", "task", "level", "model", "n", "r [95% CI]", "mean cost", "median cost", "traces",
                 "budget hit", "censored", "cost source"], levels,
                "Levels ordered none < budget=N < low < medium < high < default (the model's own). Cost over "
                "every trace of the level; budget hit: share of traces budget forcing cut ('-': no budget); "
                "cost source server: the API's reported reasoning-token count."),
        Section("Reasoning effort: does alignment change with effort (a dial), or does effort only scale length "
                "(a ceiling)?",
                ["config", "task", "levels", "items", "chi2 (df)", "p", "p Holm", "BF01", "mean delta log cost (ratio)",
                 "r(delta, difficulty) [95% CI]", "p", "p Holm", "BF01", "verdict", "evidence", "note"], tests,
                "chi2: Steiger's test that the levels' r are equal (dependent correlations on the items every level "
                "has); BF01 (BIC approximation over items; > 3: evidence that r does not change). delta: per item, "
                "log cost at the highest level minus at the lowest. Verdict: dial or reversed when r(delta, "
                "difficulty) has Holm p < .05, ceiling when its BF01 >= 3, else undecided. Holm: over every row "
                "of this table (each column its own family)."),
        Section("Reasoning effort: pairwise Williams' t between levels, on the items both have",
                ["config", "task", "level a", "level b", "n", "r a", "r b", "r ab", "t", "p", "p Holm", "note"],
                pairs, "Holm over the pairs of one config x task."),
    ]


def precision_section(report: Report) -> Section:
    return Section(
        "Precision per task: what its item count can show",
        ["task", "items", "median CI width", "min detectable |r| (80% power)", "power: teacher 0.64 vs student 0.34"],
        [[r["task"], str(r["n_items"]), fmt(r["median_ci_width"]), fmt(r["detectable_r"]),
          fmt(r["power_teacher_vs_student"]) + (" (underpowered)" if r["underpowered"] else "")]
         for r in report.precision.iter_rows(named=True)],
        "Power for two models' r on the same items, their costs uncorrelated (the conservative case).")


def cargo_cult_section(report: Report) -> Section:
    """Inflation, inverse efficiency, elasticity and the mean JSD in one table (the paper's claim)."""
    infl = report.inflation_summary
    ie = report.inverse_efficiency_fit
    js = report.relative_effort["js_teacher_student"].drop_nulls().drop_nans()
    el = report.elasticity.join(report.study.models.select("model", "role"), on="model", how="left")
    el_roles = el.group_by("role").agg(pl.col("slope").drop_nans().mean()).sort("role")
    return Section(
        "Cargo cult: verbosity without difficulty tracking (distilled students)",
        ["measure", "value"],
        [["tokens student / base (geometric mean over cells, shared items)", fmt(infl["student_vs_base_geomean"])],
         ["  its coefficient of variation (near 0: a constant factor)", fmt(infl["student_vs_base_cv"])],
         ["tokens student / teacher (geometric mean)", fmt(infl["student_vs_teacher_geomean"])],
         ["Jensen-Shannon divergence teacher vs student relative effort (bits), mean over cells",
          fmt(js.mean() if js.len() else None, 3)],
         ["inverse efficiency, student on base: slope", fmt(ie["slope"])],
         ["  intercept", fmt(ie["intercept"], 1)], ["  R^2", fmt(ie["r2"])], ["  cells", str(ie["n"])],
         *[[f"elasticity d log tokens / d log RT, {r['role']}", fmt(r["slope"])] for r in el_roles.iter_rows(named=True)]],
        "The paper: students inflate tokens ~2.44x over their bases, linearly." + (f" IE: {ie['note']}." if ie.get("note") else ""))


def fingerprint_sections(report: Report) -> List[Section]:
    roles = dict(zip(report.study.models["model"], report.study.models["role"]))
    rsa = report.rsa
    if "human" not in rsa.columns:
        return []
    to_human = rsa.filter(pl.col("fingerprint") != "human").select("fingerprint", "human").sort("human", descending=True)
    dropped = "; ".join(f"{m}: {why}" for m, why in report.fingerprints_dropped.items())
    return [Section(
        f"Difficulty fingerprints: RSA with humans over {report.rsa_items} items shared by "
        f"{to_human.height} models",
        ["model", "role", "r with human fingerprint"],
        [[m, roles.get(m) or "?", fmt(v)] for m, v in to_human.iter_rows()],
        ("Left out: " + dropped + ". " if dropped else "")
        + "Full matrix: report.json `fingerprints.rsa` and figures/rsa_heatmap.png.")]


def wrong_vs_right_section(report: Report) -> Section:
    return Section(
        "Beyond the paper: effort on wrong vs right answers (item and model fixed effects)",
        ["task", "traces", "wrong", "log-cost premium of wrong", "SE", "d", "note"],
        [[r["task"], str(r["n_traces"]), str(r["n_wrong"]), fmt(r["beta"], 3), fmt(r["se"], 3), fmt(r["d"]),
          r["note"] or ""] for r in report.wrong_vs_right_fe.iter_rows(named=True)],
        "Positive: wrong answers cost more tokens than right ones on the same items. Per model: report.json.")


def correct_only_section(report: Report) -> Section:
    return Section(
        "Beyond the paper: alignment on correct traces only vs all traces",
        ["model", "task", "r all", "items", "r correct only", "items correct"],
        [[r["model"], r["task"], fmt(r["r_all"]), str(r["n_items"]), fmt(r["r_correct_only"]),
          str(r["n_items_correct"] or 0)] for r in report.correct_only.iter_rows(named=True)])


def sections(report: Report, compact: bool = False) -> List[Section]:
    """Every analysis's sections, in report.md's order (result.MARKDOWN_V2, then the rest)."""
    return [sec for a in report.shown(MARKDOWN_V2) if a.render for sec in a.render(report, compact)]


def relative_effort_sections(report: Report, compact: bool = False) -> List[Section]:
    """Per student x task: relative effort, the teacher-vs-student JSD with its CI, and its
    permutation p beside the p's Monte Carlo SE (another seed's p is typically that far away)."""
    eff = report.relative_effort
    if not eff.height or "js_p" not in eff.columns:
        return []
    shown = eff.head(COMPACT_CELLS) if compact else eff
    perms = sorted({int(b) for b in eff["js_n_perm"].drop_nulls()}) if "js_n_perm" in eff.columns else []
    return [Section(
        "Relative effort per student x task: teacher-vs-student Jensen-Shannon divergence",
        ["student", "teacher", "task", "items", "effort / teacher", "JSD (bits)", "95% CI", "p (permutation)",
         "MC SE of p", "note"],
        [[r["student"], r["teacher"] or "-", r["task"], str(r["n_items"]), fmt(r["effort_mean"]),
          fmt(r["js_teacher_student"], 3),
          f"[{fmt(r['js_ci_low'], 3)}, {fmt(r['js_ci_high'], 3)}]" if _finite(r["js_ci_low"]) else "-",
          fmt_p(r["js_p"]), fmt(r.get("js_p_mc_se"), 4), r["note"] or ""] for r in shown.iter_rows(named=True)],
        (f"p from {' / '.join(f'{b:,}' for b in perms) or 'no'} random permutations (each item's two values "
         "swapped); its Monte Carlo SE is sqrt(p (1 - p) / permutations). The CI is a bootstrap over items "
         "with the bins fixed (the plug-in JSD is biased up, so it never reaches 0)."
         + (f" {eff.height - shown.height} more cell(s) in report.md and report.json." if shown.height < eff.height
            else "")))]


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
