"""Every comparison in the report, as pure functions over polars frames.

Inputs (built by cogdistill.report.study):
- `traces`: one row per model x task x item x sample: model, task, item_id, sample_idx, cost
  (the tokens the job counted as cost), correct, censored;
- `humans`: one row per task x item: task, item_id, human_difficulty, measure;
- `models`: one row per model: model, role, family, teacher, base.
Outputs are polars frames (one row per model x task, per family x task, ...) or plain dicts.
Undefined numbers are NaN (null in report.json), never errors: a study of two controls has no
families to compare, and a report over it must still build.

References: Williams' t and Steiger's z for dependent correlations sharing a variable
(Steiger 1980, Psychol. Bull. 87:245); Fisher-z means; Cohen's d with pooled SD.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import numpy as np
import polars as pl

from cogdistill import stats
from cogdistill.tasks.human import RT_MEASURES

NAN = float("nan")


# ---- 1. per model x task ---------------------------------------------------------------------

def per_item(traces: pl.DataFrame, humans: pl.DataFrame) -> pl.DataFrame:
    """One row per model x task x item: mean cost over samples, its log, accuracy, human difficulty."""
    agg = stats.mean_over_samples(traces, "cost", keys=("model", "task", "item_id"))
    return (agg.join(humans.select("task", "item_id", "human_difficulty", "measure"), on=["task", "item_id"],
                     how="left")
            .sort("model", "task", "item_id"))


def alignment_table(items: pl.DataFrame, traces: pl.DataFrame, *, n_boot: int = 2000, ci: float = 0.95,
                    seed: int = 0) -> pl.DataFrame:
    """The paper's measure per model x task: r(log cost, human RT) with p, rho, bootstrap CI, ..."""
    rows = []
    by_cell = traces.partition_by("model", "task", as_dict=True)
    for (model, task), cell in items.partition_by("model", "task", as_dict=True).items():
        al = stats.alignment(task, cell, by_cell[(model, task)], "cost", n_boot=n_boot, ci=ci, seed=seed)
        rows.append({"model": model, **al.as_dict(), "measure": cell["measure"][0]})
    return pl.DataFrame(rows, infer_schema_length=None).sort("model", "task")


# ---- 2. per model ----------------------------------------------------------------------------

