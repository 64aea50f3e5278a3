"""The report's pictures (matplotlib, off-screen PNGs): scatter grid, r by role, family slopes,
RSA heatmap, inflation regression, and effort levels where the study has an effort factor."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import polars as pl

from cogdistill.report.result import FIGURES_V2, Report

ROLE_COLOURS = {"teacher": "#1b7837", "student": "#c0392b", "base": "#2166ac", "control": "#7f7f7f", "rl": "#8e44ad"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    _plt().close(fig)
    return out


# A page holds at most PAGE_ROWS models x PAGE_COLS tasks: beyond that a panel is too small to read and
# every panel costs its own axes and ticks (a 20 x 8 study drew 120 panels in 25 s, unreadable at any size).
PAGE_ROWS, PAGE_COLS = 6, 4
MAX_PAGES = 1  # pages drawn by default; the rest are listed in the figure's note (--scatter-pages all)
# page order: whole families, each as teacher, students, base, rl, controls, so page 1 shows families
ROLE_RANK = {"teacher": 0, "student": 1, "base": 2, "rl": 3, "control": 4}


def model_order(models: pl.DataFrame, present) -> List[str]:
    """The models of `present` family by family (families holding a teacher first), within a family
    by role (teacher, student, base, rl, control), then by name; models the table lacks go last."""
    known = {}
    for row in models.select("model", "role", "family").iter_rows(named=True):
        known[row["model"]] = (row["family"] or row["model"], ROLE_RANK.get(row["role"], len(ROLE_RANK)))
    family_rank: Dict[str, int] = {}
    for family, rank in known.values():
        family_rank[family] = min(rank, family_rank.get(family, rank))

    def key(model: str):
        if model not in known:
            return (1, 0, "", 0, model)
        family, rank = known[model]
        return (0, family_rank[family], family, rank, model)

    return sorted(set(present), key=key)


def scatter_pages(report: Report, rows: int = PAGE_ROWS, cols: int = PAGE_COLS) -> List[List[tuple]]:
    """The model x task cells in pages of at most rows x cols panels: blocks of models (outer, in
    model_order) by blocks of tasks (inner, sorted), so a page is a readable grid of whole rows and columns."""
    return _pages(report.alignment.select("model", "task"), report.study.models, rows, cols)


def _pages(cells: pl.DataFrame, models_table: pl.DataFrame, rows: int = PAGE_ROWS,
           cols: int = PAGE_COLS) -> List[List[tuple]]:
    models, tasks = model_order(models_table, cells["model"].unique()), sorted(cells["task"].unique())
    present = set(cells.iter_rows())
    pages = []
    for m0 in range(0, len(models), rows):
        for t0 in range(0, len(tasks), cols):
            page = [(m, t) for m in models[m0:m0 + rows] for t in tasks[t0:t0 + cols] if (m, t) in present]
            if page:
                pages.append(page)
    return pages


def page_name(out: Path, k: int) -> Path:
    """Page 1 keeps the figure's name (scatter_grid.png); page k is scatter_grid_p<k>.png."""
    return out if k == 1 else out.with_name(f"{out.stem}_p{k}{out.suffix}")


def scatter_grid(report: Report, out: Path, max_pages: Optional[int] = MAX_PAGES) -> List[Path]:
    """Human difficulty vs tokens (log), r in each panel's title, one panel per model x task, paged
    (scatter_pages). At most max_pages pages are drawn (None: all); when any cell is left out, page 1
    says how many and which pages hold them, and how to draw them."""
    return draw_scatter_pages(scatter_plan(report.items, report.alignment, report.study.models, out, max_pages))


def scatter_plan(items: pl.DataFrame, alignment: pl.DataFrame, models: pl.DataFrame, out: Path,
                 max_pages: Optional[int] = MAX_PAGES) -> List[tuple]:
    """What the drawn pages show, as plain numbers: [(path, note, [(model, task, x, y, r) | None
    per panel], n_models, n_tasks)]. Everything polars happens here, so the drawing can run in a
    forked process (polars' thread pool must not be used after a fork)."""
    pages = _pages(alignment.select("model", "task"), models)
    drawn = pages if max_pages is None else pages[:max(1, max_pages)]
    wanted = {c for page in drawn for c in page}
    rows = items.select("model", "task", "human_difficulty", "cost_mean")
    by_cell = {key: cell.filter(pl.col("human_difficulty").is_not_null())
               for key, cell in rows.partition_by("model", "task", as_dict=True).items() if key in wanted}
    r_of = {(m, t): r for m, t, r in alignment.select("model", "task", "r").iter_rows()}
    plan = []
    for k, page in enumerate(drawn, 1):
        models_p = list(dict.fromkeys(m for m, _ in page))  # page order (model_order), not alphabetical
        tasks_p = sorted({t for _, t in page})
        present = set(page)
        panels = []
        for m in models_p:
            for t in tasks_p:
                cell = by_cell.get((m, t)) if (m, t) in present else None
                panels.append(None if cell is None else (m, t, cell["human_difficulty"].to_numpy(),
                                                         cell["cost_mean"].to_numpy() + 1, r_of.get((m, t))))
        plan.append((page_name(out, k), page_note(pages, len(drawn), k), panels, len(models_p), len(tasks_p)))
    return plan


