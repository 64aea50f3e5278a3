"""The report's evidence statistics against external references: Bayes factors and power against
pingouin, BH q-values against R's p.adjust and statsmodels, the weighted Fisher-z mean against
metafor's fixed-effect model, Williams' power against a simulation."""

import math
import subprocess

import numpy as np
import polars as pl
import pytest

from cogdistill.report import analyses as A
from cogdistill.stats import dependent as D
from cogdistill.stats import correlation as stats
from helpers.r import require_r

def rscript(code: str) -> list[float]:
    require_r("metafor")
    proc = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [float(v) for v in proc.stdout.split()]


@pytest.mark.parametrize("r,n", [(0.3, 30), (-0.45, 12), (0.05, 200), (0.8, 6), (0.0, 50), (0.62, 717)])
def test_bayes_factor_matches_pingouin(r, n):
    pg = pytest.importorskip("pingouin")
    assert stats.bayes_factor_r(r, n) == pytest.approx(pg.bayesfactor_pearson(r, n), rel=1e-6)


def test_bayes_factor_is_undefined_without_r_and_favours_the_null_for_r_near_0():
    assert math.isnan(stats.bayes_factor_r(float("nan"), 30)) and math.isnan(stats.bayes_factor_r(0.3, 2))
    assert stats.bayes_factor_r(0.01, 400) < 1 / 10  # strong evidence for "no alignment"


@pytest.mark.parametrize("n", [5, 10, 30, 60, 717])
def test_detectable_r_matches_pingouin_power_corr(n):
    pg = pytest.importorskip("pingouin")
    assert stats.detectable_r(n) == pytest.approx(pg.power_corr(n=n, power=0.8), abs=1e-7)
    assert stats.power_r(stats.detectable_r(n), n) == pytest.approx(0.8, abs=1e-6)
    assert math.isnan(stats.detectable_r(3))


def test_bh_qvalues_match_r_and_statsmodels():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(4)
    p = np.concatenate([rng.uniform(0, 0.01, 7), rng.uniform(0, 1, 20)]).round(6).tolist()
    with_nan = p[:5] + [float("nan")] + p[5:]
    q = stats.bh_qvalues(with_nan)
    assert math.isnan(q[5])
    ours = q[:5] + q[6:]
    assert ours == pytest.approx(multipletests(p, method="fdr_bh")[1].tolist(), abs=1e-12)
    ref = rscript(f"cat(sprintf('%.17g', p.adjust(c({','.join(map(str, p))}), method='BH')))")
    assert ours == pytest.approx(ref, abs=1e-12)


def test_weighted_fisher_mean_matches_metafor_fixed_effect():
    rs, ns = [0.64, 0.21, 0.45, -0.1, 0.33], [60, 12, 240, 8, 30]
    res = stats.weighted_fisher_mean(rs + [float("nan"), 0.9], ns + [50, 3])  # undefined and n=3 carry no weight
    est, low, high = rscript(
        "suppressMessages(library(metafor)); "
        f"r <- c({','.join(map(str, rs))}); n <- c({','.join(map(str, ns))}); "
        "m <- rma(yi = atanh(r), vi = 1 / (n - 3), method = 'FE'); cat(sprintf('%.17g', tanh(c(m$b, m$ci.lb, m$ci.ub))))")
    assert (res["r"], res["ci_low"], res["ci_high"]) == pytest.approx((est, low, high), abs=1e-6)
    assert res["n_cells"] == 5


def test_williams_power_matches_a_simulation():
    """Trivariate normal with rho(h, a) = .64, rho(h, b) = .34, rho(a, b) = .5: the share of
    Williams' tests that reject at .05 is the power the report states."""
    rng = np.random.default_rng(0)
    n, sims, r_ab = 60, 2000, 0.5
    cov = np.array([[1, 0.64, 0.34], [0.64, 1, r_ab], [0.34, r_ab, 1]])
    draws = rng.multivariate_normal(np.zeros(3), cov, size=(sims, n))
    rejected = 0
    for d in draws:
        r = np.corrcoef(d.T)
        rejected += D.williams_t(r[0, 1], r[0, 2], r[1, 2], n)[1] < 0.05
    assert D.williams_power(n, r_ab) == pytest.approx(rejected / sims, abs=0.04)


