"""Role contrasts that respect the study's design: cells share models and tasks, items share models.

Treating model x task cells (or model x item rows) as independent overstates the evidence for a
role difference, because every cell of one model, and every row of one item, moves together.
Two models put those shared sources of variation in explicitly:

(a) `role_contrasts`: a multilevel meta-analysis of the per-cell correlations,

        y_i = atanh(r_i) = mu_role(i) + u_model(i) + u_task(i) + e_i,
        u_model ~ N(0, s2_model), u_task ~ N(0, s2_task), e_i ~ N(0, v_i), v_i = 1/(n_i - 3) known,

    fitted by REML, i.e. metafor's rma.mv(yi, vi, mods = ~ 0 + role, random = list(~ 1 | model,
    ~ 1 | task), method = "REML", test = "t") (Viechtbauer 2010, J. Stat. Softw. 36(3)): t tests on
    k - p degrees of freedom (cells less roles), since a normal z with about ten models overstates
    the evidence.

(b) `item_mixed_model`: a linear mixed model of log cost per model x item,

        log_cost ~ hd_z * role + (1 + hd_z | model) + (1 | task:item),   REML,

    hd_z being human difficulty z-scored within task, by lme4's profiled REML criterion, with
    t tests on Satterthwaite's degrees of freedom (as lmerTest).

Both are fitted by cogdistill.stats.mixed (the profiled criterion, a boundary-aware optimiser that
checks its optimum, Satterthwaite's df); (a) is a mixed model whose residual variance is fixed at 1
after whitening by 1/sqrt(v). This module builds the designs and reads the fits; the fits, Wald tests
and contrasts are cogdistill.stats.multilevel's.

Both are pure functions over polars frames returning plain dicts (JSON-able). A number that
cannot be estimated is NaN and the dict's `note` says why; degenerate input (one role, too few
cells, singular fits) never raises.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl

from cogdistill.stats import mixed
from cogdistill.stats.fisher import fisher_r, fisher_z
from cogdistill.stats.multilevel import (contrast, covariance_correlation, finite_or_nan, lmm_fit_and_terms,
                                         meta_reml, slope_contrasts, wald_test)

NAN = float("nan")

META_METHOD = ("REML, crossed random intercepts for model and task, known sampling variance 1/(n-3), "
               "as metafor::rma.mv(test = \"t\"): t tests and CIs on k - p df")
LMM_METHOD = ("REML, profiled deviance of Bates et al. 2015 as lme4::lmer, optimum checked against nearby "
              "points (stats.mixed); t tests and CIs on Satterthwaite's df, as lmerTest")
FULL_FORMULA = "log_cost ~ hd_z * role + (1 + hd_z | model) + (1 | task:item)"
HD_Z_SD = "sample SD (ddof = 1) of the task's item difficulties, each item once, as R's scale()"

# (name, role a, role b): a - b. rl models are their own role, never pooled with students.
CONTRASTS: tuple[tuple[str, str, str], ...] = (
    ("student_vs_base", "student", "base"),
    ("student_vs_teacher", "student", "teacher"),
    ("teacher_vs_student", "teacher", "student"),
    ("rl_vs_base", "rl", "base"),
    ("rl_vs_teacher", "rl", "teacher"),
)
MIN_CELLS = 3






def _join(notes: Sequence[str]) -> str | None:
    return "; ".join(notes) if notes else None




# ---- (a) role contrasts: multilevel meta-analysis of Fisher-z ------------------------------------

def role_contrasts(cells: pl.DataFrame) -> dict:
    """REML multilevel meta-analysis of per-cell r by role (see the module docstring, model (a))."""
    kept, dropped = _usable_cells(cells)
    roles = sorted(set(kept["role"].to_list()))
    out = _meta_skeleton(kept, roles, dropped)
    if kept.height < MIN_CELLS or kept.height <= len(roles):
        out["note"] = (f"{kept.height} usable cell(s) for {len(roles)} role(s): REML needs at least "
                       f"{MIN_CELLS} cells and more cells than roles")
        return out
    y = fisher_z(kept["r"].to_numpy())
    v = 1.0 / (kept["n"].to_numpy().astype(float) - 3.0)
    X = np.column_stack([(kept["role"] == role).to_numpy().astype(float) for role in roles])
    factors, notes = _meta_components(kept)
    try:
        fit = meta_reml(y, v, X, factors)
    except (np.linalg.LinAlgError, ValueError) as exc:  # scipy's LinAlgError subclasses numpy's
        out["note"] = _join(notes + [f"REML fit failed: {exc}"])
        return out
    for name, s2 in fit["sigma2"].items():
        out[f"sigma2_{name}"] = s2
    out.update(converged=fit["converged"], loglik=fit["loglik"])
    if not fit["converged"]:
        notes.append(f"optimiser did not converge: {fit['message']}")
    for j, role in enumerate(roles):
        out["roles"][role].update(_role_estimate(fit["beta"][j], math.sqrt(fit["cov"][j, j]), fit["df"]))
    for name, a, b in CONTRASTS:
        out["contrasts"][name] = _meta_contrast(fit, roles, a, b)
    _holm_over_contrasts(out["contrasts"])
    out["note"] = _join(notes)
    return out


def _holm_over_contrasts(contrasts: dict) -> None:
    """p_holm: Holm over the distinct role contrasts a reader scans (teacher_vs_student is
    student_vs_teacher reversed: one test, one p)."""
    from cogdistill.stats.effort import holm

    distinct = [name for name, _, _ in CONTRASTS if name != "teacher_vs_student"]
    for name, p in zip(distinct, holm([contrasts[name]["p"] for name in distinct])):
        contrasts[name]["p_holm"] = p
    contrasts["teacher_vs_student"]["p_holm"] = contrasts["student_vs_teacher"]["p_holm"]


def _usable_cells(cells: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
    """Cells with a defined r, n >= 4 and a role; the others counted by reason."""
    need = ["model", "task", "role", "r", "n"]
    if cells.height == 0:
        return pl.DataFrame(schema={"model": pl.String, "task": pl.String, "role": pl.String,
                                    "r": pl.Float64, "n": pl.Int64}), {}
    missing = [c for c in need if c not in cells.columns]
    if missing:
        raise ValueError(f"role_contrasts: cells lack column(s) {missing}; need {need}")
    df = cells.select(pl.col("model").cast(pl.String), pl.col("task").cast(pl.String),
                      pl.col("role").cast(pl.String), pl.col("r").cast(pl.Float64, strict=False),
                      pl.col("n").cast(pl.Int64, strict=False))  # a NaN or fractional n becomes null: dropped
    bad_r = pl.col("r").is_null() | pl.col("r").is_nan()
    bad_n = pl.col("n").is_null() | (pl.col("n") < 4)
    bad_role = pl.col("role").is_null() | pl.col("model").is_null() | pl.col("task").is_null()
    dropped = {
        "r_undefined": int(df.filter(bad_r).height),
        "n_below_4": int(df.filter(~bad_r & bad_n).height),
        "role_model_or_task_missing": int(df.filter(~bad_r & ~bad_n & bad_role).height),
    }
    return df.filter(~bad_r & ~bad_n & ~bad_role), {k: v for k, v in dropped.items() if v}


def _meta_skeleton(kept: pl.DataFrame, roles: list[str], dropped: dict[str, int]) -> dict:
    """Every key of the result, undefined: degenerate input returns this with a note."""
    per_role = {}
    for role in roles:
        sub = kept.filter(pl.col("role") == role)
        per_role[role] = {"n_cells": sub.height, "n_models": sub["model"].n_unique(),
                          **_role_estimate(NAN, NAN)}
    return {
        "roles": per_role,
        "contrasts": {name: _undefined_contrast(f"no fit ({a} vs {b})") for name, a, b in CONTRASTS},
        "sigma2_model": NAN, "sigma2_task": NAN,
        "n_cells": kept.height, "n_models": kept["model"].n_unique(), "n_tasks": kept["task"].n_unique(),
        "n_cells_dropped": sum(dropped.values()), "dropped_reasons": dropped,
        "loglik": NAN, "converged": False, "method": META_METHOD, "note": None,
    }


def _meta_components(kept: pl.DataFrame) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """The random factors the cells can carry, as (name, level codes); the others dropped with a note."""
    factors, notes = [], []
    one_model_per_role = kept.group_by("role").agg(pl.col("model").n_unique())["model"].max() == 1
    for name in ("model", "task"):
        _, codes = np.unique(kept[name].to_numpy(), return_inverse=True)
        if codes.max() < 1:  # metafor fixes a single-level factor's variance at 0
            notes.append(f"one {name} only: sigma2_{name} dropped (not estimable)")
            continue
        if name == "model" and one_model_per_role:
            # the model effects are then the role means themselves: REML is flat in sigma2_model
            notes.append("one model per role: sigma2_model dropped (confounded with the role means)")
            continue
        factors.append((name, codes))
    return factors, notes




def _role_estimate(est: float, se: float, df: float = NAN) -> dict:
    t = wald_test(est, se, df)
    return {"estimate": t["estimate"], "se": t["se"], "z": t["z"], "p": t["p"], "ci_low": t["ci_low"],
            "ci_high": t["ci_high"], "df": t["df"], "r": fisher_r(t["estimate"]), "r_ci_low": fisher_r(t["ci_low"]),
            "r_ci_high": fisher_r(t["ci_high"])}


def _undefined_contrast(note: str) -> dict:
    return {**wald_test(NAN, NAN), "p_holm": NAN, "r_a": NAN, "r_b": NAN, "r_diff": NAN, "note": note}


def _meta_contrast(fit: dict, roles: list[str], a: str, b: str) -> dict:
    """mu_a - mu_b in Fisher z, with the r of each role; a CI only in z (tanh of a difference is no r)."""
    missing = [role for role in (a, b) if role not in roles]
    if missing:
        return _undefined_contrast(f"no usable cells of role(s) {', '.join(missing)}")
    c = np.zeros(len(roles))
    c[roles.index(a)], c[roles.index(b)] = 1.0, -1.0
    est, se = contrast(fit["beta"], fit["cov"], c)
    r_a, r_b = math.tanh(fit["beta"][roles.index(a)]), math.tanh(fit["beta"][roles.index(b)])
    return {**wald_test(est, se, fit["df"]), "r_a": r_a, "r_b": r_b, "r_diff": r_a - r_b, "note": None}


# ---- (b) item-level mixed model --------------------------------------------------------------

def item_mixed_model(items: pl.DataFrame, *, max_rows: int | None = None, seed: int = 0) -> dict:
    """log_cost ~ hd_z * role + (1 + hd_z | model) + (1 | task:item) by REML (module docstring, (b))."""
    return start_item_mixed_model(items, max_rows=max_rows, seed=seed, fit_in=lambda fn, *a: lambda: fn(*a))()


def start_item_mixed_model(items: pl.DataFrame, *, max_rows: int | None = None, seed: int = 0,
                           fit_in=None):
    """item_mixed_model with its REML fit (numpy and scipy only) started by fit_in(fn, *args) -> wait
    (default: parallel.in_background, a forked process); returns a call that gives the model's dict."""
    from cogdistill.report.parallel import in_background

    fit_in = fit_in or in_background
    notes: list[str] = []
    df, n_input, n_no_human = _item_rows(items, notes)
    subsampled = False
    if max_rows is not None and df.height > max_rows:
        df, subsampled = _subsample_items(df, max_rows, seed), True
        notes.append(f"subsampled items (seed {seed}) to {df.height} of {n_input} rows: max_rows={max_rows}")
    roles = sorted(set(df["role"].to_list()))
    ref = "base" if "base" in roles else (roles[0] if roles else None)
    names, X = _fixed_design(df, roles, ref)
    terms, formula = _random_terms(df, notes)
    out = _lmm_skeleton(df, roles, ref, names, n_input, n_no_human, subsampled, formula)
    reason = _lmm_undefined_reason(df, X)
    if reason:
        out["note"] = _join(notes + [reason])
        return lambda: out
    fitting = fit_in(lmm_fit_and_terms, df["log_cost"].to_numpy(), X, terms)

    def finish() -> dict:
        try:
            fit, terms[:] = fitting()  # the fit annotates its terms (in the child: a copy of them)
        except (np.linalg.LinAlgError, ValueError, RuntimeError) as exc:
            out["note"] = _join(notes + [f"REML fit failed: {exc}"])
            return out
        _fill_lmm(out, fit, names, roles, ref, terms, notes)
        out["note"] = _join(notes)
        return out

    return finish


