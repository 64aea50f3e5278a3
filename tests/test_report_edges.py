"""Every number the report prints is right or visibly undefined with its reason: the edge cases a
reviewer tries (censored costs, tiny tasks, an all-censored model, uncorrected stars), built by hand
and run through the whole report (build -> report.json and report.md)."""

import json
import math

import numpy as np
import polars as pl
import pytest
from scipy import stats as ss

from cogdistill.report import build
from cogdistill.report.render import markdown
from cogdistill.report.study import MODEL_COLUMNS, Study


def study(costs, rts, *, censored=None, roles=None, links=None, samples=1):
    """costs: {model: {task: [cost per item]}}; rts: {task: [rt per item]}; censored: {(model, task): [item idx]}."""
    censored, roles, links = censored or {}, roles or {}, links or {}
    traces, humans = [], []
    for task, rt in rts.items():
        humans.append(pl.DataFrame({"task": task, "item_id": [f"{task}-{k:02d}" for k in range(len(rt))],
                                    "human_difficulty": [float(x) for x in rt], "measure": "mean_rt"}))
    for model, by_task in costs.items():
        for task, cs in by_task.items():
            cut = set(censored.get((model, task), ()))
            for s in range(samples):
                traces.append(pl.DataFrame({
                    "model": model, "task": task, "item_id": [f"{task}-{k:02d}" for k in range(len(cs))],
                    "sample_idx": s, "cost": [float(c) for c in cs], "correct": True,
                    "censored": [k in cut for k in range(len(cs))]}))
    models = pl.DataFrame([{**{k: None for k in MODEL_COLUMNS}, "model": m, "role": roles.get(m, "control"),
                            **links.get(m, {})} for m in costs], schema=MODEL_COLUMNS)
    return Study(pl.concat(traces), pl.concat(humans), models, source="hand-made")


def cell(report, model, task):
    return report.alignment.filter((pl.col("model") == model) & (pl.col("task") == task)).row(0, named=True)


def test_a_censored_item_leaves_r_under_drop_and_the_report_shows_both_readings():
    rt = [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 9.0]
    cost = [50, 40, 60, 45, 55, 50, 40, 60, 50, 4096]  # item 9: cut at the 4,096-token budget
    s = study({"m": {"t": cost}}, {"t": rt}, censored={("m", "t"): [9]})
    for policy in ("drop", "budget"):
        report = build(s, n_boot=500, censored=policy)
        c = cell(report, "m", "t")
        drop_r = ss.pearsonr(rt[:9], np.log1p(cost[:9])).statistic
        budget_r = ss.pearsonr(rt, np.log1p(cost)).statistic
        assert c["r"] == pytest.approx(drop_r if policy == "drop" else budget_r)
        assert c["r_budget"] == pytest.approx(budget_r)
    report = build(s, n_boot=500)
    c = cell(report, "m", "t")
    assert c["n_items"] == 9 and c["n_items_dropped"] == 1 and c["dropped_items"] == ["t-09"]
    assert budget_r > 0.8 and abs(drop_r) < 0.3 and c["q"] > 0.05  # one censored item alone made "alignment"
    assert c["conclusion_changes_with_censoring"]
    md = markdown(report, {})
    grid_row = [line for line in md.splitlines() if line.startswith("| m | control |")][0]
    assert grid_row.split("|")[3].strip() == f"{drop_r:.2f}†"
    assert "conclusion changes with censoring" in md


def test_a_three_item_task_has_r_but_no_ci_and_no_star():
    s = study({"m": {"tiny": [10, 20, 40], "big": list(range(10, 70, 2))}},
              {"tiny": [1.0, 2.0, 3.0], "big": list(np.linspace(1, 5, 30))})
    report = build(s, n_boot=500)
    c = cell(report, "m", "tiny")
    # r itself is defined (computed here independently); only its CI is not (both ends NaN)
    assert c["r"] == pytest.approx(ss.pearsonr([1.0, 2.0, 3.0], np.log1p([10, 20, 40])).statistic)
    assert math.isfinite(c["r"]) and math.isnan(c["r_ci_low"]) and math.isnan(c["r_ci_high"])
    assert "needs at least 4" in c["ci_note"]
    row = [line for line in markdown(report, {}).splitlines() if line.startswith("| m | control |")][0]
    tiny = row.split("|")[4].strip()  # columns: model, role, big, tiny
    assert not tiny.endswith("*")  # p of a 3-item r is not evidence; q over the cells decides stars


