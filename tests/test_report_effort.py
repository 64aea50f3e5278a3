"""The reasoning-effort section (report.json `effort_levels`): simulated effort studies with known
truth (a ceiling: the same r at every level; a dial: r rising with effort; budget levels), the
mixed models, the ceiling-or-dial r and the pairwise Williams' t against R (lme4, cor.test,
psych::r.test), the section in report.json / report.md / effort.png / metrics, and a study
without an effort factor, whose report has none of it."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from cogdistill.report import build, headline_metrics, write_report
from cogdistill.report.effort import effort_design
from cogdistill.report.folder import from_folder
from cogdistill.report.study import MODEL_COLUMNS, StudyError
from cogdistill.report.synthetic import EffortTruth, simulate, simulate_effort
from cogdistill.stats import effort as E
from helpers.report import run_r

CEILING = EffortTruth()  # r 0.5 at every level, cost x1, x2, x4
DIAL = EffortTruth(rho=(0.2, 0.5, 0.8))
BUDGETS = EffortTruth(budgets=(256, 1024), max_tokens=2500)
N_ITEMS = 300


def section(truth: EffortTruth, seed: int = 3, n_items: int = N_ITEMS):
    study = simulate_effort(n_items=n_items, truth=truth, seed=seed)
    report = build(study, n_boot=300)
    return study, report, report.effort_levels["sim-model"]["task-0"]


@pytest.fixture(scope="module")
def ceiling():
    return section(CEILING)


@pytest.fixture(scope="module")
def dial():
    return section(DIAL)


@pytest.fixture(scope="module")
def budgets():
    return section(BUDGETS)


# ---- levels ----------------------------------------------------------------------------------------

def test_levels_sort_by_how_much_reasoning_they_allow():
    given = ["default", "high", "budget=1024", "none", "low", "budget=64", "medium", "xhigh"]
    assert E.order_levels(given) == ["none", "budget=64", "budget=1024", "low", "medium", "high", "xhigh",
                                     "default"]
    assert E.normalise_level(None) == E.normalise_level(" ") == "default"
    assert E.normalise_level("Budget = 064") == "budget=64" and E.budget_of("budget=64") == 64
    assert E.budget_of("low") is None and not E.is_known_level("xhigh")


def test_a_config_groups_its_levels_and_its_default_row():
    rows = [{"model": "m", "role": "teacher"}, {"model": "m:low", "role": "teacher", "effort": "low", "config": "m"},
            {"model": "m:budget-64", "role": "teacher", "effort": "budget=64", "config": "m"},
            {"model": "solo", "role": "base"}, {"model": "x:high", "role": "base", "effort": "high", "config": "x"}]
    models = pl.DataFrame([{**{k: None for k in MODEL_COLUMNS}, **r} for r in rows], schema=MODEL_COLUMNS)
    design = effort_design(models)
    assert design.rows() == [("m:budget-64", "m", "budget=64"), ("m:low", "m", "low"), ("m", "m", "default")]


def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    p = [0.01, 0.04, 0.03, 0.2, 0.005]
    assert np.allclose(E.holm(p), multipletests(p, method="holm")[1], atol=1e-15)
    assert math.isnan(E.holm([0.01, None])[1]) and E.holm([0.01, None])[0] == 0.01


# ---- the simulation's truth comes back ---------------------------------------------------------------

def test_ceiling_same_r_at_every_level_scaled_cost(ceiling):
    _, _, sec = ceiling
    assert [lv["level"] for lv in sec["levels"]] == ["low", "medium", "high"]
    for lv, rho in zip(sec["levels"], CEILING.rho):
        assert lv["n_items"] == N_ITEMS and abs(lv["r"] - rho) < 0.12, lv
        assert lv["r_ci_low"] < rho < lv["r_ci_high"]
    # one study: the omnibus test's size is checked by simulation (tests/test_effort_calibration.py)
    assert sec["bf01"] > 3 and sec["omnibus"]["note"] is None
    cd = sec["ceiling_or_dial"]
    assert cd["verdict"] == E.CEILING and abs(cd["r"]) < 0.15 and cd["bf01"] >= 3
    assert "BF01" in cd["verdict_reason"] and cd["p_holm"] >= cd["p"]
    assert abs(cd["mean_delta"] - CEILING.expected_delta()) < 0.08  # log 4
    assert cd["mean_delta_ci_low"] < CEILING.expected_delta() < cd["mean_delta_ci_high"]
    means = [m["cost_mean"] for m in sec["manipulation"]]
    assert 1.7 < means[1] / means[0] < 2.3 and 3.4 < means[2] / means[0] < 4.6
    assert all(math.isnan(m["budget_hit_fraction"]) for m in sec["manipulation"])  # no budget: no share


def test_dial_r_rises_with_effort(dial):
    _, _, sec = dial
    for lv, rho in zip(sec["levels"], DIAL.rho):
        assert abs(lv["r"] - rho) < 0.12, lv
    assert sec["bf01"] < 1 / 3 and sec["omnibus"]["p"] < 0.001
    slopes = sec["omnibus"]["slopes"]
    assert slopes["low"] < slopes["medium"] < slopes["high"]
    cd = sec["ceiling_or_dial"]
    assert cd["verdict"] == E.DIAL and abs(cd["r"] - DIAL.expected_dial_r()) < 0.12
    assert abs(cd["mean_delta"] - DIAL.expected_delta()) < 0.08
    low_high = next(t for t in sec["pairwise"] if (t["level_a"], t["level_b"]) == ("low", "high"))
    assert low_high["t"] < 0 and low_high["p_holm"] < 0.001 and low_high["p_holm"] >= low_high["p"]


def test_budget_levels_report_how_often_the_budget_cut(budgets):
    study, _, sec = budgets
    assert [lv["level"] for lv in sec["levels"]] == ["budget=256", "budget=1024", "low", "medium", "high"]
    for m in sec["manipulation"]:
        traces = study.traces.filter(pl.col("model") == m["model"])
        assert m["n_traces"] == traces.height == N_ITEMS
        assert m["censored_fraction"] == pytest.approx(traces["censored"].mean())
        if m["level"].startswith("budget="):
            assert m["budget_hit_fraction"] == pytest.approx(traces["budget_hit"].mean())
            assert m["cost_median"] <= E.budget_of(m["level"])
        else:
            assert math.isnan(m["budget_hit_fraction"])
    hits = [m["budget_hit_fraction"] for m in sec["manipulation"][:2]]
    assert hits[0] > hits[1] > 0.1  # the tighter budget cuts more often
    assert sec["manipulation"][-1]["censored_fraction"] > 0  # high runs into max_tokens
    assert sec["ceiling_or_dial"]["low"] == "budget=256" and sec["ceiling_or_dial"]["high"] == "high"


# ---- against R ----------------------------------------------------------------------------------------

LMER = """
suppressMessages({library(lme4); library(jsonlite)})
d <- read.csv(commandArgs(TRUE)[1], colClasses = c(item_id = "character", level = "character"))
z <- function(v) as.numeric(scale(v))
d$z_cost <- ave(d$log_cost, d$level, FUN = z)
d$z_rt <- ave(d$human_difficulty, d$level, FUN = z)
d$level <- factor(d$level, levels = unique(d$level))
ctl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10))
m1 <- lmer(z_cost ~ level * z_rt + (1 | item_id), data = d, REML = FALSE, control = ctl)
b <- fixef(m1); k <- nlevels(d$level)
slopes <- c(b["z_rt"], b["z_rt"] + b[paste0("level", levels(d$level)[-1], ":z_rt")])
vc <- as.data.frame(VarCorr(m1))
cat(toJSON(list(ll1 = as.numeric(logLik(m1)), slopes = unname(slopes), var_item = vc$vcov[1],
  var_residual = sigma(m1)^2), digits = NA, auto_unbox = TRUE), "\\n")