def _item_rows(items: pl.DataFrame, notes: list[str]) -> tuple[pl.DataFrame, int, int]:
    """Rows with cost, role and human difficulty; hd_z = difficulty z-scored within task over its items."""
    need = ["model", "task", "item_id", "role", "log_cost", "human_difficulty"]
    schema = {"model": pl.String, "task": pl.String, "item_id": pl.String, "role": pl.String,
              "log_cost": pl.Float64, "human_difficulty": pl.Float64}
    if items.height == 0:
        return pl.DataFrame(schema={**schema, "hd_z": pl.Float64}), 0, 0
    missing = [c for c in need if c not in items.columns]
    if missing:
        raise ValueError(f"item_mixed_model: items lack column(s) {missing}; need {need}")
    df = items.select([pl.col(c).cast(t, strict=False) for c, t in schema.items()])
    no_human = pl.col("human_difficulty").is_null() | pl.col("human_difficulty").is_nan()
    n_no_human = df.filter(no_human).height
    if n_no_human:
        notes.append(f"{n_no_human} row(s) without human difficulty dropped")
    bad = pl.any_horizontal(pl.col("log_cost").is_null() | ~pl.col("log_cost").is_finite(),
                            *[pl.col(c).is_null() for c in ("model", "task", "item_id", "role")])
    n_bad = df.filter(~no_human & bad).height
    if n_bad:
        notes.append(f"{n_bad} row(s) with missing log_cost, model, task, item or role dropped")
    df = df.filter(~no_human & ~bad)
    # One difficulty per item (its first), so items seen by many models do not weigh more.
    hd = (df.group_by("task", "item_id", maintain_order=True).agg(pl.col("human_difficulty").first())
          .with_columns(((pl.col("human_difficulty") - pl.col("human_difficulty").mean().over("task"))
                         / pl.col("human_difficulty").std(ddof=1).over("task")).alias("hd_z")))
    df = df.drop("human_difficulty").join(hd, on=["task", "item_id"], how="left")
    defined = pl.col("hd_z").is_finite().fill_null(False)  # one item: polars' SD is null, not NaN
    flat = df.filter(~defined)
    if flat.height:
        notes.append(f"task(s) {sorted(set(flat['task'].to_list()))} dropped: fewer than 2 items or "
                     "constant human difficulty, so hd_z is undefined")
        df = df.filter(defined)
    return df.sort("task", "item_id", "model"), items.height, n_no_human


