import math

import numpy as np
import polars as pl
import pytest
from scipy import stats as sps

from cogdistill.stats import correlation as stats


@pytest.fixture
def xy():
    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 0.5, 40)
    y = 0.7 * x + rng.normal(0, 0.4, 40)
    return x, y


def test_pearson_and_spearman_match_scipy(xy):
    x, y = xy
    r, p = stats.pearson(x, y)
    ref = sps.pearsonr(x, y)
    assert r == pytest.approx(ref.statistic, abs=1e-12) and p == pytest.approx(ref.pvalue, rel=1e-9)
    rho, rho_p = stats.spearman(x, y)
    ref = sps.spearmanr(x, y)
    assert rho == pytest.approx(ref.statistic, abs=1e-12) and rho_p == pytest.approx(ref.pvalue, rel=1e-9)


@pytest.mark.parametrize("case", ["random", "n3", "ties", "perfect", "anti", "tiny_spread", "large_offset"])
def test_vectorised_pearson_and_spearman_agree_with_scipy_on_edge_cases(case):
    """pearson/spearman reimplement scipy's arithmetic without its per-call overhead: same numbers."""
    rng = np.random.default_rng(7)
    for _ in range(50):
        n = 3 if case == "n3" else int(rng.integers(4, 300))
        x = rng.normal(size=n)
        y = 0.4 * x + rng.normal(size=n)
        if case == "ties":
            x, y = np.round(x), np.round(2 * y)
        elif case == "perfect":
            y = 3 * x + 1
        elif case == "anti":
            y = -x
        elif case == "tiny_spread":
            y = 1 + 1e-6 * y
        elif case == "large_offset":
            x = x + 1e6
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            continue
        # bit for bit: a cell's r feeds optimisers downstream (role contrasts), which amplify the last bit
        assert stats.pearson(x, y)[0] == sps.pearsonr(x, y).statistic
        assert stats.spearman(x, y)[0] == sps.spearmanr(x, y).statistic
        for ours, theirs in ((stats.pearson, sps.pearsonr), (stats.spearman, sps.spearmanr)):
            (r, p), ref = ours(x, y), theirs(x, y)
            assert r == pytest.approx(ref.statistic, abs=1e-12)
            assert p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-12)


def test_vectorised_correlations_keep_the_nan_cases():
    for x, y in (([1, 2], [3, 4]), ([1, 2, 3], [5, 5, 5]), ([5, 5, 5, 5], [1, 2, 3, 4]),
                 ([1, 2, float("nan")], [1, 2, 3]), ([], [])):
        for f in (stats.pearson, stats.spearman):
            assert all(math.isnan(v) for v in f(x, y))


def test_pearson_undefined_cases_are_nan():
    assert math.isnan(stats.pearson([1, 2], [3, 4])[0])
    assert math.isnan(stats.pearson([1, 2, 3], [5, 5, 5])[0])


def test_bootstrap_ci_matches_a_loop_reference_and_brackets_r(xy):
    x, y = xy
    low, high = stats.bootstrap_r_ci(x, y, n_boot=500, seed=7)
    rng = np.random.default_rng(7)
    idx = rng.integers(0, len(x), size=(500, len(x)))
    ref = [np.corrcoef(x[i], y[i])[0, 1] for i in idx]
    assert low == pytest.approx(np.quantile(ref, 0.025), abs=1e-10)
    assert high == pytest.approx(np.quantile(ref, 0.975), abs=1e-10)
    r = stats.pearson(x, y)[0]
    assert low < r < high
    assert stats.bootstrap_r_ci(x, y, n_boot=500, seed=7) == (low, high)  # seeded: repeatable


def test_fisher_mean_and_plain_mean():
    rs = [0.2, 0.6, math.nan]
    assert stats.plain_mean(rs) == pytest.approx(0.4)
    assert stats.fisher_mean(rs) == pytest.approx(math.tanh((math.atanh(0.2) + math.atanh(0.6)) / 2))
    assert stats.fisher_mean(rs) > stats.plain_mean(rs)  # z-averaging weights the larger r up


