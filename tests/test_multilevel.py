"""cogdistill.report.multilevel against R, computed live: metafor::rma.mv and lme4::lmer(REML = TRUE).

Tolerances: fixed effects, their SEs, role means, contrasts and the REML log-likelihood to 1e-4
relative; variance components and the random-slope correlation to 1e-3 relative, because they sit
on the flat top of the likelihood where each optimiser stops at its own tolerance. lmer runs with
bobyqa and rhoend = 1e-10: with its default (nloptwrap) it stops ~1e-5 short in theta, which moves
SEs by ~3e-5 relative; tightened, lme4 and this module agree to ~1e-7 (metafor: ~1e-8). The
objective itself is checked exactly: our REML criterion at lme4's theta equals lme4's REMLcrit.
"""

from __future__ import annotations

import json
import math
import subprocess
import time

import numpy as np
import polars as pl
import pytest

from cogdistill.report import multilevel as ml
from cogdistill.stats import mixed
from helpers.mixed_studies import simulate_cells, simulate_items
from helpers.r import require_r

RTOL, RTOL_VC = 1e-4, 1e-3


def _rscript(code: str, tmp_path, frame: pl.DataFrame, packages) -> dict:
    """Run R on the frame (as CSV) and return the JSON it prints (require_r: skip, or fail in CI)."""
    require_r(*packages)
    csv = tmp_path / "data.csv"
    frame.write_csv(csv)
    script = tmp_path / "ref.R"
    script.write_text(code)
    res = subprocess.run(["Rscript", str(script), str(csv)], capture_output=True, text=True, timeout=120,
                         check=False)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def _close(ours: float, ref: float, rtol: float, atol: float = 1e-8) -> bool:
    return math.isclose(ours, ref, rel_tol=rtol, abs_tol=atol)


# ---- (a) role contrasts vs metafor ----------------------------------------------------------

R_META = r"""
suppressMessages(library(metafor))
d <- read.csv(commandArgs(TRUE)[1], stringsAsFactors = FALSE)
d$yi <- atanh(pmin(pmax(d$r, -0.999999), 0.999999)); d$vi <- 1 / (d$n - 3)
d$role <- factor(d$role, levels = sort(unique(d$role)))
fit <- rma.mv(yi, vi, mods = ~ 0 + role, random = list(~ 1 | model, ~ 1 | task), data = d, method = "REML",
              test = "t")
b <- coef(fit); V <- vcov(fit); roles <- levels(d$role)
con <- function(a, bb) { cc <- setNames(rep(0, length(b)), names(b)); cc[paste0("role", a)] <- 1
  cc[paste0("role", bb)] <- -1; est <- sum(cc * b); se <- sqrt(drop(t(cc) %*% V %*% cc))
  list(estimate = est, se = se, p = 2 * pt(-abs(est / se), fit$ddf[1])) }
out <- list(roles = roles, b = unname(b), se = unname(fit$se), ci_lb = unname(fit$ci.lb), ci_ub = unname(fit$ci.ub),
            df = unname(fit$ddf[1]), pval = unname(fit$pval),
            sigma2 = fit$sigma2, loglik = as.numeric(logLik(fit)),
            student_vs_base = con("student", "base"), rl_vs_teacher = con("rl", "teacher"))
cat(jsonlite::toJSON(out, digits = NA, auto_unbox = TRUE), "\n")
"""


@pytest.mark.parametrize("seed, s_task", [(3, 0.2), (1, 0.0)], ids=["interior", "sigma2_task_at_0"])
def test_role_contrasts_match_metafor(tmp_path, seed, s_task):
    cells = simulate_cells(seed=seed, s_task=s_task)
    ref = _rscript(R_META, tmp_path, cells, ["metafor", "jsonlite"])
    res = ml.role_contrasts(cells)
    assert res["converged"] and res["note"] is None
    assert (res["n_cells"], res["n_models"], res["n_tasks"]) == (114, 19, 6)
    for j, role in enumerate(ref["roles"]):
        got = res["roles"][role]
        assert _close(got["estimate"], ref["b"][j], RTOL), role
        assert _close(got["se"], ref["se"][j], RTOL), role
        assert _close(got["ci_low"], ref["ci_lb"][j], RTOL) and _close(got["ci_high"], ref["ci_ub"][j], RTOL)
        assert _close(got["r"], math.tanh(ref["b"][j]), RTOL)
        assert got["df"] == ref["df"] and _close(got["p"], ref["pval"][j], RTOL, atol=1e-12)
    assert _close(res["sigma2_model"], ref["sigma2"][0], RTOL_VC, atol=1e-7)
    assert _close(res["sigma2_task"], ref["sigma2"][1], RTOL_VC, atol=1e-7)
    assert _close(res["loglik"], ref["loglik"], RTOL)
    for name in ("student_vs_base", "rl_vs_teacher"):
        for key in ("estimate", "se", "p"):
            assert _close(res["contrasts"][name][key], ref[name][key], RTOL, atol=1e-10), (name, key)
    tvs, svt = res["contrasts"]["teacher_vs_student"], res["contrasts"]["student_vs_teacher"]
    assert tvs["estimate"] == pytest.approx(-svt["estimate"]) and tvs["se"] == pytest.approx(svt["se"])
    json.dumps(res)  # JSON-able