def _subsample_items(df: pl.DataFrame, max_rows: int, seed: int) -> pl.DataFrame:
    """Keep a seeded random subset of items (all their rows), about max_rows rows in all."""
    keys = df.select("task", "item_id").unique(maintain_order=True)
    k = max(1, int(keys.height * max_rows / df.height))
    keep = keys.sample(n=k, seed=seed)
    return df.join(keep, on=["task", "item_id"], how="semi")


def _fixed_design(df: pl.DataFrame, roles: list[str], ref: str | None) -> tuple[list[str], np.ndarray]:
    """Treatment coding with `ref` as reference, in R's column order for hd_z * role."""
    others = [r for r in roles if r != ref]
    hd = df["hd_z"].to_numpy()
    dummies = [(df["role"] == r).to_numpy().astype(float) for r in others]
    names = ["(Intercept)", "hd_z"] + [f"role[{r}]" for r in others] + [f"hd_z:role[{r}]" for r in others]
    X = np.column_stack([np.ones(df.height), hd] + dummies + [hd * d for d in dummies]) if df.height else \
        np.zeros((0, len(names)))
    return names, X


def _random_terms(df: pl.DataFrame, notes: list[str]) -> tuple[list[mixed.Term], str]:
    """The random-effect terms that the data can carry; lme4 refuses a factor with 1 level or 1 row per level."""
    n = df.height
    hd = df["hd_z"].to_numpy()
    candidates = [
        ("model", df["model"], np.column_stack([np.ones(n), hd]), "(1 + hd_z | model)"),
        ("item", df["task"] + "\x1f" + df["item_id"], np.ones((n, 1)), "(1 | task:item)"),
    ]
    one_model_per_role = n > 0 and df.group_by("role").agg(pl.col("model").n_unique())["model"].max() == 1
    terms, parts = [], []
    for name, key, M, text in candidates:
        codes = key.cast(pl.Categorical).to_physical().to_numpy().astype(np.int64) if n else np.zeros(0, int)
        n_levels = int(np.unique(codes).size)
        if name == "model" and n_levels >= 2 and one_model_per_role:
            # each model's intercept and slope are then its role's fixed effects: REML is flat in them
            notes.append(f"{text} dropped: one model per role, so model effects are the role effects")
            continue
        if n_levels < 2 or n_levels >= n:
            notes.append(f"{text} dropped: {n_levels} level(s) for {n} row(s)"
                         + (" (each level has one row, so it is the residual)" if n_levels >= n > 1 else ""))
            continue
        _, codes = np.unique(codes, return_inverse=True)
        terms.append(mixed.Term(name, codes, M, n_levels))
        parts.append(text)
    return mixed.order_terms(terms), " + ".join(["log_cost ~ hd_z * role"] + parts)