def model_summary(alignment: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    rows = []
    for (model,), cells in alignment.partition_by("model", as_dict=True).items():
        rs = cells["r"].to_list()
        rt_tasks = items.filter((pl.col("model") == model) & pl.col("measure").is_in(list(RT_MEASURES)))
        per_task = {t: df for (t,), df in rt_tasks.partition_by("task", as_dict=True).items()}
        rows.append({"model": model, "n_tasks": cells.height, "r_mean": stats.plain_mean(rs),
                     "r_mean_fisher": stats.fisher_mean(rs), "r_cross_task": stats.cross_task_r(per_task)})
    return pl.DataFrame(rows, schema={"model": pl.Utf8, "n_tasks": pl.Int64, "r_mean": pl.Float64,
                                      "r_mean_fisher": pl.Float64, "r_cross_task": pl.Float64}).sort("model")


# ---- 3. by role ------------------------------------------------------------------------------

def fisher_ci(rs: Sequence[float], ci: float = 0.95) -> tuple[float, float]:
    """t interval over Fisher-z transformed correlations, back-transformed (cells are the units)."""
    from scipy.stats import t as t_dist

    z = np.arctanh(np.clip([r for r in rs if np.isfinite(r)], -0.999999, 0.999999))
    if z.size < 2:
        return NAN, NAN
    half = t_dist.ppf(0.5 + ci / 2, z.size - 1) * z.std(ddof=1) / math.sqrt(z.size)
    return float(np.tanh(z.mean() - half)), float(np.tanh(z.mean() + half))


def role_means(alignment: pl.DataFrame, models: pl.DataFrame, ci: float = 0.95) -> pl.DataFrame:
    """Mean r of each role over its model x task cells (the paper: teachers 0.64, students 0.34)."""
    joined = alignment.join(models.select("model", "role"), on="model", how="left")
    rows = []
    for (role,), cells in joined.partition_by("role", as_dict=True).items():
        rs = [r for r in cells["r"].to_list() if r is not None and np.isfinite(r)]
        low, high = fisher_ci(rs, ci)
        rows.append({"role": role or "?", "n_models": cells["model"].n_unique(), "n_cells": len(rs),
                     "r_mean": stats.plain_mean(rs), "r_mean_fisher": stats.fisher_mean(rs),
                     "ci_low": low, "ci_high": high})
    return pl.DataFrame(rows, schema={"role": pl.Utf8, "n_models": pl.Int64, "n_cells": pl.Int64,
                                      "r_mean": pl.Float64, "r_mean_fisher": pl.Float64, "ci_low": pl.Float64,
                                      "ci_high": pl.Float64}).sort("role")


# ---- 4. collapse and negative transfer ---------------------------------------------------------

def williams_t(r12: float, r13: float, r23: float, n: int) -> tuple[float, float]:
    """Williams' t (df = n - 3) for H0: rho12 = rho13, where variables 2 and 3 are measured on the
    same n units as variable 1 (here: 1 = human RT, 2 and 3 = two models' log costs)."""
    from scipy.stats import t as t_dist

    if n <= 3 or not all(np.isfinite([r12, r13, r23])):
        return NAN, NAN
    det = 1 - r12**2 - r13**2 - r23**2 + 2 * r12 * r13 * r23
    rbar = (r12 + r13) / 2
    denom = 2 * (n - 1) / (n - 3) * det + rbar**2 * (1 - r23) ** 3
    if denom <= 0:
        return NAN, NAN
    t = (r12 - r13) * math.sqrt((n - 1) * (1 + r23) / denom)
    return float(t), float(2 * t_dist.sf(abs(t), n - 3))


def steiger_z(r12: float, r13: float, r23: float, n: int) -> tuple[float, float]:
    """Steiger's (1980) z with the pooled correlation, for the same hypothesis as williams_t."""
    from scipy.stats import norm

    if n <= 3 or not all(np.isfinite([r12, r13, r23])):
        return NAN, NAN
    rbar = (r12 + r13) / 2
    psi = r23 * (1 - 2 * rbar**2) - 0.5 * rbar**2 * (1 - 2 * rbar**2 - r23**2)
    c = psi / (1 - rbar**2) ** 2
    z = (math.atanh(r12) - math.atanh(r13)) * math.sqrt((n - 3) / (2 - 2 * c))
    return float(z), float(2 * norm.sf(abs(z)))


def compare_dependent(items: pl.DataFrame, task: str, model_a: str, model_b: str) -> Dict[str, float]:
    """r(a), r(b) on their shared items of `task`, r between their costs, and Williams' t of r(a) - r(b)."""
    def costs(model: str) -> pl.DataFrame:
        return items.filter((pl.col("model") == model) & (pl.col("task") == task)
                            & pl.col("human_difficulty").is_not_null()).select("item_id", "human_difficulty",
                                                                                pl.col("log_cost").alias(model))

    both = costs(model_a).join(costs(model_b).drop("human_difficulty"), on="item_id", how="inner")
    h, a, b = (both[c].to_numpy() for c in ("human_difficulty", model_a, model_b))
    r_a, r_b, r_ab = stats.pearson(h, a)[0], stats.pearson(h, b)[0], stats.pearson(a, b)[0]
    t, p = williams_t(r_a, r_b, r_ab, both.height)
    return {"n": both.height, "r_a": r_a, "r_b": r_b, "r_ab": r_ab, "t": t, "p": p}


def family_table(items: pl.DataFrame, models: pl.DataFrame) -> pl.DataFrame:
    """Per student (a model with a teacher or a base in the study) x task: its r against the
    teacher's and the base's, each difference tested with Williams' t on the shared items."""
    present = set(models["model"])
    rows = []
    for m in models.iter_rows(named=True):
        teacher = m["teacher"] if m["teacher"] in present else None
        base = m["base"] if m["base"] in present else None
        if m["role"] not in ("student", "rl") or not (teacher or base):
            continue
        for task in sorted(items.filter(pl.col("model") == m["model"])["task"].unique()):
            own = items.filter((pl.col("model") == m["model"]) & (pl.col("task") == task)
                               & pl.col("human_difficulty").is_not_null())
            row = {"student": m["model"], "role": m["role"], "family": m["family"], "task": task,
                   "teacher": teacher, "base": base,
                   "r_student": stats.pearson(own["human_difficulty"].to_numpy(), own["log_cost"].to_numpy())[0]}
            for other, label in ((teacher, "teacher"), (base, "base")):
                res = compare_dependent(items, task, m["model"], other) if other else {}
                row[f"r_{label}"] = res.get("r_b", NAN)
                row[f"delta_{label}"] = res.get("r_a", NAN) - res.get("r_b", NAN)  # on the shared items
                row[f"t_vs_{label}"], row[f"p_vs_{label}"] = res.get("t", NAN), res.get("p", NAN)
            rows.append(row)
    schema = {"student": pl.Utf8, "role": pl.Utf8, "family": pl.Utf8, "task": pl.Utf8, "teacher": pl.Utf8,
              "base": pl.Utf8, "r_teacher": pl.Float64, "delta_teacher": pl.Float64, "t_vs_teacher": pl.Float64,
              "p_vs_teacher": pl.Float64, "r_student": pl.Float64, "r_base": pl.Float64, "delta_base": pl.Float64,
              "t_vs_base": pl.Float64, "p_vs_base": pl.Float64}
    return pl.DataFrame(rows, schema=schema).select(list(schema))


def paired_test(a: Sequence[float], b: Sequence[float]) -> Dict[str, float]:
    """Paired t test (and Wilcoxon) of a - b over the pairs where both are defined."""
    from scipy.stats import ttest_rel, wilcoxon

    pairs = np.array([(x, y) for x, y in zip(a, b) if np.isfinite(x) and np.isfinite(y)], float).reshape(-1, 2)
    n = len(pairs)
    out = {"n_pairs": n, "mean_a": NAN, "mean_b": NAN, "mean_diff": NAN, "t": NAN, "df": n - 1, "p": NAN,
           "wilcoxon_p": NAN}
    if n == 0:
        return out
    diff = pairs[:, 0] - pairs[:, 1]
    out.update(mean_a=float(pairs[:, 0].mean()), mean_b=float(pairs[:, 1].mean()), mean_diff=float(diff.mean()))
    if n >= 2 and np.ptp(diff) > 0:
        res = ttest_rel(pairs[:, 0], pairs[:, 1])
        out.update(t=float(res.statistic), p=float(res.pvalue))
        if np.any(diff != 0):
            out["wilcoxon_p"] = float(wilcoxon(diff).pvalue)
    return out


def zoo_paired_tests(families: pl.DataFrame) -> Dict[str, Dict[str, float]]:
    """Across the zoo (every student x task cell): student vs base r and student vs teacher r
    (the paper: students below their bases, t = -2.60, p = 0.011)."""
    return {"student_vs_base": paired_test(families["r_student"].to_list(), families["r_base"].to_list()),
            "student_vs_teacher": paired_test(families["r_student"].to_list(), families["r_teacher"].to_list())}


# ---- 5. cargo cult -------------------------------------------------------------------------------

def _task_means(items: pl.DataFrame) -> pl.DataFrame:
    return items.group_by("model", "task").agg(pl.col("cost_mean").mean().alias("tokens"))


def inflation(items: pl.DataFrame, models: pl.DataFrame) -> pl.DataFrame:
    """Verbosity inflation per student x task: its mean tokens over the base's and the teacher's."""
    means = {(r["model"], r["task"]): r["tokens"] for r in _task_means(items).iter_rows(named=True)}
    rows = []
    for m in models.filter(pl.col("role").is_in(["student", "rl"])).iter_rows(named=True):
        for (model, task), tokens in means.items():
            if model != m["model"]:
                continue
            base, teacher = means.get((m["base"], task)), means.get((m["teacher"], task))
            rows.append({"student": model, "task": task, "tokens": tokens, "tokens_base": base, "tokens_teacher": teacher,
                         "vs_base": tokens / base if base else None, "vs_teacher": tokens / teacher if teacher else None})
    return pl.DataFrame(rows, schema={"student": pl.Utf8, "task": pl.Utf8, "tokens": pl.Float64,
                                      "tokens_base": pl.Float64, "tokens_teacher": pl.Float64,
                                      "vs_base": pl.Float64, "vs_teacher": pl.Float64}).sort("student", "task")


def geometric_mean(values: Sequence[Optional[float]]) -> float:
    vals = np.array([v for v in values if v is not None and np.isfinite(v) and v > 0], float)
    return float(np.exp(np.log(vals).mean())) if vals.size else NAN


def elasticity(items: pl.DataFrame) -> pl.DataFrame:
    """Slope of log tokens on log human RT per model x task: how much cost grows with difficulty
    (1 = proportional). RT measures only: an error rate has no meaningful log."""
    from scipy.stats import linregress

    rows = []
    rt_items = items.filter(pl.col("measure").is_in(list(RT_MEASURES)) & (pl.col("human_difficulty") > 0))
    for (model, task), cell in rt_items.partition_by("model", "task", as_dict=True).items():
        x, y = np.log(cell["human_difficulty"].to_numpy()), cell["log_cost"].to_numpy()
        fit = linregress(x, y) if len(x) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0 else None
        rows.append({"model": model, "task": task, "n": len(x), "slope": fit.slope if fit else NAN,
                     "slope_se": fit.stderr if fit else NAN, "r2": fit.rvalue**2 if fit else NAN})
    return pl.DataFrame(rows, schema={"model": pl.Utf8, "task": pl.Utf8, "n": pl.Int64, "slope": pl.Float64,
                                      "slope_se": pl.Float64, "r2": pl.Float64}).sort("model", "task")


def kl_divergence(p_samples: np.ndarray, q_samples: np.ndarray, bins: int = 20, eps: float = 1e-6) -> float:
    """KL(P || Q) in nats between two samples, over shared equal-width bins of their pooled range;
    eps keeps empty bins of Q finite."""
    if len(p_samples) == 0 or len(q_samples) == 0:
        return NAN
    low, high = min(p_samples.min(), q_samples.min()), max(p_samples.max(), q_samples.max())
    if high <= low:
        return 0.0
    edges = np.linspace(low, high, bins + 1)
    p = np.histogram(p_samples, edges)[0] + eps
    q = np.histogram(q_samples, edges)[0] + eps
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q)))


