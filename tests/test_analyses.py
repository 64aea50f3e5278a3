"""Each analysis of the report against a hand computation or a scipy/numpy reference."""

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats as ss

from cogdistill.report import analyses as A
from cogdistill.stats import dependent as D
from cogdistill.stats import effects as EF
from cogdistill.stats import fisher as F
from cogdistill.stats import divergence as JS
from cogdistill.report.study import MODEL_COLUMNS


def traces_frame(rows):
    return pl.DataFrame(rows, schema={"model": pl.Utf8, "task": pl.Utf8, "item_id": pl.Utf8, "sample_idx": pl.Int64,
                                      "cost": pl.Float64, "correct": pl.Boolean, "censored": pl.Boolean})


def models_frame(rows):
    return pl.DataFrame([{**{k: None for k in MODEL_COLUMNS}, **r} for r in rows], schema=MODEL_COLUMNS)


def humans_frame(task, rts, measure="mean_rt"):
    return pl.DataFrame({"task": task, "item_id": [f"i{k}" for k in range(len(rts))],
                         "human_difficulty": [float(x) for x in rts], "measure": measure})


def study_of(costs_by_model, rts, task="t", correct=None):
    rows = []
    for model, costs in costs_by_model.items():
        for k, c in enumerate(costs):
            ok = True if correct is None else correct[model][k]
            rows.append({"model": model, "task": task, "item_id": f"i{k}", "sample_idx": 0, "cost": float(c),
                         "correct": ok, "censored": False})
    return traces_frame(rows), humans_frame(task, rts)


# ---- dependent correlations ----

def williams_reference(rxy, rvy, rxv, n):
    """The arithmetic of the Williams (1959) SPSS macro by Sam Field (Cohen & Cohen 1983, p. 57)."""
    diffr = rxy - rvy
    det_r = (1 - rxy**2 - rvy**2 - rxv**2) + 2 * rxy * rxv * rvy
    rbar = (rxy + rvy) / 2
    tnum = diffr * math.sqrt((n - 1) * (1 + rxv))
    tden = math.sqrt(2 * ((n - 1) / (n - 3)) * det_r + rbar**2 * (1 - rxv) ** 3)
    t = tnum / tden
    return t, 2 * ss.t.sf(abs(t), n - 3)


@pytest.mark.parametrize("r12,r13,r23,n", [(.50, .32, .65, 50), (.59, .31, .71, 30), (.80, .72, .89, 26),
                                           (-.2, .4, .1, 120)])
def test_williams_t_matches_the_published_macro(r12, r13, r23, n):
    t, p = D.williams_t(r12, r13, r23, n)
    ref_t, ref_p = williams_reference(r12, r13, r23, n)
    assert t == pytest.approx(ref_t, rel=1e-12) and p == pytest.approx(ref_p, rel=1e-9)


def test_williams_and_steiger_agree_at_large_n_and_are_antisymmetric():
    t, _ = D.williams_t(.45, .30, .5, 2000)
    z, _ = D.steiger_z(.45, .30, .5, 2000)
    assert t == pytest.approx(z, rel=0.03)
    assert D.williams_t(.30, .45, .5, 2000)[0] == pytest.approx(-t)
    assert all(math.isnan(v) for v in D.williams_t(.3, .2, .1, 3))  # df = 0


def test_williams_t_holds_its_size_under_the_null():
    """Two model costs equally correlated with RT: about 5% of tests reject at alpha = .05."""
    rng = np.random.default_rng(0)
    n, rejections, sims = 60, 0, 1500
    for _ in range(sims):
        h = rng.standard_normal(n)
        shared = rng.standard_normal(n)
        a = 0.4 * h + 0.5 * shared + rng.standard_normal(n)
        b = 0.4 * h + 0.5 * shared + rng.standard_normal(n)
        r = np.corrcoef([h, a, b])
        rejections += D.williams_t(r[0, 1], r[0, 2], r[1, 2], n)[1] < 0.05
    assert 0.03 < rejections / sims < 0.075