def _traces(costs, correct=None, censored=None):
    n = len(costs)
    return pl.DataFrame({
        "item_id": [f"i{k}" for k in range(n)], "total_tokens": costs,
        "correct": correct or [True] * n, "censored": censored or [False] * n,
    })


def test_item_costs_and_alignment_use_log1p_of_the_mean_cost():
    items = pl.DataFrame({"item_id": ["i0", "i1", "i2", "i3"], "human_difficulty": [1.0, 2.0, 3.0, 4.0],
                          "accuracy": [0.9] * 4, "n_trials": [10] * 4})
    traces = pl.concat([_traces([10, 30, 20, 80]), _traces([12, 34, 22, 90], censored=[False, False, False, True])])
    per_item = stats.item_costs(traces, items, "total_tokens", censored="budget")
    assert per_item["cost_mean"].to_list() == [11.0, 32.0, 21.0, 85.0]
    assert per_item["log_cost"].to_list() == pytest.approx(np.log1p([11, 32, 21, 85]).tolist())
    al = stats.alignment("t", per_item, traces, "total_tokens", n_boot=200, censored="budget")
    assert al.r == pytest.approx(sps.pearsonr([1, 2, 3, 4], np.log1p([11, 32, 21, 85])).statistic)
    assert al.censored_traces == 1 and al.censored_items == 1 and al.n_items == 4
    assert al.tokens_mean == pytest.approx(np.mean([10, 30, 20, 80, 12, 34, 22, 90]))


def test_drop_policy_averages_uncensored_samples_and_drops_items_with_none():
    items = pl.DataFrame({"item_id": ["i0", "i1", "i2", "i3", "i4"], "human_difficulty": [1.0, 2.0, 3.0, 4.0, 5.0],
                          "accuracy": [0.9] * 5, "n_trials": [10] * 5})
    traces = pl.concat([_traces([10, 30, 20, 80, 64], censored=[False, False, False, False, True]),
                        _traces([12, 34, 22, 64, 64], censored=[False, False, False, True, True])])
    per_item = stats.item_costs(traces, items, "total_tokens")  # drop is the default
    assert per_item["cost_mean"].to_list() == [11.0, 32.0, 21.0, 80.0, None]
    al = stats.alignment("t", per_item, traces, "total_tokens", n_boot=200)
    assert al.n_items == 4 and al.n_items_dropped == 1 and al.dropped_items == ["i4"]
    assert al.r == pytest.approx(sps.pearsonr([1, 2, 3, 4], np.log1p([11, 32, 21, 80])).statistic)
    # the budget reading rides along as a sensitivity analysis
    assert al.r_budget == pytest.approx(sps.pearsonr([1, 2, 3, 4, 5], np.log1p([11, 32, 21, 72, 64])).statistic)
    assert al.tokens_mean == pytest.approx(np.mean([10, 30, 20, 80, 12, 34, 22]))  # uncensored traces
    assert al.accuracy == 1.0 and al.censored_traces == 3 and al.censored_items == 2


def test_every_item_censored_gives_no_r_and_says_why():
    items = pl.DataFrame({"item_id": ["i0", "i1", "i2", "i3"], "human_difficulty": [1.0, 2.0, 3.0, 4.0],
                          "accuracy": [0.9] * 4, "n_trials": [10] * 4})
    traces = _traces([64, 64, 64, 64], censored=[True] * 4)
    al = stats.alignment("t", stats.item_costs(traces, items, "total_tokens"), traces, "total_tokens")
    assert math.isnan(al.r) and math.isnan(al.r_ci_low) and math.isnan(al.bf10)
    assert "every item was censored" in al.note and al.n_items_dropped == 4


def test_a_nan_or_negative_cost_gives_no_r_and_no_ci():
    items = pl.DataFrame({"item_id": [f"i{k}" for k in range(6)], "human_difficulty": [1.0, 2, 3, 4, 5, 6],
                          "accuracy": [0.9] * 6, "n_trials": [10] * 6})
    for bad in (float("nan"), -5.0):
        traces = _traces([10.0, 20.0, bad, 40.0, 50.0, 70.0])
        al = stats.alignment("t", stats.item_costs(traces, items, "total_tokens"), traces, "total_tokens")
        assert math.isnan(al.r) and math.isnan(al.r_ci_low) and math.isnan(al.r_ci_high)
        assert "NaN or negative cost" in al.note