def page_note(pages: List[List[tuple]], n_drawn_pages: int, k: int) -> str:
    """The line atop page k: which page of how many, and on page 1 what was left undrawn and how
    to draw it; empty for a study that fits one page (its figure is as it always was)."""
    if len(pages) <= 1:
        return ""
    n_cells = sum(map(len, pages))
    notes = [f"page {k} of {len(pages)}: {len(pages[k - 1])} of {n_cells} model x task cells"]
    left_out = n_cells - sum(map(len, pages[:n_drawn_pages]))
    if k == 1 and left_out:
        notes.append(f"{left_out} cell(s) on pages {n_drawn_pages + 1}..{len(pages)} not drawn (every r is in "
                     "report.md and report.json; draw them with python -m cogdistill.report ... --scatter-pages all)")
    return "; ".join(notes)


def draw_scatter_pages(plan: List[tuple]) -> List[Path]:
    """Draw a scatter_plan: numpy and matplotlib only (safe in a forked process)."""
    return [_scatter_page(*page) for page in plan]


def draw_in_background(plan: List[tuple]) -> Callable[[], List[Path]]:
    """Start drawing a scatter_plan in a forked process (the report's analyses go on meanwhile on
    the other core); the returned call waits and gives the pages' paths. Where fork is missing or
    the child fails, the pages are drawn here instead: the same figure either way."""
    if not plan or not hasattr(os, "fork"):
        return lambda: draw_scatter_pages(plan)
    from cogdistill.report.parallel import fork, leave

    try:
        pid = fork()
    except OSError:
        return lambda: draw_scatter_pages(plan)
    if pid == 0:  # the child: numpy and matplotlib only, never polars (its thread pool is the parent's)
        code = 1
        try:
            draw_scatter_pages(plan)
            code = 0
        finally:
            leave(code)  # no atexit handlers, no traceback: the parent redraws on failure

    def wait() -> List[Path]:
        _, status = os.waitpid(pid, 0)
        paths = [page[0] for page in plan]
        if os.waitstatus_to_exitcode(status) == 0 and all(p.exists() for p in paths):
            return paths
        return draw_scatter_pages(plan)

    return wait


def _scatter_page(out: Path, note: str, panels: List[Optional[tuple]], n_models: int, n_tasks: int) -> Path:
    plt = _plt()
    from matplotlib.ticker import NullFormatter, NullLocator

    fig, axes = plt.subplots(n_models, n_tasks, figsize=(2.6 * n_tasks, 2.2 * n_models + 0.3 * bool(note)),
                             dpi=90, squeeze=False)
    for ax, panel in zip(axes.ravel(), panels):
        if panel is None:
            ax.axis("off")
            continue
        model, task, x, y, r = panel
        ax.scatter(x, y, s=6, alpha=0.6, color="#3b6ea8")
        ax.set_yscale("log")
        # a title as text at a fixed place: set_title re-measures every panel's ticks to place it
        ax.text(0.5, 1.03, f"{model} | {task}\nr = {r:.2f}" if r is not None and math.isfinite(r) else
                f"{model} | {task}\nr undefined", transform=ax.transAxes, ha="center", va="bottom", fontsize=7)
        ax.tick_params(which="both", labelsize=6)
        ax.yaxis.set_minor_locator(NullLocator())  # decade ticks only: minor ones overlap and cost most
        ax.yaxis.set_minor_formatter(NullFormatter())
    fig.supxlabel("human difficulty (per item)", fontsize=8)
    fig.supylabel("tokens + 1 (mean per item, log)", fontsize=8)
    width, height = fig.get_size_inches()
    top = 0.45 + 0.3 * bool(note)
    if note:
        fig.text(0.5, 1 - 0.08 / height, note, ha="center", va="top", fontsize=7, color="#444444", wrap=True)
    # fixed margins in inches: tight_layout measures every panel (half the time)
    fig.subplots_adjust(left=0.85 / width, right=1 - 0.15 / width, bottom=0.55 / height, top=1 - top / height,
                        wspace=0.45, hspace=0.75)
    return _save(fig, out)