def test_compare_dependent_uses_shared_items_only():
    rts = [1, 2, 3, 4, 5, 6]
    traces, humans = study_of({"a": [10, 20, 25, 40, 60, 70], "b": [5, 9, 7, 12, 11, 15]}, rts)
    items = A.per_item(traces.filter(~((pl.col("model") == "b") & (pl.col("item_id") == "i5"))), humans)
    res = A.compare_dependent(items, "t", "a", "b")
    x = np.array(rts[:5], float)
    la, lb = np.log1p([10, 20, 25, 40, 60]), np.log1p([5, 9, 7, 12, 11])
    assert res["n"] == 5
    assert res["r_a"] == pytest.approx(ss.pearsonr(x, la).statistic)
    assert res["r_b"] == pytest.approx(ss.pearsonr(x, lb).statistic)
    assert res["r_ab"] == pytest.approx(ss.pearsonr(la, lb).statistic)


# ---- means, CIs, paired tests ----

def test_fisher_ci_is_a_t_interval_on_z():
    rs = [0.2, 0.5, 0.35, 0.6]
    z = np.arctanh(rs)
    half = ss.t.ppf(0.975, 3) * z.std(ddof=1) / 2
    low, high = F.fisher_ci(rs + [float("nan")])
    assert (low, high) == pytest.approx((np.tanh(z.mean() - half), np.tanh(z.mean() + half)))
    assert all(math.isnan(v) for v in F.fisher_ci([0.3]))


def test_role_means_pool_cells_of_each_role():
    alignment = pl.DataFrame({"model": ["t1", "t1", "t2", "s1", "s1"], "task": ["a", "b", "a", "a", "b"],
                              "r": [0.6, 0.7, 0.8, 0.1, float("nan")]})
    models = models_frame([{"model": "t1", "role": "teacher"}, {"model": "t2", "role": "teacher"},
                           {"model": "s1", "role": "student"}])
    roles = {r["role"]: r for r in A.role_means(alignment, models).iter_rows(named=True)}
    assert roles["teacher"]["r_mean"] == pytest.approx(0.7) and roles["teacher"]["n_cells"] == 3
    assert roles["teacher"]["n_models"] == 2
    assert roles["teacher"]["r_mean_fisher"] == pytest.approx(np.tanh(np.arctanh([0.6, 0.7, 0.8]).mean()))
    assert roles["student"]["n_cells"] == 1 and math.isnan(roles["student"]["ci_low"])


def test_paired_test_matches_scipy_and_drops_undefined_pairs():
    a = [0.1, 0.3, float("nan"), 0.2, 0.05, 0.4]
    b = [0.3, 0.35, 0.5, 0.45, 0.1, 0.38]
    res = EF.paired_test(a, b)
    ref = ss.ttest_rel([0.1, 0.3, 0.2, 0.05, 0.4], [0.3, 0.35, 0.45, 0.1, 0.38])
    assert res["n_pairs"] == 5 and res["df"] == 4
    assert res["t"] == pytest.approx(ref.statistic) and res["p"] == pytest.approx(ref.pvalue)
    assert res["mean_diff"] == pytest.approx(np.mean([-0.2, -0.05, -0.25, -0.05, 0.02]))
    assert EF.paired_test([], [])["n_pairs"] == 0