"""


def _level_rows(study, report) -> pl.DataFrame:
    levels = effort_design(study.models).select("model", "level")
    return report.items.join(levels, on="model").select("item_id", "level", "log_cost", "human_difficulty")


@pytest.mark.parametrize("truth", [CEILING, DIAL], ids=["ceiling", "dial"])
def test_level_slopes_match_lme4(truth, tmp_path, ceiling, dial):
    """The mixed model that describes the per-level slopes (not the test) is lme4's ML fit."""
    study, report, sec = ceiling if truth is CEILING else dial
    order = pl.DataFrame({"level": sec["omnibus"]["levels"], "_k": range(len(sec["omnibus"]["levels"]))})
    rows = _level_rows(study, report).join(order, on="level").sort("_k", "item_id").drop("_k")
    ref = run_r(LMER, tmp_path, rows, "lme4", "jsonlite")
    om = sec["omnibus"]
    assert om["converged"] and om["loglik"] == pytest.approx(ref["ll1"], rel=1e-8)
    assert list(om["slopes"].values()) == pytest.approx(ref["slopes"], rel=1e-5)
    assert om["var_item"] == pytest.approx(ref["var_item"], rel=1e-4, abs=1e-8)
    assert om["var_residual"] == pytest.approx(ref["var_residual"], rel=1e-5)


