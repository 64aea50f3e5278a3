"""Many generated studies for the mixed-model fits, and R (metafor, lme4 + lmerTest) run on all of them
in one process: the reference of tests/test_mixed_reference.py and benchmarks/mixed_reference.py.

The studies span interior optima and boundary ones (a variance component whose truth is 0 or small
enough that REML puts it at 0): the case where an optimiser on a standard-deviation scale stops
early and still says it converged.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import polars as pl

# ---- generators ---------------------------------------------------------------------------------

META_MU = {"teacher": 0.75, "base": 0.5, "student": 0.35, "rl": 0.45, "control": 0.1}
ITEM_SLOPES = {"base": 0.4, "teacher": 0.55, "student": 0.15, "rl": 0.3, "control": 0.0}


def simulate_cells(seed=3, models=None, n_tasks=6, mu=None, s_model=0.15, s_task=0.2, n_range=(20, 300)) -> pl.DataFrame:
    """Per-cell r from a known multilevel structure: role means in z, model and task effects, n items."""
    rng = np.random.default_rng(seed)
    models = models or {"teacher": 4, "base": 4, "student": 6, "rl": 3, "control": 2}
    mu = mu or META_MU
    u_task = rng.normal(0, s_task, n_tasks)
    rows = []
    for role, k in models.items():
        for m in range(k):
            u_m = rng.normal(0, s_model)
            for t in range(n_tasks):
                n = int(rng.integers(*n_range))
                z = mu[role] + u_m + u_task[t] + rng.normal(0, 1 / math.sqrt(n - 3))
                rows.append({"model": f"{role}-{m}", "task": f"task-{t}", "role": role, "r": math.tanh(z), "n": n})
    return pl.DataFrame(rows)


def simulate_items(seed=11, per_role=2, roles=("base", "teacher", "student", "rl"), n_tasks=3, n_items=20,
                   slopes=None, sd_item=0.3, sd_model=0.5, sd_model_slope=0.12, sd_res=0.4) -> pl.DataFrame:
    """log cost = model intercept + (role slope + model slope) * hd_z + item effect + noise."""
    rng = np.random.default_rng(seed)
    slopes = slopes or ITEM_SLOPES
    items = [(f"t{t}", f"i{i}", float(rng.normal(900 + 300 * t, 250)), float(rng.normal(0, sd_item)))
             for t in range(n_tasks) for i in range(n_items)]
    rows = []
    for role in roles:
        for m in range(per_role):
            a, b = rng.normal(0, sd_model), rng.normal(0, sd_model_slope)
            for task, item, hd, e in items:
                hd_z = (hd - 900 - 300 * int(task[1:])) / 250
                y = 5 + a + (slopes[role] + b) * hd_z + e + rng.normal(0, sd_res)
                rows.append({"model": f"{role}-{m}", "task": task, "item_id": item, "role": role,
                             "log_cost": y, "human_difficulty": hd})
    return pl.DataFrame(rows)


def meta_studies(n: int = 40) -> List[Dict]:
    """n studies of per-cell r with random designs (1-4 models per role, 2-7 tasks, 8-500 items a cell)
    and model and task variances from 0 to large: about one in ten put a component on the boundary
    where an optimiser on the SD scale stops short (the previous fitter did in 30 of the first 300)."""
    out = []
    for k in range(n):
        rng = np.random.default_rng(k)
        models = {role: int(rng.integers(1, 5)) for role in ("teacher", "base", "student")}
        models["student"] = max(models["student"], 2)
        if rng.random() < 0.4:
            models["rl"] = int(rng.integers(1, 3))
        spec = dict(seed=k, models=models, n_tasks=int(rng.integers(2, 8)),
                    s_model=float(rng.choice([0, 0.01, 0.03, 0.1, 0.3])),
                    s_task=float(rng.choice([0, 0.01, 0.03, 0.1, 0.3])),
                    n_range=(int(rng.integers(8, 40)), int(rng.integers(50, 500))))
        out.append({"name": f"meta-{k:02d}", "spec": spec, "cells": simulate_cells(**spec)})
    return out


def item_studies(n: int = 30) -> List[Dict]:
    """n studies of per-item log cost: item, model and model-slope variances from 0 to large."""
    sd_items, sd_slopes, sd_models = (0.0, 0.05, 0.1, 0.3, 0.6), (0.0, 0.03, 0.12), (0.5, 0.05)
    out = []
    for k in range(n):
        rng = np.random.default_rng(2000 + k)
        spec = dict(seed=2000 + k, per_role=int(rng.integers(2, 4)), n_tasks=int(rng.integers(2, 4)),
                    n_items=int(rng.integers(12, 30)), sd_item=sd_items[k % len(sd_items)],
                    sd_model_slope=sd_slopes[(k // len(sd_items)) % len(sd_slopes)],
                    sd_model=sd_models[(k // 15) % len(sd_models)],
                    roles=("base", "teacher", "student") if k % 2 else ("base", "teacher", "student", "rl"))
        out.append({"name": f"item-{k:02d}", "spec": spec, "items": simulate_items(**spec)})
    return out


# ---- R, once for many studies -----------------------------------------------------------------------

R_META_MANY = r"""
suppressMessages({library(metafor); library(jsonlite)})
files <- commandArgs(TRUE)
fit_one <- function(f) {
  d <- read.csv(f, stringsAsFactors = FALSE)
  d$yi <- atanh(pmin(pmax(d$r, -0.999999), 0.999999)); d$vi <- 1 / (d$n - 3)
  d$role <- factor(d$role, levels = sort(unique(d$role)))
  one <- function(ctl) tryCatch(rma.mv(yi, vi, mods = ~ 0 + role, random = list(~ 1 | model, ~ 1 | task),
                                       data = d, method = "REML", test = "t", control = ctl),
                                error = function(e) NULL)
  # tightened where nlminb reaches it, else metafor's defaults; the better log-likelihood wins
  fits <- Filter(Negate(is.null), list(one(list(rel.tol = 1e-12, iter.max = 5000, eval.max = 10000)),
                                       one(list(optimizer = "bobyqa", rhoend = 1e-12)), one(list())))
  fit <- fits[[which.max(sapply(fits, function(x) as.numeric(logLik(x))))]]
  b <- coef(fit); V <- vcov(fit)
  con <- function(a, bb) { cc <- setNames(rep(0, length(b)), names(b)); cc[paste0("role", a)] <- 1
    cc[paste0("role", bb)] <- -1; est <- sum(cc * b); se <- sqrt(drop(t(cc) %*% V %*% cc))
    list(estimate = est, se = se, p = 2 * pt(-abs(est / se), fit$ddf[1])) }
  list(roles = levels(d$role), b = unname(b), se = unname(fit$se), ci_lb = unname(fit$ci.lb),
       ci_ub = unname(fit$ci.ub), pval = unname(fit$pval), df = unname(fit$ddf[1]), sigma2 = fit$sigma2,
       loglik = as.numeric(logLik(fit)), student_vs_base = con("student", "base"),
       student_vs_teacher = con("student", "teacher"))
}
out <- lapply(files, fit_one)
cat(toJSON(out, digits = NA, auto_unbox = TRUE), "\n")
"""

R_LMER_MANY = r"""
suppressMessages({library(lme4); library(lmerTest); library(jsonlite)})
files <- commandArgs(TRUE)
fit_one <- function(f) {
  d <- read.csv(f, stringsAsFactors = FALSE)
  h <- unique(d[, c("task", "item_id", "human_difficulty")])
  h$hd_z <- ave(h$human_difficulty, h$task, FUN = function(x) as.numeric(scale(x)))
  d <- merge(d, h[, c("task", "item_id", "hd_z")], by = c("task", "item_id"))
  d$role <- factor(d$role, levels = c("base", setdiff(sort(unique(d$role)), "base")))
  fits <- lapply(list(lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10, maxfun = 1e5)),
                      lmerControl(optimizer = "nloptwrap", optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14,
                                                                          maxeval = 1e5))),
                 function(ctl) suppressWarnings(suppressMessages(
                   lmerTest::lmer(log_cost ~ hd_z * role + (1 + hd_z | model) + (1 | task:item_id), data = d,
                                  REML = TRUE, control = ctl))))
  crit <- sapply(fits, REMLcrit)
  m <- fits[[which.min(crit)]]  # the better of two tightened optimisers: lme4's optimum
  vc <- as.data.frame(VarCorr(m))
  pick <- function(g, v1, v2 = NA) {
    vc[vc$grp == g & vc$var1 %in% v1 & (if (is.na(v2)) is.na(vc$var2) else vc$var2 %in% v2), ] }
  co <- summary(m, ddf = "Satterthwaite")$coefficients
  roles <- levels(d$role)
  slopes <- lapply(roles, function(r) { L <- setNames(rep(0, nrow(co)), rownames(co)); L["hd_z"] <- 1
    if (r != roles[1]) L[paste0("hd_z:role", r)] <- 1
    ct <- contest1D(m, L, ddf = "Satterthwaite"); list(role = r, estimate = ct$Estimate, se = ct[["Std. Error"]],
                                                       df = ct$df, p = ct[["Pr(>|t|)"]]) })
  list(names = rownames(co), beta = unname(co[, "Estimate"]), se = unname(co[, "Std. Error"]),
       df = unname(co[, "df"]), p = unname(co[, "Pr(>|t|)"]), theta = unname(getME(m, "theta")),
       reml = min(crit), reml_each = crit, singular = isSingular(m),
       var_model_intercept = pick("model", "(Intercept)")$vcov, var_model_slope = pick("model", "hd_z")$vcov,
       var_item = pick("task:item_id", "(Intercept)")$vcov, var_residual = sigma(m)^2, slopes = slopes)
}
out <- lapply(files, fit_one)
cat(toJSON(out, digits = NA, auto_unbox = TRUE), "\n")
"""


def run_r_many(code: str, frames: List[pl.DataFrame], folder: Path, timeout: float = 600) -> List[Dict]:
    """R code over every frame (CSV files as its arguments) in one process; its JSON list back."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for k, frame in enumerate(frames):
        path = folder / f"study-{k:03d}.csv"
        frame.write_csv(path)
        files.append(str(path))
    script = folder / "ref.R"
    script.write_text(code)
    res = subprocess.run(["Rscript", str(script), *files], capture_output=True, text=True, timeout=timeout,
                         check=False)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-4000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def r_name(name: str) -> str:
    """lme4's coefficient names -> ours: rolestudent -> role[student], hd_z:rolerl -> hd_z:role[rl]."""
    head, _, role = name.partition("role")
    return f"{head}role[{role}]" if role else name