def test_role_contrasts_recover_lower_students():
    cells = simulate_cells(seed=5, models={"base": 5, "student": 5, "teacher": 3},
                           mu={"base": 0.6, "student": 0.25, "teacher": 0.7})
    res = ml.role_contrasts(cells)
    c = res["contrasts"]["student_vs_base"]
    assert c["estimate"] < 0 and c["ci_high"] < 0 and c["p"] < 0.05
    assert c["estimate"] == pytest.approx(-0.35, abs=0.2)
    assert c["r_diff"] < 0 and c["note"] is None
    # no rl models: their contrasts are undefined and say why
    assert math.isnan(res["contrasts"]["rl_vs_base"]["estimate"])
    assert "rl" in res["contrasts"]["rl_vs_base"]["note"]


def _assert_undefined(res):
    assert math.isnan(res["contrasts"]["student_vs_base"]["estimate"])
    assert res["contrasts"]["student_vs_base"]["note"]
    json.dumps(res)


def test_role_contrasts_degenerate_inputs_never_raise():
    cells = simulate_cells(seed=1)
    # one role only: its mean is estimated, every contrast is NaN with a note
    one = ml.role_contrasts(cells.filter(pl.col("role") == "student"))
    assert math.isfinite(one["roles"]["student"]["estimate"]) and list(one["roles"]) == ["student"]
    _assert_undefined(one)
    # two cells
    two = ml.role_contrasts(cells.filter(pl.col("role").is_in(["student", "base"])).head(2))
    _assert_undefined(two)
    assert "cell" in two["note"] and math.isnan(two["sigma2_model"])
    # all r undefined
    nan = ml.role_contrasts(cells.with_columns(r=pl.lit(None, pl.Float64)))
    _assert_undefined(nan)
    assert nan["n_cells"] == 0 and nan["n_cells_dropped"] == cells.height
    assert nan["dropped_reasons"] == {"r_undefined": cells.height}
    # empty frame
    _assert_undefined(ml.role_contrasts(pl.DataFrame()))
    # n < 4 and NaN r are dropped and counted
    mixed = cells.with_columns(n=pl.when(pl.int_range(pl.len()) < 3).then(3).otherwise(pl.col("n")),
                               r=pl.when(pl.int_range(pl.len()) == 5).then(float("nan")).otherwise(pl.col("r")))
    res = ml.role_contrasts(mixed)
    assert res["dropped_reasons"] == {"r_undefined": 1, "n_below_4": 3} and res["n_cells"] == cells.height - 4
    # one task: the task variance component is dropped (NaN, with a note), the fit goes on
    one_task = ml.role_contrasts(cells.filter(pl.col("task") == "task-0"))
    assert math.isnan(one_task["sigma2_task"]) and "one task" in one_task["note"]
    assert math.isfinite(one_task["contrasts"]["student_vs_base"]["estimate"])
    # a task that only one model has is no problem for crossed effects
    extra = pl.DataFrame({"model": ["base-0"], "task": ["task-x"], "role": ["base"], "r": [0.3], "n": [50]})
    res = ml.role_contrasts(pl.concat([cells, extra], how="vertical_relaxed"))
    assert res["n_tasks"] == 7 and res["converged"] and math.isfinite(res["sigma2_task"])
    # a task with a single model's cell, and one model only
    lone = pl.DataFrame({"model": ["m"] * 3, "task": ["a", "b", "c"], "role": ["student"] * 3,
                         "r": [0.2, 0.4, 0.3], "n": [30, 40, 50]})
    res = ml.role_contrasts(lone)
    assert "one model" in res["note"] and math.isfinite(res["roles"]["student"]["estimate"])
    _assert_undefined(res)
    # identical r everywhere, r = +-1 (clipped)
    flat = ml.role_contrasts(cells.with_columns(r=pl.lit(1.0)))
    # every role of the cells gets an estimate (checked by name: an empty dict would pass all() vacuously)
    assert sorted(flat["roles"]) == sorted(set(cells["role"]))
    assert all(math.isfinite(v["estimate"]) for v in flat["roles"].values())