def relative_effort(items: pl.DataFrame, models: pl.DataFrame, bins: int = 20) -> pl.DataFrame:
    """Per student x task, each item's cost over the teacher's mean cost on that task: the mean
    (about the inflation over the teacher), its spread, and KL(teacher || student) of the log
    relative-effort distributions (0 when the student allocates like the teacher, even if it is
    uniformly more verbose it is not 0: the distribution shifts)."""
    rows = []
    for m in models.filter(pl.col("role").is_in(["student", "rl"])).iter_rows(named=True):
        teacher = m["teacher"]
        for task in sorted(items.filter(pl.col("model") == m["model"])["task"].unique()):
            t_cost = items.filter((pl.col("model") == teacher) & (pl.col("task") == task))["cost_mean"].to_numpy()
            if t_cost.size == 0 or t_cost.mean() <= 0:
                continue
            s_cost = items.filter((pl.col("model") == m["model"]) & (pl.col("task") == task))["cost_mean"].to_numpy()
            scale = t_cost.mean()
            t_rel, s_rel = np.log1p(t_cost / scale), np.log1p(s_cost / scale)
            rows.append({"student": m["model"], "teacher": teacher, "task": task,
                         "effort_mean": float((s_cost / scale).mean()), "effort_sd": float((s_cost / scale).std()),
                         "teacher_effort_sd": float((t_cost / scale).std()),
                         "kl_teacher_student": kl_divergence(t_rel, s_rel, bins)})
    return pl.DataFrame(rows, schema={"student": pl.Utf8, "teacher": pl.Utf8, "task": pl.Utf8,
                                      "effort_mean": pl.Float64, "effort_sd": pl.Float64,
                                      "teacher_effort_sd": pl.Float64, "kl_teacher_student": pl.Float64})