def rel_diff(ours: float, ref: float, floor: float = 1e-6) -> float:
    """|ours - ref| relative to |ref|, absolute below `floor` (a variance at 0 has no relative error)."""
    if not (math.isfinite(ours) and math.isfinite(ref)):
        return 0.0 if (math.isnan(ours) and math.isnan(ref)) else math.inf
    return abs(ours - ref) / max(abs(ref), floor)


def meta_differences(res: Dict, ref: Dict) -> Dict[str, float]:
    """Criterion (here: -2 log-likelihood) and the largest relative differences of one meta fit."""
    est = max(rel_diff(res["roles"][role]["estimate"], ref["b"][j]) for j, role in enumerate(ref["roles"]))
    se = max(rel_diff(res["roles"][role]["se"], ref["se"][j]) for j, role in enumerate(ref["roles"]))
    sigma2 = ref["sigma2"] if isinstance(ref["sigma2"], list) else [ref["sigma2"]]
    vc = max(rel_diff(_f(res.get(f"sigma2_{name}")), float(s2), floor=1e-4)
             for name, s2 in zip(("model", "task"), sigma2))
    return {"criterion": -2 * res["loglik"] - (-2 * ref["loglik"]), "estimate": est, "se": se, "variance": vc}


def item_differences(res: Dict, ref: Dict) -> Dict[str, float]:
    est = max(rel_diff(res["fixed_effects"][r_name(n)]["estimate"], b) for n, b in zip(ref["names"], ref["beta"]))
    se = max(rel_diff(res["fixed_effects"][r_name(n)]["se"], s) for n, s in zip(ref["names"], ref["se"]))
    vc = max(rel_diff(_f(res[k]), _f(ref[k]), floor=1e-4)
             for k in ("var_model_intercept", "var_model_slope", "var_item", "var_residual"))
    df = max((rel_diff(res["fixed_effects"][r_name(n)].get("df", math.nan), d)
              for n, d in zip(ref["names"], ref["df"])), default=math.nan)
    return {"criterion": res["reml_criterion"] - ref["reml"], "estimate": est, "se": se, "variance": vc, "df": df}


def _f(x: Optional[float]) -> float:
    return math.nan if x is None else float(x)
