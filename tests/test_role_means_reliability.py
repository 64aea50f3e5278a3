"""Issue 22 (4, 6, 7): the role means' random-effects interval (against metafor on many studies,
tau^2 = 0 among them, and its coverage in a simulation), the cost reliability with an odd number of
samples (against a simulation with a known reliability), and the JSD permutation p with its Monte
Carlo SE (against the exact permutation p of a small study, enumerated)."""

import itertools
import json
import math
import subprocess

import numpy as np
import polars as pl
import pytest
from scipy.optimize import brentq

from cogdistill.report import analyses as A
from cogdistill.stats import divergence as JS
from cogdistill.stats import correlation as stats
from cogdistill.stats.random_effects import random_effects_fisher_mean
from cogdistill.stats.reliability import model_split_half, sample_halves, spearman_brown, unequal_halves
from helpers.r import require_r


# --- 4. role means: the random-effects interval -------------------------------------------------

def studies(seed: int, count: int) -> list[dict]:
    """Roles of 2..24 cells, true tau of 0 (a quarter of them), .05, .15 and .3 on the z scale."""
    rng = np.random.default_rng(seed)
    out = []
    for s in range(count):
        k = int(rng.integers(2, 25))
        tau = (0.0, 0.05, 0.15, 0.3)[s % 4]
        n = rng.integers(5, 400, k)
        z = 0.4 + rng.normal(0, tau, k) + rng.normal(0, 1 / np.sqrt(n - 3))
        out.append({"r": np.tanh(z).round(6).tolist(), "n": n.tolist()})
    return out


@pytest.mark.slow  # R (metafor) for 120 studies: about 8 s on 2 shared cores
def test_random_effects_mean_matches_metafor_reml_on_many_studies(tmp_path):
    require_r("metafor", "jsonlite")
    cases = studies(0, 120)
    path = tmp_path / "studies.json"
    path.write_text(json.dumps(cases))
    code = (
        "suppressMessages({library(metafor); library(jsonlite)}); "
        f"for (x in fromJSON('{path}', simplifyVector = FALSE)) {{ r <- unlist(x$r); n <- unlist(x$n); "
        "m <- rma(yi = atanh(r), vi = 1 / (n - 3), method = 'REML', "
        "control = list(threshold = 1e-13, maxiter = 10000, stepadj = 0.5)); "
        "cat(sprintf('%.15g', c(m$tau2, tanh(m$b), tanh(m$ci.lb), tanh(m$ci.ub), m$I2, m$se)), '\\n') }")
    proc = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    ref = np.array([[float(v) for v in line.split()] for line in proc.stdout.strip().splitlines()])
    ours = np.array([[d["tau2"], d["r"], d["ci_low"], d["ci_high"], d["i2"], d["se"]]
                     for d in (random_effects_fisher_mean(c["r"], c["n"]) for c in cases)])
    assert ours.shape == ref.shape == (120, 6)
    assert np.abs(ours[:, [0, 1, 2, 3, 5]] - ref[:, [0, 1, 2, 3, 5]]).max() < 1e-8
    assert np.abs(ours[:, 4] - ref[:, 4]).max() < 1e-6  # I^2 in percent
    at_zero = ref[:, 0] < 1e-10
    assert at_zero.sum() >= 20 and (ours[at_zero, 0] < 1e-10).all()  # the boundary: tau^2 = 0
    assert (ref[~at_zero, 0] > 1e-4).sum() >= 40  # and clearly heterogeneous ones


def test_without_heterogeneity_the_random_effects_interval_is_the_fixed_effect_one():
    rs, ns = [0.41, 0.40, 0.42, 0.39, 0.41], [60, 80, 120, 40, 200]  # far less spread than 1/(n-3) allows
    re, fe = random_effects_fisher_mean(rs, ns), stats.weighted_fisher_mean(rs, ns)
    assert re["tau2"] == 0.0 and re["i2"] == 0.0
    assert (re["r"], re["ci_low"], re["ci_high"]) == pytest.approx((fe["r"], fe["ci_low"], fe["ci_high"]), abs=1e-12)
    one = random_effects_fisher_mean([0.4, float("nan")], [60, 50])  # tau^2 of one cell is not identifiable
    assert one["n_cells"] == 1 and math.isnan(one["r"]) and math.isnan(one["ci_low"])