def test_family_table_compares_student_with_teacher_and_base_and_tolerates_a_missing_base():
    rng = np.random.default_rng(1)
    rts = rng.uniform(1, 10, 40)
    noise = rng.standard_normal((3, 40))
    costs = {"T": np.exp(2 + 0.3 * rts + 0.3 * noise[0]), "B": np.exp(1 + 0.1 * rts + noise[1]),
             "S": np.exp(3 + 0.02 * rts + noise[2])}
    traces, humans = study_of(costs, rts)
    models = models_frame([{"model": "T", "role": "teacher"}, {"model": "B", "role": "base"},
                           {"model": "S", "role": "student", "teacher": "T", "base": "B", "family": "f"},
                           {"model": "S2", "role": "student", "teacher": "T", "base": "missing"}])
    items = A.per_item(traces, humans)
    fam = A.family_table(items, models)
    (row,) = fam.iter_rows(named=True)  # S2 has no traces: no row; S's base is present
    r = {m: ss.pearsonr(rts, np.log1p(c)).statistic for m, c in costs.items()}
    assert row["r_student"] == pytest.approx(r["S"]) and row["r_teacher"] == pytest.approx(r["T"])
    assert row["delta_base"] == pytest.approx(r["S"] - r["B"])
    rab = ss.pearsonr(np.log1p(costs["S"]), np.log1p(costs["T"])).statistic
    assert row["t_vs_teacher"] == pytest.approx(D.williams_t(r["S"], r["T"], rab, 40)[0])
    assert row["p_vs_teacher"] < 0.01


# ---- cargo cult ----

def test_inflation_ratios_and_geometric_mean():
    traces, humans = study_of({"S": [20, 40, 60], "B": [10, 20, 30], "T": [40, 40, 40]}, [1, 2, 3])
    models = models_frame([{"model": "S", "role": "student", "teacher": "T", "base": "B"},
                           {"model": "B", "role": "base"}, {"model": "T", "role": "teacher"}])
    (row,) = A.inflation(A.per_item(traces, humans), models).iter_rows(named=True)
    assert row["vs_base"] == pytest.approx(2.0) and row["vs_teacher"] == pytest.approx(1.0)
    assert EF.geometric_mean([2.0, 8.0, None, float("nan")]) == pytest.approx(4.0)


def test_elasticity_recovers_a_power_law_and_skips_error_rates():
    rts = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    traces, humans = study_of({"m": 3 * rts**1.5 - 1}, rts)  # log(1 + cost) = log 3 + 1.5 log RT
    items = A.per_item(traces, humans)
    (row,) = A.elasticity(items).iter_rows(named=True)
    assert row["slope"] == pytest.approx(1.5) and row["r2"] == pytest.approx(1.0)
    assert A.elasticity(items.with_columns(measure=pl.lit("error_rate"))).height == 0


def test_null_inflation_and_elasticity_say_why():
    traces, humans = study_of({"S": [20, 40, 60], "B": [10, 20, 30], "F": [5, 5, 5]}, [1, 2, 3])
    models = models_frame([{"model": "S", "role": "student", "base": "B"}, {"model": "B", "role": "base"},
                           {"model": "F", "role": "student", "base": "ghost", "teacher": None}])
    items = A.per_item(traces, humans)
    rows = {r["student"]: r for r in A.inflation(items, models).iter_rows(named=True)}
    assert rows["S"]["vs_base"] == pytest.approx(2.0) and rows["S"]["vs_teacher"] is None
    assert rows["S"]["note"] == "vs_teacher: no teacher linked in the models table"
    assert rows["F"]["vs_base"] is None and "'ghost' has no item" in rows["F"]["note"]
    el = {r["model"]: r for r in A.elasticity(items).iter_rows(named=True)}
    assert el["S"]["note"] is None and math.isfinite(el["S"]["slope"])
    assert math.isnan(el["F"]["slope"]) and el["F"]["note"] == "the cost is constant over the items"