def exact_r_costs(rt, rho, rng):
    """Costs whose log1p has sample correlation exactly rho with rt."""
    z = (np.array(rt) - np.mean(rt)) / np.std(rt)
    e = rng.standard_normal(len(rt))
    e = e - np.polyval(np.polyfit(z, e, 1), z)
    e /= e.std()
    return list(np.expm1(4 + 0.5 * (rho * z + math.sqrt(1 - rho**2) * e)))


def test_stars_follow_bh_q_not_raw_p():
    rng = np.random.default_rng(0)
    rts = {f"t{k:02d}": list(rng.uniform(1, 5, 25)) for k in range(12)}
    # t00: r = .45 over 25 items (p = .024); eleven tasks with r = .05: raw p says "aligned" on t00, q does not
    costs = {"m": {t: exact_r_costs(rt, 0.45 if t == "t00" else 0.05, rng) for t, rt in rts.items()}}
    report = build(study(costs, rts), n_boot=200)
    table = report.alignment
    from statsmodels.stats.multitest import multipletests
    assert table["q"].to_list() == pytest.approx(multipletests(table["p"].to_list(), method="fdr_bh")[1].tolist())
    t00 = cell(report, "m", "t00")
    assert t00["p"] < 0.05 < t00["q"]
    grid = markdown(report, {}).split("## Every cell")[0]
    row = [line for line in grid.splitlines() if line.startswith("| m | control |")][0]
    assert "*" not in row and row.split("|")[3].strip() == "0.45"


def test_an_all_censored_model_leaves_rsa_with_its_reason_and_everyone_elses_rsa_intact():
    rt = list(np.linspace(1, 5, 20))
    up = [int(10 + 5 * x) for x in range(20)]
    s = study({"a": {"t": up}, "b": {"t": up[::-1]}, "gone": {"t": [64] * 20}}, {"t": rt},
              censored={("gone", "t"): list(range(20))})
    report = build(s, n_boot=200)
    assert "gone" in report.fingerprints_dropped and report.rsa_items == 20
    rsa = {r["fingerprint"]: r for r in report.rsa.iter_rows(named=True)}
    assert rsa["a"]["human"] == pytest.approx(ss.pearsonr(rt, np.log1p(up)).statistic, abs=1e-9)
    gone = cell(report, "gone", "t")
    assert math.isnan(gone["r"]) and "every item was censored" in gone["note"] and gone["bf10"] != gone["bf10"]
    doc = json.loads(json.dumps(report.to_json(), default=str))
    assert "gone" in doc["fingerprints"]["dropped"] and doc["fingerprints"]["n_items"] == 20


def test_constant_costs_give_no_r_no_ci_no_bayes_factor_and_say_why():
    s = study({"flat": {"t": [7] * 12}}, {"t": list(np.linspace(1, 4, 12))})
    c = cell(build(s, n_boot=200), "flat", "t")
    assert all(math.isnan(c[k]) for k in ("r", "r_ci_low", "r_ci_high", "p", "bf10", "q"))
    assert "same number of tokens" in c["note"]


def test_the_jsd_of_a_student_whose_teacher_never_ran_is_undefined_not_zero():
    rt = list(np.linspace(1, 5, 10))
    s = study({"S": {"t": list(range(10, 20))}, "T": {"u": list(range(10, 20))}}, {"t": rt, "u": rt},
              roles={"S": "student", "T": "teacher"}, links={"S": {"teacher": "T"}})
    (row,) = build(s, n_boot=100).relative_effort.iter_rows(named=True)
    assert math.isnan(row["js_teacher_student"]) and "needs at least 5" in row["note"] and row["n_items"] == 0


def test_report_json_has_no_nan_and_documents_every_method():
    s = study({"flat": {"t": [7] * 12}, "m": {"t": list(range(12))}}, {"t": list(np.linspace(1, 4, 12))})
    text = json.dumps(build(s, n_boot=100).to_json(), default=str, allow_nan=False)  # raises on NaN
    doc = json.loads(text)
    assert doc["schema_version"] == 2
    for key in ("q", "bf10", "noise_ceiling", "js_teacher_student", "role_contrasts", "item_model", "censored"):
        assert key in doc["methods"]


def test_the_cli_takes_the_censoring_policy_and_refuses_an_unknown_one(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "r"
    proc = subprocess.run([sys.executable, "-m", "cogdistill.report", "--synthetic", "4x2x30x2", "--censored",
                           "budget", "--no-figures", "--bootstrap", "50", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((out / "report.json").read_text())["censored_policy"] == "budget"
    bad = subprocess.run([sys.executable, "-m", "cogdistill.report", "--synthetic", "4x2x30x2", "--censored", "all"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--censored" in bad.stderr and "Traceback" not in bad.stderr