def test_random_effects_interval_covers_the_role_mean_where_the_fixed_effect_one_does_not():
    """12 cells per role, true between-cell SD .2 on the z scale: the fixed-effect 95% CI (the one
    the figure drew) covers the true mean in well under 95% of simulated roles, the REML one in
    about 95% (a Wald interval with 12 cells: a little under)."""
    rng = np.random.default_rng(3)
    mu, tau, sims = 0.35, 0.2, 400
    hits = {"fixed": 0, "random": 0}
    for _ in range(sims):
        n = rng.integers(20, 300, 12)
        rs = np.tanh(mu + rng.normal(0, tau, 12) + rng.normal(0, 1 / np.sqrt(n - 3)))
        for name, res in (("fixed", stats.weighted_fisher_mean(rs, n)), ("random", random_effects_fisher_mean(rs, n))):
            hits[name] += res["ci_low"] <= math.tanh(mu) <= res["ci_high"]
    assert hits["fixed"] / sims < 0.6, hits
    assert 0.85 <= hits["random"] / sims <= 0.98, hits


def test_role_means_carry_both_intervals_labelled():
    rng = np.random.default_rng(5)
    models = [f"m{i}" for i in range(6)]
    tasks = ["a", "b", "c"]
    model_effect = dict(zip(models, rng.normal(0, 0.25, 6)))  # heterogeneity between models
    rows = [{"model": m, "task": t, "n_items": 60, "r": math.tanh(0.4 + model_effect[m] + rng.normal(0, 0.13))}
            for m in models for t in tasks]
    models_frame = pl.DataFrame({"model": models, "role": ["teacher"] * 6})
    (row,) = A.role_means(pl.DataFrame(rows), models_frame).iter_rows(named=True)
    rs, ns = [r["r"] for r in rows], [60] * len(rows)
    fe, re = stats.weighted_fisher_mean(rs, ns), random_effects_fisher_mean(rs, ns)
    assert (row["r_weighted"], row["weighted_ci_low"], row["weighted_ci_high"]) == (fe["r"], fe["ci_low"], fe["ci_high"])
    assert (row["r_random"], row["random_ci_low"], row["random_ci_high"], row["tau2"]) == (
        re["r"], re["ci_low"], re["ci_high"], re["tau2"])
    assert row["tau2"] > 0 and row["random_ci_high"] - row["random_ci_low"] > row["weighted_ci_high"] - row["weighted_ci_low"]


# --- 6. cost reliability with an odd number of samples ---------------------------------------------

def rel(m: float, rho: float) -> float:
    return m * rho / (1 + (m - 1) * rho)


@pytest.mark.parametrize("a,b", [(1, 2), (2, 3), (1, 1), (3, 3), (1.5, 2.4)])
@pytest.mark.parametrize("rho", [0.05, 0.3, 0.8])
def test_unequal_halves_inverts_the_classical_model(a, b, rho):
    """Two parts of a and b units correlate sqrt(rel_a rel_b): from that r, the reliability of
    a + b units comes back; with equal halves it is Spearman-Brown's 2r / (1 + r)."""
    r = math.sqrt(rel(a, rho) * rel(b, rho))
    assert unequal_halves(r, a, b, a + b) == pytest.approx(rel(a + b, rho), rel=1e-12)
    if a == b:
        assert unequal_halves(r, a, b, 2 * a) == pytest.approx(spearman_brown(r), rel=1e-12)
    # a negative r stays negative (no reliability), and matches Spearman-Brown for equal halves
    assert unequal_halves(-0.3, a, b, a + b) < 0
    assert unequal_halves(-0.3, 2, 2, 4) == pytest.approx(spearman_brown(-0.3), rel=1e-12)