# ---- (b) item mixed model vs lme4 -----------------------------------------------------------

R_LMER = r"""
suppressMessages(library(lme4))
d <- read.csv(commandArgs(TRUE)[1], stringsAsFactors = FALSE)
h <- unique(d[, c("task", "item_id", "human_difficulty")])
h$hd_z <- ave(h$human_difficulty, h$task, FUN = function(x) as.numeric(scale(x)))
d <- merge(d, h[, c("task", "item_id", "hd_z")], by = c("task", "item_id"))
d$role <- factor(d$role, levels = c("base", setdiff(sort(unique(d$role)), "base")))
m <- lmer(log_cost ~ hd_z * role + (1 + hd_z | model) + (1 | task:item_id), data = d, REML = TRUE,
          control = lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10)))
vc <- as.data.frame(VarCorr(m))
pick <- function(g, v1, v2 = NA) {
  vc[vc$grp == g & vc$var1 %in% v1 & (if (is.na(v2)) is.na(vc$var2) else vc$var2 %in% v2), ] }
out <- list(names = names(fixef(m)), beta = unname(fixef(m)), se = unname(sqrt(diag(as.matrix(vcov(m))))),
            theta = unname(getME(m, "theta")), reml = REMLcrit(m), singular = isSingular(m),
            var_model_intercept = pick("model", "(Intercept)")$vcov, var_model_slope = pick("model", "hd_z")$vcov,
            corr_model = pick("model", "(Intercept)", "hd_z")$sdcor,
            var_item = pick("task:item_id", "(Intercept)")$vcov,
            var_residual = sigma(m)^2, n_items = unname(ngrps(m)["task:item_id"]))
cat(jsonlite::toJSON(out, digits = NA, auto_unbox = TRUE), "\n")
"""


def _r_name(name: str) -> str:
    """lme4's coefficient names -> ours: rolestudent -> role[student], hd_z:rolerl -> hd_z:role[rl]."""
    head, _, role = name.partition("role")
    return f"{head}role[{role}]" if role else name


@pytest.mark.parametrize("seed, sd_model_slope", [(11, 0.12), (1, 0.0)], ids=["interior", "singular"])
def test_item_mixed_model_matches_lme4(tmp_path, seed, sd_model_slope):
    items = simulate_items(seed=seed, sd_model_slope=sd_model_slope)
    ref = _rscript(R_LMER, tmp_path, items, ["lme4", "jsonlite"])
    res = ml.item_mixed_model(items)
    assert res["converged"] and res["singular"] == ref["singular"] == (sd_model_slope == 0)
    assert (res["note"] is None) == (not res["singular"])
    assert (res["n_rows"], res["n_models"], res["n_items"], res["n_tasks"]) == (480, 8, ref["n_items"], 3)
    assert res["reference_role"] == "base" and res["formula"] == ml.FULL_FORMULA
    assert [_r_name(n) for n in ref["names"]] == list(res["fixed_effects"])
    for name, b, se in zip(ref["names"], ref["beta"], ref["se"]):
        got = res["fixed_effects"][_r_name(name)]
        assert _close(got["estimate"], b, RTOL, atol=1e-7), name
        assert _close(got["se"], se, RTOL), name
    assert _close(res["reml_criterion"], ref["reml"], 1e-8) and res["reml_criterion"] <= ref["reml"] + 1e-6
    for key in ("var_model_intercept", "var_model_slope", "corr_model", "var_item", "var_residual"):
        assert _close(res[key], ref[key], RTOL_VC, atol=1e-6), key
    # the per-role slope is base's slope plus the role's interaction
    fe = res["fixed_effects"]
    assert res["role_slopes"]["student"]["estimate"] == pytest.approx(
        fe["hd_z"]["estimate"] + fe["hd_z:role[student]"]["estimate"])
    assert res["slope_differences"]["student"] == fe["hd_z:role[student]"]
    json.dumps(res)