def test_js_divergence_matches_scipy_and_needs_no_smoothing_constant():
    from scipy.spatial.distance import jensenshannon

    p = np.array([0.0, 0.0, 1.0, 1.0])  # two bins over [0, 1]: P = (.5, .5)
    q = np.array([0.0, 1.0, 1.0, 1.0])  # Q = (.25, .75)
    edges = np.array([0.0, 0.5, 1.0])
    ref = jensenshannon([0.5, 0.5], [0.25, 0.75], base=2) ** 2  # scipy returns the distance (sqrt of JSD)
    assert JS.js_divergence(p, q, edges) == pytest.approx(ref)
    assert JS.js_divergence(p, p) == pytest.approx(0.0)
    assert JS.js_divergence(np.ones(3), np.ones(3)) == 0.0
    disjoint = JS.js_divergence(np.zeros(10), np.ones(10), np.array([0.0, 0.5, 1.0]))
    assert disjoint == pytest.approx(1.0)  # bounded: an empty bin is no division by zero


def test_vectorised_js_resamples_equal_the_one_at_a_time_estimator():
    rng = np.random.default_rng(5)
    p, q = rng.lognormal(0, 0.5, 40), rng.lognormal(0.3, 0.7, 40)
    edges = JS.js_bins(np.concatenate([p, q]))
    idx = rng.integers(0, 40, size=(25, 40))
    fast = JS._js_rows(JS._bin_index(p, edges)[idx], JS._bin_index(q, edges)[idx], len(edges) - 1)
    assert fast == pytest.approx([JS.js_divergence(p[i], q[i], edges) for i in idx], abs=1e-12)


def test_relative_effort_scales_by_the_teachers_mean_and_bootstraps_js():
    rng = np.random.default_rng(2)
    t = rng.uniform(50, 150, 30)
    traces, humans = study_of({"S": 2 * t, "T": t}, np.arange(30) + 1.0)
    models = models_frame([{"model": "S", "role": "student", "teacher": "T"}, {"model": "T", "role": "teacher"}])
    (row,) = A.relative_effort(A.per_item(traces, humans), models).iter_rows(named=True)
    rel = (2 * t) / t.mean()
    assert row["effort_mean"] == pytest.approx(rel.mean()) and row["effort_sd"] == pytest.approx(rel.std())
    assert row["n_items"] == 30 and row["note"] is None
    assert 0 < row["js_teacher_student"] <= 1 and row["js_ci_low"] <= row["js_ci_high"]
    same = A.relative_effort(A.per_item(*study_of({"S": t, "T": t}, np.arange(30) + 1.0)), models)
    assert same["js_teacher_student"][0] == pytest.approx(0.0)  # allocates exactly like its teacher


def test_relative_effort_says_why_it_is_undefined():
    models = models_frame([{"model": "S", "role": "student", "teacher": "T"}, {"model": "T", "role": "teacher"},
                           {"model": "S2", "role": "student", "teacher": "gone"}])
    traces, humans = study_of({"S": [10, 30, 5, 7, 9, 11], "T": [0, 0, 0, 0, 0, 0], "S2": [1, 2, 3, 4, 5, 6]},
                              [1, 2, 3, 4, 5, 6])
    rows = {r["student"]: r for r in A.relative_effort(A.per_item(traces, humans), models).iter_rows(named=True)}
    assert math.isnan(rows["S"]["js_teacher_student"]) and "mean cost is zero" in rows["S"]["note"]
    assert math.isnan(rows["S2"]["js_teacher_student"]) and "not in this study" in rows["S2"]["note"]
    few, _ = study_of({"S": [10, 30], "T": [10, 10]}, [1, 2])
    (row,) = A.relative_effort(A.per_item(few, humans), models.head(2)).iter_rows(named=True)
    assert math.isnan(row["js_teacher_student"]) and "needs at least 5" in row["note"]