def inverse_efficiency(alignment: pl.DataFrame, models: pl.DataFrame) -> tuple[pl.DataFrame, Dict[str, float]]:
    """Mean tokens / accuracy per student x task and its base's, and the student-on-base
    regression (the "linear inflation law"). Cells with zero accuracy have no IE and are dropped."""
    from scipy.stats import linregress

    ie = {(r["model"], r["task"]): (r["tokens_mean"] / r["accuracy"] if r["accuracy"] else None)
          for r in alignment.iter_rows(named=True)}
    rows = [{"student": m["model"], "base": m["base"], "task": task, "ie_student": value, "ie_base": ie.get((m["base"], task))}
            for m in models.filter(pl.col("role").is_in(["student", "rl"])).iter_rows(named=True)
            for (model, task), value in ie.items() if model == m["model"]]
    table = pl.DataFrame(rows, schema={"student": pl.Utf8, "base": pl.Utf8, "task": pl.Utf8,
                                       "ie_student": pl.Float64, "ie_base": pl.Float64}).sort("student", "task")
    usable = table.drop_nulls(["ie_student", "ie_base"])
    fit = {"n": usable.height, "slope": NAN, "intercept": NAN, "r2": NAN, "p": NAN,
           "dropped_cells": table.height - usable.height}
    if usable.height >= 3 and usable["ie_base"].n_unique() > 1:
        res = linregress(usable["ie_base"].to_numpy(), usable["ie_student"].to_numpy())
        fit.update(slope=float(res.slope), intercept=float(res.intercept), r2=float(res.rvalue**2), p=float(res.pvalue))
    return table, fit