def _lmm_undefined_reason(df: pl.DataFrame, X: np.ndarray) -> str | None:
    if df.height == 0:
        return "no rows with cost and human difficulty"
    p = X.shape[1]
    if df.height <= p:
        return f"{df.height} row(s) for {p} fixed effects"
    if np.linalg.matrix_rank(X) < p:
        return "fixed effects not estimable: the design matrix is rank deficient (e.g. a role whose items " \
               "all have the same hd_z)"
    return None


def _lmm_skeleton(df, roles, ref, names, n_input, n_no_human, subsampled, formula) -> dict:
    undefined = wald_test(NAN, NAN)
    others = [r for r in roles if r != ref]
    return {
        "fixed_effects": {name: dict(undefined) for name in names},
        "role_slopes": {role: dict(undefined) for role in roles},
        "slope_differences": {role: dict(undefined) for role in others},
        "reference_role": ref, "roles": roles,
        "var_model_intercept": NAN, "var_model_slope": NAN, "corr_model": NAN, "var_item": NAN,
        "var_residual": NAN, "theta": [], "theta_names": [], "reml_criterion": NAN,
        "n_rows": df.height, "n_rows_input": n_input, "n_rows_no_human": n_no_human,
        "n_models": df["model"].n_unique(), "n_items": df.select("task", "item_id").n_unique() if df.height else 0,
        "n_tasks": df["task"].n_unique(), "subsampled": subsampled,
        "converged": False, "optimiser": None, "singular": False, "formula": formula, "hd_z": HD_Z_SD,
        "method": LMM_METHOD, "note": None,
    }