def test_three_items_give_r_but_no_ci_and_a_near_constant_cost_gives_neither():
    items = pl.DataFrame({"item_id": ["i0", "i1", "i2"], "human_difficulty": [1.0, 2.0, 3.0],
                          "accuracy": [1.0] * 3, "n_trials": [5] * 3})
    traces = _traces([10, 30, 20])
    al = stats.alignment("t", stats.item_costs(traces, items, "total_tokens"), traces, "total_tokens")
    assert math.isfinite(al.r) and math.isnan(al.r_ci_low) and "needs at least 4" in al.ci_note
    # costs equal up to floating-point noise (means of equal samples): no r, no +-1e-16 CI
    near = pl.DataFrame({"item_id": ["i0", "i1", "i2", "i3"], "cost_mean": [10.0, 10.0 + 1e-13, 10.0, 10.0 - 1e-13],
                         "human_difficulty": [1.0, 2.0, 3.0, 4.0], "n_censored": [0] * 4}).with_columns(
        log_cost=(pl.col("cost_mean") + 1).log())
    al = stats.alignment("t", near, _traces([10] * 4), "total_tokens")
    assert math.isnan(al.r) and math.isnan(al.r_ci_low) and "same number of tokens" in al.note


def test_a_bootstrap_mostly_of_constant_resamples_gives_no_ci():
    x = np.array([1.0, 1.0, 1.0, 1.0, 2.0])  # most resamples miss the one different item
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    low, high, why = stats.bootstrap_r_ci_checked(x, y, n_boot=500)
    assert math.isnan(low) and math.isnan(high) and "degenerate" in why


def test_alignment_says_why_r_is_undefined():
    items = pl.DataFrame({"item_id": ["i0", "i1", "i2"], "human_difficulty": [1.0, 2.0, 3.0],
                          "accuracy": [1.0] * 3, "n_trials": [5] * 3})
    traces = _traces([7, 7, 7])
    al = stats.alignment("t", stats.item_costs(traces, items, "total_tokens"), traces, "total_tokens")
    assert math.isnan(al.r) and "same number of tokens" in al.note


def test_cross_task_r_needs_three_tasks():
    def frame(rt, cost):
        return pl.DataFrame({"human_difficulty": rt, "log_cost": cost})
    two = {"a": frame([1.0], [2.0]), "b": frame([2.0], [3.0])}
    assert math.isnan(stats.cross_task_r(two))
    three = {**two, "c": frame([3.0, 5.0], [3.5, 4.5])}
    assert stats.cross_task_r(three) == pytest.approx(sps.pearsonr([1, 2, 4], [2, 3, 4]).statistic)


def test_items_without_human_data_count_for_cost_but_not_for_r():
    items = pl.DataFrame({"item_id": ["i0", "i1", "i2", "i3"], "human_difficulty": [1.0, 2.0, 3.0, None],
                          "accuracy": [1.0, 1.0, 1.0, None], "n_trials": [5, 5, 5, 0]})
    traces = _traces([10, 20, 45, 500])
    al = stats.alignment("t", stats.item_costs(traces, items, "total_tokens"), traces, "total_tokens")
    assert al.r == pytest.approx(sps.pearsonr([1, 2, 3], np.log1p([10, 20, 45])).statistic)
    assert al.tokens_mean == pytest.approx(np.mean([10, 20, 45, 500]))
    assert al.n_items == 3 and al.n_items_total == 4 and al.n_items_no_human == 1  # n = what r used
    nothing = items.with_columns(human_difficulty=pl.lit(None, pl.Float64))
    al = stats.alignment("t", stats.item_costs(traces, nothing, "total_tokens"), traces, "total_tokens")
    assert math.isnan(al.r) and "no human difficulty" in al.note