# ---- 6. difficulty fingerprints ----------------------------------------------------------------

def fingerprints(items: pl.DataFrame) -> pl.DataFrame:
    """Wide frame: one row per (task, item) shared by every model, one column per model of log
    cost z-scored within task, and `human` (human difficulty z-scored within task)."""
    z = lambda col: (pl.col(col) - pl.col(col).mean().over("model", "task")) / pl.col(col).std().over("model", "task")  # noqa: E731
    scored = items.with_columns(z("log_cost").alias("z"))
    wide = scored.pivot(on="model", index=["task", "item_id"], values="z").drop_nulls()
    humans = (items.select("task", "item_id", "human_difficulty").unique(["task", "item_id"])
              .with_columns(human=(pl.col("human_difficulty") - pl.col("human_difficulty").mean().over("task"))
                            / pl.col("human_difficulty").std().over("task")).drop("human_difficulty"))
    return wide.join(humans, on=["task", "item_id"], how="left").sort("task", "item_id")


def rsa(fp: pl.DataFrame) -> pl.DataFrame:
    """Pairwise Pearson r between fingerprints (models and humans) over the items where all are
    defined; a constant fingerprint (a model that spends the same on every item) gives NaN."""
    cols = [c for c in fp.columns if c not in ("task", "item_id")]
    data = fp.select(cols).drop_nulls().fill_nan(None).drop_nulls().to_numpy().astype(float)
    n = len(cols)
    mat = np.full((n, n), NAN)
    for i in range(n):
        for j in range(i, n):
            mat[i, j] = mat[j, i] = 1.0 if i == j else stats.pearson(data[:, i], data[:, j])[0]
    return pl.DataFrame({"fingerprint": cols, **{c: mat[:, k] for k, c in enumerate(cols)}})


# ---- 7. beyond the paper: wrong vs right, correct-only alignment ---------------------------------

def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """(mean a - mean b) / pooled SD."""
    if len(a) < 2 or len(b) < 2:
        return NAN
    pooled = math.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    return float((a.mean() - b.mean()) / pooled) if pooled > 0 else NAN


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
    held fixed (arXiv 2606.26502's design); d = beta / residual SD. Fitted by Frisch-Waugh-Lovell:
    y and `wrong` are demeaned by item and by model alternately until stable (one pass suffices
    for a balanced study), then beta = <w, y> / <w, w>."""
    rows = []
    for (task,), cell in traces.partition_by("task", as_dict=True).items():
        frame = cell.select(
            "model", "item_id", y=(pl.col("cost").cast(pl.Float64) + 1).log(), w=(~pl.col("correct")).cast(pl.Float64))
        n_wrong = int(frame["w"].sum())
        row = {"task": task, "n_traces": frame.height, "n_wrong": n_wrong, "beta": NAN, "se": NAN, "d": NAN}
        if 0 < n_wrong < frame.height:
            for _ in range(max_iter):
                before = frame.select("y", "w")
                for group in ("item_id", "model"):
                    frame = frame.with_columns(pl.col("y", "w") - pl.col("y", "w").mean().over(group))
                change = float((frame.select("y", "w") - before).select(pl.all().abs().max()).max_horizontal()[0])
                if change < tol:
                    break
            y, w = frame["y"].to_numpy(), frame["w"].to_numpy()
            ww = float(w @ w)
            dof = frame.height - 1 - cell["item_id"].n_unique() - cell["model"].n_unique() + 1
            if ww > 1e-12 and dof > 0:
                beta = float(w @ y) / ww
                sigma2 = float(((y - beta * w) ** 2).sum()) / dof
                row.update(beta=beta, se=math.sqrt(sigma2 / ww), d=beta / math.sqrt(sigma2) if sigma2 > 0 else NAN)
        rows.append(row)
    return pl.DataFrame(rows, schema={"task": pl.Utf8, "n_traces": pl.Int64, "n_wrong": pl.Int64, "beta": pl.Float64,
                                      "se": pl.Float64, "d": pl.Float64}).sort("task")


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