def simulate_costs(rng, n_items, k, mu=5000.0, s_item=300.0, s_noise=458.0) -> pl.DataFrame:
    means = rng.normal(mu, s_item, n_items)
    cost = np.rint(means[:, None] + rng.normal(0, s_noise, (n_items, k)))
    return pl.DataFrame({"item_id": np.repeat([f"i{j:03d}" for j in range(n_items)], k),
                         "sample_idx": np.tile(np.arange(k), n_items), "cost": cost.ravel()})


def test_three_samples_recover_the_true_reliability_where_spearman_brown_fell_short():
    """cost = mu_i + e, one sample's reliability 300^2 / (300^2 + 458^2) = .30; the truth is what the
    reliability of the report's cost, log(1 + mean of 3 samples), is by definition: the correlation of
    two independent replicates of it (200,000 items). 1 vs 2 samples corrected with factor 2 (the old
    estimator) falls short by about .015; corrected for the real lengths, it does not."""
    rng = np.random.default_rng(0)
    means = rng.normal(5000.0, 300.0, 200_000)
    twice = [np.log1p(np.rint(means[:, None] + rng.normal(0, 458.0, (means.size, 3))).mean(axis=1)) for _ in range(2)]
    truth = float(np.corrcoef(*twice)[0, 1])  # ~.563; SB closed form .5625
    new, old = [], []
    for i in range(150):
        out = model_split_half(simulate_costs(rng, 400, 3), n_splits=50, seed=i)
        new.append(out["reliability"])
        old.append(spearman_brown(out["r_half"]))  # factor 2 on the same splits
    new, old = np.array(new), np.array(old)
    se = new.std(ddof=1) / math.sqrt(new.size)
    assert abs(new.mean() - truth) < 3 * se + 0.004, (new.mean(), truth, se)
    assert (new - old).mean() > 0.01 and old.mean() < truth - 0.008, (old.mean(), truth)