def _cells_study(student_rs, base_rs, rl_rs, n=50, seed=0):
    """Traces whose per-item log costs have the given r with RT, per task: student, base, rl."""
    rng = np.random.default_rng(seed)
    rows, humans = [], []
    for t, (rs, rb, rr) in enumerate(zip(student_rs, base_rs, rl_rs)):
        rt = rng.uniform(1, 5, n)
        humans.append(pl.DataFrame({"task": f"t{t}", "item_id": [f"i{k}" for k in range(n)], "human_difficulty": rt,
                                    "measure": "mean_rt"}))
        z = (rt - rt.mean()) / rt.std()
        for model, rho in (("S", rs), ("B", rb), ("R", rr)):
            e = rng.standard_normal(n)
            e = e - np.polyval(np.polyfit(z, e, 1), z)  # orthogonal to z: the sample r is exactly rho
            e /= e.std()
            cost = np.exp(3 + 0.5 * (rho * z + math.sqrt(1 - rho**2) * e))
            rows += [{"model": model, "task": f"t{t}", "item_id": f"i{k}", "sample_idx": 0, "cost": float(c),
                      "correct": True, "censored": False} for k, c in enumerate(cost)]
    return pl.DataFrame(rows), pl.concat(humans)


def test_the_papers_paired_test_pools_distilled_students_only_and_rl_gets_its_own_line():
    from cogdistill.report.study import MODEL_COLUMNS

    traces, humans = _cells_study([0.1, 0.2, 0.15, 0.3], [0.4, 0.45, 0.35, 0.5], [0.6, 0.65, 0.7, 0.55])
    models = pl.DataFrame([{**{k: None for k in MODEL_COLUMNS}, **r} for r in (
        {"model": "S", "role": "student", "base": "B"}, {"model": "B", "role": "base"},
        {"model": "R", "role": "rl", "base": "B"})], schema=MODEL_COLUMNS)
    fam = A.family_table(A.per_item(traces, humans), models)
    tests = A.zoo_paired_tests(fam)
    assert tests["student_vs_base"]["n_pairs"] == 4 and tests["rl_vs_base"]["n_pairs"] == 4
    assert tests["student_vs_base"]["mean_diff"] < 0 < tests["rl_vs_base"]["mean_diff"]
    assert "paper" in tests["student_vs_base"]["label"] and "paper" not in tests["rl_vs_base"]["label"]
    # the Williams' family is BH-adjusted as one family (vs teacher is undefined: no teacher)
    from statsmodels.stats.multitest import multipletests
    assert fam["q_vs_base"].to_list() == pytest.approx(multipletests(fam["p_vs_base"].to_list(), method="fdr_bh")[1])


def test_paired_test_uses_the_students_r_on_the_bases_items():
    """The base lacks half the items of one task: the student's r in the pair is on the shared half."""
    from cogdistill.report.study import MODEL_COLUMNS

    traces, humans = _cells_study([0.1, 0.2], [0.4, 0.45], [0.5, 0.5])
    keep = ~((pl.col("model") == "B") & (pl.col("task") == "t0") & (pl.col("item_id").str.slice(1).cast(pl.Int64) >= 25))
    traces = traces.filter(keep)
    models = pl.DataFrame([{**{k: None for k in MODEL_COLUMNS}, **r} for r in (
        {"model": "S", "role": "student", "base": "B"}, {"model": "B", "role": "base"})], schema=MODEL_COLUMNS)
    items = A.per_item(traces, humans)
    fam = A.family_table(items, models)
    row = fam.filter(pl.col("task") == "t0").row(0, named=True)
    shared = items.filter((pl.col("model") == "S") & (pl.col("task") == "t0")
                          & (pl.col("item_id").str.slice(1).cast(pl.Int64) < 25))
    expected = stats.pearson(shared["human_difficulty"].to_numpy(), shared["log_cost"].to_numpy())[0]
    assert row["n_vs_base"] == 25 and row["r_student_vs_base"] == pytest.approx(expected)
    assert row["r_student"] != pytest.approx(expected)  # the all-items r is shown, but not paired
    test = A.zoo_paired_tests(fam)["student_vs_base"]
    assert test["mean_a"] == pytest.approx(np.mean(fam["r_student_vs_base"].to_list()))