def test_item_criterion_equals_lme4_at_its_theta(tmp_path):
    """The objective itself, free of either optimiser: d_R(theta_lme4) == REMLcrit."""
    items = simulate_items(seed=4)
    ref = _rscript(R_LMER, tmp_path, items, ["lme4", "jsonlite"])
    df, *_ = ml._item_rows(items, [])
    roles = sorted(set(df["role"].to_list()))
    _, X = ml._fixed_design(df, roles, "base")
    terms, _ = ml._random_terms(df, [])
    assert [t.name for t in terms] == ["item", "model"]  # lme4's order: most levels first
    crit = mixed.ProfiledDeviance(df["log_cost"].to_numpy(), X, terms)
    assert crit(np.array(ref["theta"]))["deviance"] == pytest.approx(ref["reml"], rel=1e-10)


def test_item_mixed_model_degenerate_inputs_never_raise():
    items = simulate_items(n_items=8)
    # one role only: no interactions, the slope of that role is still estimated
    one = ml.item_mixed_model(items.filter(pl.col("role") == "student"))
    assert one["reference_role"] == "student" and list(one["fixed_effects"]) == ["(Intercept)", "hd_z"]
    assert math.isfinite(one["role_slopes"]["student"]["estimate"])
    # one model: the model term and the item term (one row per item) are dropped, with notes
    lone = ml.item_mixed_model(items.filter(pl.col("model") == "base-0"))
    assert "(1 + hd_z | model) dropped" in lone["note"] and "(1 | task:item) dropped" in lone["note"]
    assert lone["formula"] == "log_cost ~ hd_z * role" and math.isnan(lone["var_item"])
    assert math.isfinite(lone["fixed_effects"]["hd_z"]["estimate"])
    # no human data at all, an empty frame, too few rows
    none = ml.item_mixed_model(items.with_columns(human_difficulty=pl.lit(None, pl.Float64)))
    assert none["n_rows"] == 0 and "no rows" in none["note"]
    assert math.isnan(none["fixed_effects"]["hd_z"]["estimate"])
    assert "no rows" in ml.item_mixed_model(pl.DataFrame())["note"]
    tiny = ml.item_mixed_model(items.filter(pl.col("task") == "t0").head(2))
    assert math.isnan(tiny["fixed_effects"]["hd_z"]["estimate"]) and tiny["note"]
    # a task with one item: its hd_z is undefined, so the task is dropped and said so
    extra = items.head(4).with_columns(task=pl.lit("solo"), item_id=pl.lit("x"))
    res = ml.item_mixed_model(pl.concat([items, extra]))
    assert "solo" in res["note"] and res["n_tasks"] == 3
    # no variance between models at all: a singular fit is reported, not raised
    flat = items.with_columns(log_cost=pl.col("human_difficulty") / 1000 + pl.col("item_id").str.slice(1)
                              .cast(pl.Float64) / 50 + pl.Series(np.random.default_rng(0).normal(0, 0.1, items.height)))
    res = ml.item_mixed_model(flat)
    assert res["singular"] and "singular" in res["note"] and math.isfinite(res["fixed_effects"]["hd_z"]["se"])
    for r in (one, lone, none, tiny, res):
        json.dumps(r)


def test_item_mixed_model_scale_and_subsample():
    """20 models x 3,200 items = 64,000 rows fits in seconds; max_rows subsamples whole items."""
    items = simulate_items(seed=2, per_role=5, n_tasks=4, n_items=800)
    assert items.height == 64_000
    t0 = time.perf_counter()
    res = ml.item_mixed_model(items)
    elapsed = time.perf_counter() - t0
    assert res["converged"] and res["n_rows"] == 64_000 and res["n_items"] == 3_200
    assert elapsed < 30, elapsed  # a few seconds on 2 cores; generous against a loaded machine
    for role, slope in {"base": 0.4, "teacher": 0.55, "student": 0.15, "rl": 0.3}.items():
        assert res["role_slopes"][role]["estimate"] == pytest.approx(slope, abs=0.15), role
    assert res["var_residual"] == pytest.approx(0.16, rel=0.05)
    sub = ml.item_mixed_model(items, max_rows=10_000, seed=1)
    assert sub["subsampled"] and sub["n_rows"] <= 10_000 and sub["n_rows"] % 20 == 0
    assert "subsampled" in sub["note"] and sub["n_rows_input"] == 64_000