def _fill_lmm(out: dict, fit: dict, names, roles, ref, terms, notes: list[str]) -> None:
    s2, cov, beta, df = fit["sigma2"], fit["cov"], fit["beta"], fit["df"]
    p = len(names)
    for j, name in enumerate(names):
        out["fixed_effects"][name] = wald_test(beta[j], math.sqrt(cov[j, j]), df[j])
    others = [r for r in roles if r != ref]
    for k, (role, c) in enumerate(zip([ref, *others], slope_contrasts(p))):
        out["role_slopes"][role] = wald_test(*contrast(beta, cov, c), df[p + k])
        if role != ref:
            out["slope_differences"][role] = out["fixed_effects"][f"hd_z:role[{role}]"]
    from cogdistill.stats.effort import holm

    for role, p_adj in zip(others, holm([out["slope_differences"][r]["p"] for r in others])):
        out["slope_differences"][role]["p_holm"] = p_adj  # the family: every role's slope vs the reference's
    theta = np.asarray(fit["theta"], float)
    out.update(var_residual=float(s2), theta=[float(t) for t in theta], reml_criterion=fit["deviance"],
               theta_names=[f"{t.name}[{i},{j}]" for t in terms for i, j in t.tri],
               converged=fit["converged"], optimiser=fit["message"])
    if not fit["converged"]:
        notes.append(f"optimiser did not converge: {fit['message']}")
    for name, S in mixed.term_covariances(fit).items():
        if name == "model":
            corr = covariance_correlation(S)
            out.update(var_model_intercept=float(S[0, 0]), var_model_slope=float(S[1, 1]), corr_model=finite_or_nan(corr))
            if not math.isfinite(corr):
                notes.append("corr_model undefined: a model variance component is estimated at 0")
        else:
            out["var_item"] = float(S[0, 0])
    out["singular"] = mixed.is_singular(fit)
    if out["singular"]:
        notes.append("singular fit: a variance component at 0 or a correlation at +-1 (as lme4's isSingular)")