def test_omnibus_is_steigers_pooled_z_for_two_levels(ceiling, dial):
    """With two levels the omnibus chi2 is Steiger's (1980) Z2* squared, written here from the paper's
    formula (eq. 14, pooled r-bar) rather than from the module's general k form."""
    for _, report, sec in (ceiling, dial):
        for test in sec["pairwise"]:
            n, r12, r13, r23 = test["n"], test["r_a"], test["r_b"], test["r_ab"]
            rbar = (r12 + r13) / 2
            s = (r23 * (1 - 2 * rbar**2) - 0.5 * rbar**2 * (1 - 2 * rbar**2 - r23**2)) / (1 - rbar**2) ** 2
            z = (math.atanh(r12) - math.atanh(r13)) * math.sqrt(n - 3) / math.sqrt(2 - 2 * s)
            pair = report.items.filter(pl.col("task") == "task-0")
            levels = effort_design(report.study.models).filter(pl.col("level").is_in([test["level_a"], test["level_b"]]))
            rows = pair.join(levels.select("model", "level"), on="model").select(
                "item_id", "level", "log_cost", "human_difficulty")
            om = E.level_interaction(rows, [test["level_a"], test["level_b"]])
            assert om["chi2"] == pytest.approx(z * z, rel=1e-9)
            assert om["bf01"] == pytest.approx(math.exp((math.log(n) - z * z) / 2), rel=1e-9)


COR_TEST = """
suppressMessages(library(jsonlite))
d <- read.csv(commandArgs(TRUE)[1])
ct <- cor.test(d$delta, d$human_difficulty)
cat(toJSON(list(r = unname(ct$estimate), p = ct$p.value, n = nrow(d)), digits = NA, auto_unbox = TRUE), "\\n")
"""


@pytest.mark.parametrize("truth", [CEILING, DIAL], ids=["ceiling", "dial"])
def test_ceiling_or_dial_matches_cor_test(truth, tmp_path, ceiling, dial):
    study, report, sec = ceiling if truth is CEILING else dial
    wide = _level_rows(study, report).pivot(on="level", index=["item_id", "human_difficulty"], values="log_cost")
    ref = run_r(COR_TEST, tmp_path, wide.select("human_difficulty", delta=pl.col("high") - pl.col("low")),
                "jsonlite")
    cd = sec["ceiling_or_dial"]
    assert cd["n_items"] == ref["n"]
    assert cd["r"] == pytest.approx(ref["r"], rel=1e-10) and cd["p"] == pytest.approx(ref["p"], rel=1e-6)


R_TEST = """
suppressMessages({library(psych); library(jsonlite)})
d <- read.csv(commandArgs(TRUE)[1])
out <- lapply(seq_len(nrow(d)), function(i) { x <- r.test(d$n[i], d$r_a[i], d$r_b[i], d$r_ab[i]); c(x$t, x$p) })
cat(toJSON(list(t = sapply(out, `[`, 1), p = sapply(out, `[`, 2)), digits = NA), "\\n")
"""


def test_pairwise_williams_matches_psych_r_test(tmp_path, ceiling, dial):
    tests = [t for _, _, sec in (ceiling, dial) for t in sec["pairwise"]]
    frame = pl.DataFrame([{k: t[k] for k in ("n", "r_a", "r_b", "r_ab")} for t in tests])
    ref = run_r(R_TEST, tmp_path, frame, "psych", "jsonlite")
    assert [t["t"] for t in tests] == pytest.approx(ref["t"], rel=1e-7)
    assert [t["p"] for t in tests] == pytest.approx(ref["p"], rel=1e-5, abs=1e-12)


# ---- the report's files ------------------------------------------------------------------------------