def test_uneven_sample_counts_use_the_harmonic_lengths():
    """Items with 2..5 samples: split 0's r, corrected by solving r^2 = rel_a rel_b for one
    sample's reliability (brentq, not the closed form) at the harmonic mean lengths."""
    rng = np.random.default_rng(2)
    costs = simulate_costs(rng, 30, 5).filter(
        pl.col("sample_idx") < 2 + pl.col("item_id").str.slice(1).cast(pl.Int64) % 4)
    k = costs.group_by("item_id").len().sort("item_id")["len"].to_numpy()
    out = model_split_half(costs, n_splits=1, seed=9)
    in_a = sample_halves(k, 1, seed=9)[0]
    assert (in_a.sum(axis=1) == k // 2).all()
    harmonic = [len(k) / np.sum(1.0 / x) for x in (k // 2, k - k // 2, k)]
    r = out["r_half"]
    rho = brentq(lambda p: math.sqrt(rel(harmonic[0], p) * rel(harmonic[1], p)) - r, 1e-9, 1 - 1e-9)
    assert out["reliability"] == pytest.approx(rel(harmonic[2], rho), rel=1e-9)


# --- 7. the JSD permutation p and its Monte Carlo SE -------------------------------------------

def small_pair():
    rng = np.random.default_rng(17)  # a pair whose exact permutation p is near .05
    return np.log1p(rng.lognormal(0, 0.5, 14)), np.log1p(rng.lognormal(0.35, 0.5, 14))


def exact_permutation_p(x, y) -> float:
    """All 2^14 swap patterns through js_divergence itself (histograms on the full sample's bins)."""
    edges = JS.js_bins(np.concatenate([x, y]))
    observed = JS.js_divergence(x, y, edges)
    null = [JS.js_divergence(np.where(s, y, x), np.where(s, x, y), edges)
            for s in itertools.product([False, True], repeat=x.size)]
    return float(np.mean(np.array(null) >= observed - 1e-12))


def test_permutation_p_converges_to_the_exact_p_with_the_stated_monte_carlo_error():
    x, y = small_pair()
    exact = exact_permutation_p(x, y)
    assert 0.03 < exact < 0.08
    ps = np.array([JS.js_permutation_p(x, y, seed=s) for s in range(120)])
    b = JS.JS_PERMUTATIONS
    assert b >= 2000
    stated = JS.permutation_mc_se(exact, b)
    assert stated == pytest.approx(math.sqrt(exact * (1 - exact) / b))
    assert abs(ps.mean() - exact) < 4 * stated / math.sqrt(ps.size) + 1 / b  # (1 + count) / (1 + B): +1/B at most
    assert 0.75 * stated < ps.std(ddof=1) < 1.3 * stated, (ps.std(ddof=1), stated)
    # 200 permutations (before): about 3x the seed-to-seed spread
    few = np.array([JS.js_permutation_p(x, y, n_perm=200, seed=s) for s in range(120)])
    assert few.std(ddof=1) > 2.3 * ps.std(ddof=1)


def test_the_permutation_null_is_js_divergence_of_the_swapped_samples():
    rng = np.random.default_rng(4)
    x, y = np.log1p(rng.lognormal(0, 0.5, 80)), np.log1p(rng.lognormal(0.1, 0.6, 80))
    edges = JS.js_bins(np.concatenate([x, y]))
    swap = rng.random((25, 80)) < 0.5
    fast = JS._js_swapped(JS._bin_index(x, edges), JS._bin_index(y, edges), len(edges) - 1, swap)
    slow = [JS.js_divergence(np.where(s, y, x), np.where(s, x, y), edges) for s in swap]
    assert fast == pytest.approx(slow, abs=1e-12)
    assert math.isnan(JS.permutation_mc_se(float("nan"), 2000)) and JS.permutation_mc_se(1.0, 2000) == 0.0


# --- the report: report.json, report.md, the figure ---------------------------------------------

@pytest.fixture(scope="module")
def built():
    from cogdistill.report.build import build
    from cogdistill.report.synthetic import simulate

    return build(simulate(6, 2, 40, 3, seed=2), n_boot=50)


def test_report_json_and_markdown_label_both_intervals_and_show_the_mc_error(built):
    from cogdistill.report.render import markdown

    data = json.loads(json.dumps(built.to_json(), default=str))
    for role in data["roles"]:
        assert {"r_weighted", "weighted_ci_low", "r_random", "random_ci_low", "random_ci_high", "tau2", "i2"} <= set(role)
    assert "fixed-effect" in data["methods"]["r_weighted"] and "REML" in data["methods"]["r_random"]
    effort = [e for e in data["relative_effort"] if e["js_p"] is not None]
    assert effort
    for e in effort:
        assert e["js_n_perm"] == JS.JS_PERMUTATIONS
        assert e["js_p_mc_se"] == pytest.approx(math.sqrt(e["js_p"] * (1 - e["js_p"]) / e["js_n_perm"]))
    md = markdown(built, {})
    assert "weighted r, fixed-effect" in md and "weighted r, random-effects" in md
    table = md.split("## Relative effort per student x task")[1].split("\n## ")[0]
    assert "| MC SE of p |" in table and f"{JS.JS_PERMUTATIONS:,} random permutations" in table
    first = next(line for line in table.splitlines() if line.startswith(f"| {effort[0]['student']} "))
    assert f"{effort[0]['js_p_mc_se']:.4f}" in first


def test_the_role_figure_draws_the_random_effects_interval(built, tmp_path, monkeypatch):
    import matplotlib.axes

    from cogdistill.report import figures

    drawn = []
    real = matplotlib.axes.Axes.errorbar

    def spy(self, x, y, *args, **kwargs):
        drawn.append((kwargs.get("fmt"), y, kwargs.get("yerr"), kwargs.get("label")))
        return real(self, x, y, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", spy)
    figures.r_by_role(built, tmp_path / "r_by_role.png")
    diamonds = [d for d in drawn if d[0] == "D"]
    roles = [r for r in built.roles.iter_rows(named=True) if r["n_cells"] > 0]
    assert len(diamonds) == len(roles)
    for (_, y, yerr, _), row in zip(diamonds, roles):
        assert y == row["r_random"]
        assert (y - yerr[0][0], y + yerr[1][0]) == pytest.approx((row["random_ci_low"], row["random_ci_high"]))
    assert "random-effects" in diamonds[0][3]