def test_inverse_efficiency_regression_matches_scipy_and_drops_zero_accuracy():
    alignment = pl.DataFrame({
        "model": ["S1", "B1", "S2", "B2", "S3", "B3", "S4", "B4"], "task": ["t"] * 8,
        "tokens_mean": [300.0, 100.0, 500.0, 200.0, 900.0, 350.0, 50.0, 20.0],
        "accuracy": [0.5, 0.5, 0.5, 0.4, 0.6, 0.7, 0.0, 0.5]})
    models = models_frame([{"model": f"S{k}", "role": "student", "base": f"B{k}"} for k in range(1, 5)]
                          + [{"model": f"B{k}", "role": "base"} for k in range(1, 5)])
    table, fit = A.inverse_efficiency(alignment, models)
    x, y = [200.0, 500.0, 500.0], [600.0, 1000.0, 1500.0]
    ref = ss.linregress(x, y)
    assert fit["n"] == 3 and fit["dropped_cells"] == 1
    assert fit["slope"] == pytest.approx(ref.slope) and fit["r2"] == pytest.approx(ref.rvalue**2)


# ---- fingerprints ----

def test_fingerprints_z_score_within_task_and_rsa_recovers_signs():
    rts = [1.0, 2.0, 3.0, 5.0]
    t1, h1 = study_of({"up": [1, 3, 8, 20], "down": [20, 8, 3, 1], "flat": [5, 5, 5, 5]}, rts, task="a")
    t2, h2 = study_of({"up": [2, 4, 9, 30], "down": [30, 9, 4, 2], "flat": [5, 5, 5, 5]}, rts, task="b")
    items = A.per_item(pl.concat([t1, t2]), pl.concat([h1, h2]))
    fp, dropped = A.fingerprints(items)
    assert fp.height == 8 and "flat" not in fp.columns and "constant" in dropped["flat"]
    a_up = np.log1p([1, 3, 8, 20])
    assert fp.filter(pl.col("task") == "a")["up"].to_numpy() == pytest.approx((a_up - a_up.mean()) / a_up.std(ddof=1))
    rsa = A.rsa(fp)
    mat = {row["fingerprint"]: row for row in rsa.iter_rows(named=True)}
    assert mat["up"]["down"] == pytest.approx(-1.0, abs=0.05) and mat["up"]["up"] == 1.0
    assert mat["up"]["human"] > 0.9 and mat["down"]["human"] < -0.9


def test_rsa_leaves_out_a_mostly_censored_model_instead_of_shrinking_everyone():
    rts = list(np.arange(1.0, 21.0))
    up = [k + 1 for k in range(20)]
    traces, humans = study_of({"a": up, "b": up[::-1], "c": up}, rts)
    # c: 15 of its 20 items censored (no complete cost under drop)
    traces = traces.with_columns(censored=(pl.col("model") == "c") & (pl.col("item_id").str.slice(1).cast(pl.Int64) >= 5))
    fp, dropped = A.fingerprints(A.per_item(traces, humans).filter(pl.col("cost_mean").is_not_null()))
    assert set(dropped) == {"c"} and "5 of the 20 items" in dropped["c"]
    assert fp.height == 20 and A.rsa_rows(fp).height == 20


# ---- wrong vs right ----

def test_cohens_d_by_hand():
    a, b = np.array([2.0, 4.0, 6.0]), np.array([1.0, 2.0, 3.0])
    pooled = math.sqrt((2 * 4.0 + 2 * 1.0) / 4)
    assert EF.cohens_d(a, b) == pytest.approx(2.0 / pooled)
    assert math.isnan(EF.cohens_d(a[:1], b))


def test_fixed_effects_premium_matches_a_dummy_regression_on_unbalanced_data():
    rng = np.random.default_rng(3)
    rows = []
    for m, verbosity in (("m1", 3.0), ("m2", 4.0), ("m3", 5.0)):
        for i in range(30):
            for s in range(int(rng.integers(1, 4))):
                wrong = bool(rng.random() < 0.3 + 0.02 * i)
                log_cost = verbosity + 0.05 * i + 0.4 * wrong + 0.2 * rng.standard_normal()
                rows.append({"model": m, "task": "t", "item_id": f"i{i}", "sample_idx": s,
                             "cost": float(np.expm1(log_cost)), "correct": not wrong, "censored": False})
    traces = traces_frame(rows)
    (row,) = A.wrong_vs_right_fixed_effects(traces).iter_rows(named=True)
    # reference: ordinary least squares with explicit item and model dummies
    y = np.log1p(traces["cost"].to_numpy())
    items = traces["item_id"].to_list()
    models = traces["model"].to_list()
    X = np.column_stack([(~traces["correct"]).to_numpy().astype(float)]
                        + [[1.0 * (it == f"i{i}") for it in items] for i in range(30)]
                        + [[1.0 * (m == name) for m in models] for name in ("m2", "m3")])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    dof = len(y) - X.shape[1]
    se = math.sqrt(resid @ resid / dof * np.linalg.inv(X.T @ X)[0, 0])
    assert row["beta"] == pytest.approx(coef[0], abs=1e-6) and row["se"] == pytest.approx(se, rel=1e-4)
    assert 0.3 < row["beta"] < 0.5