def test_report_files_hold_the_section(tmp_path):
    study = simulate_effort(n_items=60, truth=BUDGETS, seed=5)
    report, files = write_report(study, tmp_path / "out", n_boot=100)
    assert (tmp_path / "out" / "figures" / "effort.png") in files
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    sec = data["effort_levels"]["sim-model"]["task-0"]
    assert set(sec) >= {"levels", "pairwise", "omnibus", "bf01", "manipulation", "ceiling_or_dial"}
    assert len(sec["pairwise"]) == 10 and "relative_effort" in data  # the other analysis is untouched
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Reasoning effort: r and cost per effort level" in md and "budget=256" in md
    metrics = headline_metrics(report)
    assert metrics["report/effort/sim-model/task-0/bf01"] == pytest.approx(sec["bf01"])
    assert metrics["report/effort/sim-model/task-0/dial_r"] == pytest.approx(sec["ceiling_or_dial"]["r"])
    # the study folder carries the factor: read back, the same section
    again = from_folder(tmp_path / "out" / "study")
    assert again.models.sort("model")["effort"].to_list() == study.models.sort("model")["effort"].to_list()
    assert again.traces["budget_hit"].null_count() == study.traces["budget_hit"].null_count()
    assert set(again.traces["cost_source"].unique()) == {"counted"}
    rebuilt = build(again, n_boot=100).to_json()["effort_levels"]["sim-model"]["task-0"]
    assert rebuilt["bf01"] == pytest.approx(sec["bf01"]) and rebuilt["manipulation"] == sec["manipulation"]


def test_a_study_without_effort_levels_has_no_section(tmp_path):
    study = simulate(n_models=3, n_tasks=1, n_items=40, seed=2)
    report, files = write_report(study, tmp_path / "out", n_boot=50)
    assert report.effort_levels == {} and "effort_levels" not in report.to_json()
    assert not (tmp_path / "out" / "figures" / "effort.png").exists() and len(files) == 7
    assert "Reasoning effort" not in (tmp_path / "out" / "report.md").read_text()
    assert not any(k.startswith("report/effort/") for k in headline_metrics(report))
    assert "effort_levels" not in report.timings


# ---- edges -------------------------------------------------------------------------------------------

def test_too_few_items_give_reasons_not_numbers():
    _, _, sec = section(DIAL, n_items=4)
    assert math.isnan(sec["bf01"]) and "needs 5" in sec["omnibus"]["note"]
    assert sec["ceiling_or_dial"]["note"] is None or "CI" in sec["ceiling_or_dial"]["note"]
    _, _, sec = section(DIAL, n_items=2)
    assert math.isnan(sec["ceiling_or_dial"]["r"]) and sec["ceiling_or_dial"]["verdict"] is None
    assert all(t["note"] for t in sec["pairwise"])


def test_folder_refuses_a_repeated_level_and_a_bad_budget(tmp_path):
    study = simulate_effort(n_items=20, seed=1)
    folder = study.write(tmp_path / "study")
    models = pl.read_csv(folder / "models.csv")
    models.with_columns(effort=pl.when(pl.col("effort") == "medium").then(pl.lit("LOW")).otherwise("effort")) \
        .write_csv(folder / "models.csv")
    with pytest.raises(StudyError, match="config 'sim-model' at effort 'low' repeats row 1"):
        from_folder(folder)
    models.with_columns(effort=pl.when(pl.col("effort") == "medium").then(pl.lit("budget=lots"))
                        .otherwise("effort")).write_csv(folder / "models.csv")
    with pytest.raises(StudyError, match="effort 'budget=lots' is not a budget"):
        from_folder(folder)
    models.drop("effort", "config").write_csv(folder / "models.csv")  # older folders: no factor, no section
    assert build(from_folder(folder), n_boot=20).effort_levels == {}


def test_mlflow_runs_carry_effort_and_config(tmp_path, monkeypatch):
    from cogdistill.report import study as S

    local = tmp_path / "run"
    (local / "traces").mkdir(parents=True)
    (local / "items").mkdir()
    pl.DataFrame({"task": "t", "item_id": ["1", "2"], "sample_idx": 0, "reasoning_tokens": [10, 20],
                  "correct": True, "censored": False, "budget_hit": [True, None], "cost_source": "server"}) \
        .write_parquet(local / S.rf.trace_file("t"))
    pl.DataFrame({"item_id": ["1", "2"], "human_difficulty": [1.0, 2.0]}).write_parquet(local / S.rf.items_file("t"))
    meta = {"model": "m:low", "role": "teacher", "family": None, "teacher": None, "base": None,
            "cost": "reasoning_tokens", "effort": "low", "config": "m"}
    monkeypatch.setattr(S.rf, "read_job_meta", lambda run: dict(meta))
    monkeypatch.setattr(S.rf, "run_tasks", lambda run: ["t"])
    monkeypatch.setattr(S.rf, "check_readable", lambda run: 2)
    run = SimpleNamespace(info=SimpleNamespace(run_id="r1"), data=SimpleNamespace(tags={}, params={}))
    client = SimpleNamespace(download_artifacts=lambda run_id, path, dst: str(local))
    traces, _, row, _ = S._read_run(client, run, tmp_path)
    assert (row["effort"], row["config"], row["run_id"]) == ("low", "m", "r1")
    assert traces["budget_hit"].to_list() == [True, None] and traces["cost_source"].to_list() == ["server"] * 2
    models = pl.DataFrame([row], schema=MODEL_COLUMNS)
    assert models.row(0, named=True)["config"] == "m"
    del meta["effort"], meta["config"]  # a run logged before the effort factor
    _, _, row, _ = S._read_run(client, run, tmp_path)
    assert row["effort"] is None and row["config"] is None