def r_by_role(report: Report, out: Path) -> Path:
    """Each role: its cells as dots, the paper's unweighted mean with a t interval (circle), the
    random-effects weighted mean with its CI (diamond; tau^2 between cells by REML: the
    fixed-effect interval assumes every cell estimates one correlation and is too narrow), and the
    noise ceiling of its cells as a grey band (the range over cells; how high r could go given
    human and cost reliability)."""
    plt = _plt()
    roles = report.roles.filter(pl.col("n_cells") > 0)
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=110)
    cells = report.alignment.join(report.study.models.select("model", "role"), on="model")
    has_ceiling = "noise_ceiling" in cells.columns
    banded = False
    for k, row in enumerate(roles.iter_rows(named=True)):
        colour = ROLE_COLOURS.get(row["role"], "#333333")
        mine = cells.filter(pl.col("role") == row["role"])
        if has_ceiling:
            ceil = mine["noise_ceiling"].drop_nulls().drop_nans()
            if ceil.len():
                ax.fill_between([k - 0.4, k + 0.4], float(ceil.min()), float(ceil.max()) + 0.004, color="#bbbbbb",
                                alpha=0.5, linewidth=0, label=None if banded else "noise ceiling (range over cells)")
                banded = True
        rs = mine["r"].drop_nulls().drop_nans().to_numpy()
        ax.scatter(k - 0.2 + np.random.default_rng(k).uniform(-0.08, 0.08, rs.size), rs, s=10, alpha=0.4,
                   color=colour)
        for offset, mean, low, high, marker, label in (
                (0.0, row["r_mean"], row["ci_low"], row["ci_high"], "o", "mean over cells, t CI (the paper's)"),
                (0.2, row.get("r_random"), row.get("random_ci_low"), row.get("random_ci_high"), "D",
                 "inverse-variance weighted, random-effects 95% CI (REML)")):
            if mean is None or not math.isfinite(mean):
                continue
            err = None if low is None or not math.isfinite(low) else [[mean - low], [high - mean]]
            ax.errorbar(k + offset, mean, yerr=err, fmt=marker, color=colour, capsize=4, markersize=7,
                        label=label if k == 0 else None)
    ax.set_xticks(range(roles.height), [f"{r}\n(n={n})" for r, n in zip(roles["role"], roles["n_models"])])
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_ylabel("r(log token cost, human difficulty)")
    ax.set_ylim(-1, 1.05)
    ax.set_title("Alignment by role over model x task cells", fontsize=9)
    if roles.height:
        ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    return _save(fig, out)


def family_slopes(report: Report, out: Path) -> Path:
    """Per student, mean r over tasks: teacher -> student <- base; collapse reads as a dip."""
    plt = _plt()
    fam = report.families.group_by("student").agg(pl.col("r_teacher", "r_student", "r_base").mean()).sort("student")
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for row in fam.iter_rows(named=True):
        ys = [row["r_teacher"], row["r_student"], row["r_base"]]
        xs = [k for k, y in enumerate(ys) if y is not None and math.isfinite(y)]
        ax.plot(xs, [ys[k] for k in xs], marker="o", alpha=0.8, label=row["student"])
    ax.set_xticks([0, 1, 2], ["teacher", "student", "base"])
    ax.set_ylabel("mean r over tasks")
    ax.axhline(0, color="black", linewidth=0.6)
    if fam.height == 0:
        ax.text(1, 0, "no student with its teacher or base in this study", ha="center", fontsize=8)
    elif fam.height <= 12:
        ax.legend(fontsize=6)
    ax.set_title("Family slopes: teacher -> student <- base", fontsize=9)
    fig.tight_layout()
    return _save(fig, out)


def rsa_heatmap(report: Report, out: Path) -> Path:
    plt = _plt()
    names = report.rsa["fingerprint"].to_list()
    mat = report.rsa.select(names).to_numpy() if names else np.zeros((0, 0))
    size = max(4.0, 0.35 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size), dpi=110)
    im = ax.imshow(mat, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    ax.set_yticks(range(len(names)), names, fontsize=6)
    if len(names) <= 16:
        for i in range(len(names)):
            for j in range(len(names)):
                if math.isfinite(mat[i, j]):
                    ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=5)
    fig.colorbar(im, ax=ax, shrink=0.8, label="Pearson r of difficulty fingerprints")
    ax.set_title(f"RSA over {report.rsa_items} shared items (z-scored log cost per task)", fontsize=8)
    fig.tight_layout()
    return _save(fig, out)