def test_wrong_vs_right_raw_and_within_item_d():
    rows = [{"model": "m", "task": "t", "item_id": f"i{i}", "sample_idx": s, "cost": float(c),
             "correct": ok, "censored": False}
            for i, samples in enumerate([[(10, True), (30, False)], [(100, True), (300, False)], [(50, True)]])
            for s, (c, ok) in enumerate(samples)]
    (row,) = A.wrong_vs_right(traces_frame(rows)).iter_rows(named=True)
    lw, lr = np.log1p([30, 300]), np.log1p([10, 100, 50])
    assert row["n_wrong"] == 2 and row["n_right"] == 3 and row["n_mixed_items"] == 2
    assert row["d"] == pytest.approx(EF.cohens_d(lw, lr))
    centred_w = [np.log1p(30) - np.log1p([10, 30]).mean(), np.log1p(300) - np.log1p([100, 300]).mean()]
    centred_r = [np.log1p(10) - np.log1p([10, 30]).mean(), np.log1p(100) - np.log1p([100, 300]).mean()]
    assert row["d_within_item"] == pytest.approx(EF.cohens_d(np.array(centred_w), np.array(centred_r)))


def test_correct_only_alignment_drops_items_never_right():
    rts = [1, 2, 3, 4, 5]
    costs = [10, 20, 40, 80, 5]
    traces, humans = study_of({"m": costs}, rts, correct={"m": [True, True, True, True, False]})
    items = A.per_item(traces, humans)
    alignment = A.alignment_table(items, traces, n_boot=50)
    (row,) = A.correct_only_alignment(traces, humans, alignment).iter_rows(named=True)
    assert row["n_items"] == 5 and row["n_items_correct"] == 4
    assert row["r_correct_only"] == pytest.approx(ss.pearsonr(rts[:4], np.log1p(costs[:4])).statistic)
    assert row["r_all"] == pytest.approx(ss.pearsonr(rts, np.log1p(costs)).statistic)


def test_model_summary_cross_task_uses_rt_tasks_only():
    frames = [study_of({"m": [10 * k, 20 * k, 30 * k, 45 * k]}, [k, k + 1, k + 2, k + 4], task=f"t{k}")
              for k in (1, 2, 3)]
    traces = pl.concat([f[0] for f in frames])
    humans = pl.concat([f[1] for f in frames] + [humans_frame("err", [0.1, 0.2, 0.3, 0.4], "error_rate")])
    traces = pl.concat([traces, study_of({"m": [1, 2, 3, 4]}, [0.1, 0.2, 0.3, 0.4], task="err")[0]])
    items = A.per_item(traces, humans)
    summary = A.model_summary(A.alignment_table(items, traces, n_boot=20), items).row(0, named=True)
    x = [np.mean([k, k + 1, k + 2, k + 4]) for k in (1, 2, 3)]
    y = [np.log1p([10 * k, 20 * k, 30 * k, 45 * k]).mean() for k in (1, 2, 3)]
    assert summary["n_tasks"] == 4
    assert summary["r_cross_task"] == pytest.approx(ss.pearsonr(x, y).statistic)