def test_a_server_reported_cost_is_marked_in_the_report(tmp_path):
    study = simulate(n_models=2, n_tasks=1, n_items=40, seed=2)
    served = study.models["model"][0]
    traces = study.traces.with_columns(cost_source=pl.when(pl.col("model") == served).then(pl.lit("server"))
                                       .otherwise(pl.lit("counted")))
    study = type(study)(traces, study.humans, study.models, study.source, study.trials)
    report, _ = write_report(study, tmp_path, n_boot=50, figures=False)
    sources = dict(zip(report.alignment["model"], report.alignment["cost_source"]))
    assert sources[served] == "server" and set(sources.values()) == {"server", "counted"}
    assert "cost reported by the server (server)" in (tmp_path / "report.md").read_text()
    cells = json.loads((tmp_path / "report.json").read_text())["alignment"]
    assert {c["model"]: c["cost_source"] for c in cells}[served] == "server"


def test_a_declared_level_without_traces_and_a_fully_censored_level_are_named():
    """Issue 22 (8): a level the models table declares but that has no trace is listed with its reason,
    not dropped; a level whose every trace is censored voids the omnibus test with a note naming it."""
    from dataclasses import replace

    study = simulate_effort(n_items=60, truth=DIAL, seed=5)
    medium = study.models.filter(pl.col("effort") == "medium")["model"][0]
    gone = replace(study, traces=study.traces.filter(pl.col("model") != medium))
    sec = build(gone, n_boot=100).effort_levels["sim-model"]["task-0"]
    assert [m["level"] for m in sec["missing_levels"]] == ["medium"]
    assert medium in sec["missing_levels"][0]["reason"] and "['medium']" in sec["note"]
    assert [lv["level"] for lv in sec["levels"]] == ["low", "high"] and math.isfinite(sec["omnibus"]["p"])

    high = study.models.filter(pl.col("effort") == "high")["model"][0]
    cut = replace(study, traces=study.traces.with_columns(
        censored=pl.when(pl.col("model") == high).then(True).otherwise(pl.col("censored"))))
    sec = build(cut, n_boot=100).effort_levels["sim-model"]["task-0"]
    assert math.isnan(sec["omnibus"]["p"]) and "['high']" in sec["omnibus"]["note"]
    assert "censored" in sec["omnibus"]["note"] or "uncensored" in sec["omnibus"]["note"]


def test_the_verdict_is_decided_on_holm_over_the_report():
    """Two configs: each ceiling-or-dial p is Holm-adjusted over both, and the verdict reads that p."""
    a = simulate_effort(n_items=80, truth=DIAL, seed=6, config="a")
    b = simulate_effort(n_items=80, truth=CEILING, seed=7, config="b")
    both = type(a)(traces=pl.concat([a.traces, b.traces]), humans=a.humans, models=pl.concat([a.models, b.models]),
                   source="two configs")
    report = build(both, n_boot=100)
    cds = [report.effort_levels[c]["task-0"]["ceiling_or_dial"] for c in ("a", "b")]
    assert [cd["p_holm"] for cd in cds] == pytest.approx(E.holm([cd["p"] for cd in cds]))
    for cd in cds:
        assert cd["verdict"] == E.verdict(cd["r"], cd["p_holm"], cd["bf01"])[0]
    assert cds[0]["verdict"] == E.DIAL
    oms = [report.effort_levels[c]["task-0"]["omnibus"] for c in ("a", "b")]
    assert [om["p_holm"] for om in oms] == pytest.approx(E.holm([om["p"] for om in oms]))