def inflation_regression(report: Report, out: Path) -> Path:
    """Students' inverse efficiency (tokens / accuracy) on their bases', with the fitted line."""
    plt = _plt()
    data = report.inverse_efficiency.drop_nulls(["ie_student", "ie_base"])
    fit = report.inverse_efficiency_fit
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=110)
    ax.scatter(data["ie_base"], data["ie_student"], s=18, color="#c0392b", alpha=0.8)
    if data.height and math.isfinite(fit.get("slope", math.nan)):
        grid = np.linspace(data["ie_base"].min(), data["ie_base"].max(), 20)
        ax.plot(grid, fit["intercept"] + fit["slope"] * grid, color="black", linewidth=1)
        ax.set_title(f"Inflation law: IE_student = {fit['intercept']:.0f} + {fit['slope']:.2f} IE_base, "
                     f"R^2 = {fit['r2']:.2f}, n = {fit['n']}", fontsize=8)
    else:
        ax.set_title("Inflation law: fewer than 3 student/base cells with accuracy > 0", fontsize=8)
    ax.set_xlabel("base: mean tokens / accuracy")
    ax.set_ylabel("student: mean tokens / accuracy")
    fig.tight_layout()
    return _save(fig, out)


def effort_levels(report: Report, out: Path, max_rows: int = 24) -> Path:
    """Per config x task: r with its CI against effort level (left) and mean cost against effort
    level (right, log), each point's budget-hit share written beside it where the level had a budget."""
    plt = _plt()
    cells = [(c, t, sec) for c, tasks in report.effort_levels.items() for t, sec in tasks.items()][:max_rows]
    fig, axes = plt.subplots(len(cells), 2, figsize=(9, 2.6 * len(cells)), dpi=100, squeeze=False)
    for (config, task, sec), (left, right) in zip(cells, axes):
        names = [lv["level"] for lv in sec["levels"]]
        xs = np.arange(len(names))
        for x, lv in zip(xs, sec["levels"]):
            r, low, high = (_nan(lv[k]) for k in ("r", "r_ci_low", "r_ci_high"))
            err = [[r - low], [high - r]] if math.isfinite(low) and math.isfinite(r) else None
            left.errorbar(x, r, yerr=err, fmt="o", color="#2166ac", capsize=4)
        left.axhline(0, color="black", linewidth=0.6)
        left.set_ylim(-1, 1)
        left.set_ylabel("r(log cost, difficulty)", fontsize=7)
        bf = sec["bf01"]
        left.set_title(f"{config} | {task}: BF01 = {bf:.3g}" if bf is not None and math.isfinite(bf)
                       else f"{config} | {task}: BF01 undefined", fontsize=8)
        costs = [_nan(m["cost_mean"]) for m in sec["manipulation"]]
        right.plot(xs, costs, marker="o", color="#c0392b")
        if any(c > 0 for c in costs):
            from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

            right.set_yscale("log")  # effort scales cost by factors: equal ratios, equal steps
            right.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))  # labels inside a decade too
            right.yaxis.set_major_formatter(ScalarFormatter())
            right.yaxis.set_minor_formatter(NullFormatter())
        for x, cost, m in zip(xs, costs, sec["manipulation"]):
            hit = _nan(m["budget_hit_fraction"])
            if math.isfinite(hit) and math.isfinite(cost):
                right.annotate(f"hit {hit:.0%}", (x, cost), textcoords="offset points", xytext=(4, 4), fontsize=6)
        cd = sec["ceiling_or_dial"]
        right.set_title(f"mean cost; {cd['verdict'] or 'verdict undefined'}", fontsize=8)
        right.set_ylabel("mean tokens per trace", fontsize=7)
        for ax in (left, right):
            ax.set_xticks(xs, names, fontsize=7)
            ax.tick_params(axis="y", labelsize=6)
    fig.tight_layout()
    return _save(fig, out)


def _nan(value) -> float:
    return float("nan") if value is None else float(value)


def write_all(report: Report, folder: Path, scatter_pages: Optional[int] = MAX_PAGES,
              scatter: Optional[Callable[[], List[Path]]] = None) -> List[Path]:
    """Every figure; scatter_pages: how many pages of the scatter grid to draw (None: all);
    scatter: the scatter grid already under way (draw_in_background), waited for here."""
    # each analysis's figures (cogdistill.report.catalogue), in version 2's order (result.FIGURES_V2)
    pngs = [draw(report, folder / name) for a in report.shown(FIGURES_V2) for name, draw in a.figures]
    scatter_pngs = scatter() if scatter else scatter_grid(report, folder / "scatter_grid.png", scatter_pages)
    return scatter_pngs + pngs
