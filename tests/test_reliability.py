"""Split-half reliability (cogdistill.stats.reliability) and the trial frame it reads (Task.trials).

Statistics are checked against external references (R's cor + psych::alpha, whose standardised
alpha of two halves is the Spearman-Brown value; scipy; polars group-bys), against simulated
studies whose reliability is known in closed form, and on the real multiplication data.
"""

import hashlib
import math
import subprocess
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from omegaconf import OmegaConf
from scipy import stats

from cogdistill.config.schema import CONF_DIR, ConfigError, DifficultyConfig, SourceConfig, TaskConfig
from cogdistill.config.validate import validate
from cogdistill.stats.reliability import (
    NO_PARTICIPANTS,
    ONE_SAMPLE,
    ceiling_note,
    human_split_half,
    model_split_half,
    noise_ceiling,
    normalised_r,
    participant_halves,
    sample_halves,
    spearman_brown,
    unequal_halves,
)
from cogdistill.tasks.load import load_task
from cogdistill.tasks.item_table import TRIAL_SCHEMA, TaskDataError
from helpers.config import compose
from helpers.data import real_mirror
from helpers.r import require_r

KEYS = {"reliability", "median", "sd", "ci_low", "ci_high", "r_half", "n_splits_used", "n_participants",
        "n_items", "note"}
STATS = ("reliability", "median", "sd", "ci_low", "ci_high", "r_half")


def simulate_trials(rng, n_items=50, n_people=40, s2_d=1.0, s2_e=16.0, base=10.0) -> pl.DataFrame:
    """Every participant sees every item once: RT = d_i + e, d_i ~ N(base, s2_d), e ~ N(0, s2_e)."""
    d = base + rng.normal(0, math.sqrt(s2_d), n_items)
    rt = d[None, :] + rng.normal(0, math.sqrt(s2_e), (n_people, n_items))
    people, items = np.meshgrid(np.arange(n_people), np.arange(n_items), indexing="ij")
    return pl.DataFrame({
        "item_id": [f"i{j:03d}" for j in items.ravel()], "participant": [f"p{p:03d}" for p in people.ravel()],
        "rt_s": rt.ravel(), "correct": (rng.random(rt.size) < 0.9).astype(float), "keep": np.ones(rt.size, bool),
    }, schema=TRIAL_SCHEMA)


def assert_undefined(out, note):
    assert set(out) == KEYS and note in out["note"]
    assert all(math.isnan(out[k]) for k in STATS) and out["n_splits_used"] == 0


# --- Spearman-Brown and the split scheme ---------------------------------------------------

def test_spearman_brown_formula():
    # whole from half: 2r / (1 + r); the general prophecy k r / (1 + (k - 1) r)
    assert spearman_brown(0.5) == pytest.approx(2 / 3) and spearman_brown(0.0) == 0.0
    assert spearman_brown(0.5, factor=3) == pytest.approx(0.75)
    assert spearman_brown(0.75, factor=0.5) == pytest.approx(0.6)  # halving a test, the inverse direction
    assert spearman_brown(spearman_brown(0.3), factor=0.5) == pytest.approx(0.3)
    np.testing.assert_allclose(spearman_brown(np.array([0.2, 0.9])), [0.4 / 1.2, 1.8 / 1.9])


def test_participant_halves_are_balanced_random_and_seeded():
    halves = participant_halves(11, 500, seed=3)
    assert halves.shape == (500, 11) and (halves.sum(axis=1) == 5).all()
    assert np.array_equal(halves, participant_halves(11, 500, seed=3))
    assert not np.array_equal(halves, participant_halves(11, 500, seed=4))
    assert 0.35 < halves.mean(axis=0).min() and halves.mean(axis=0).max() < 0.55  # each in A ~ 5/11


# --- one fixed split against external references --------------------------------------------

def fixed_split_reference_python(trials: pl.DataFrame, measure: str, seed: int):
    """Split 0 of participant_halves, everything else with polars group-bys and scipy."""
    people = sorted(trials["participant"].unique().to_list())
    in_a = dict(zip(people, participant_halves(len(people), 1, seed)[0]))
    df = trials.with_columns(half=pl.col("participant").replace_strict(in_a, return_dtype=pl.Boolean))
    if measure == "error_rate":
        agg = (1 - pl.col("correct")).mean()
    else:
        df = df.filter("keep")
        agg = {"mean_rt": pl.col("rt_s").mean(), "median_rt": pl.col("rt_s").median(),
               "mean_log_rt": pl.col("rt_s").log().mean()}[measure]
    wide = df.group_by("item_id", "half").agg(agg.alias("v")).pivot("half", index="item_id", values="v").drop_nulls()
    r = stats.pearsonr(wide["true"], wide["false"]).statistic
    return r, 2 * r / (1 + r)


def r_reference(trials: pl.DataFrame, seed: int, tmp_path: Path):
    """The same split in R: per-half item difficulty with aggregate(), cor(), psych::alpha()."""
    people = sorted(trials["participant"].unique().to_list())
    in_a = dict(zip(people, participant_halves(len(people), 1, seed)[0]))
    trials.with_columns(half=pl.col("participant").replace_strict(in_a, return_dtype=pl.Int8)).write_csv(
        tmp_path / "trials.csv")
    script = tmp_path / "split.R"
    script.write_text(f"""
suppressMessages(library(psych))
d <- read.csv("{tmp_path / 'trials.csv'}", stringsAsFactors = FALSE)
k <- d[d$keep == "true", ]
f <- list(mean_rt = function(x) mean(x), median_rt = function(x) median(x), mean_log_rt = function(x) mean(log(x)))
for (m in names(f)) {{
  a <- aggregate(rt_s ~ item_id + half, data = k, FUN = f[[m]])
  w <- merge(a[a$half == 1, c("item_id", "rt_s")], a[a$half == 0, c("item_id", "rt_s")], by = "item_id")
  r <- cor(w[[2]], w[[3]])
  sb <- alpha(data.frame(w[[2]], w[[3]]), warnings = FALSE)$total$std.alpha
  cat(m, sprintf("%.12f", r), sprintf("%.12f", sb), "\\n")
}}
a <- aggregate(correct ~ item_id + half, data = d, FUN = function(x) 1 - mean(x))
w <- merge(a[a$half == 1, ], a[a$half == 0, ], by = "item_id")
r <- cor(w$correct.x, w$correct.y)
cat("error_rate", sprintf("%.12f", r), sprintf("%.12f", alpha(data.frame(w$correct.x, w$correct.y), warnings = FALSE)$total$std.alpha), "\\n")
""")
    out = subprocess.run(["Rscript", str(script)], capture_output=True, text=True, timeout=120, check=True).stdout
    return {line.split()[0]: (float(line.split()[1]), float(line.split()[2])) for line in out.strip().splitlines()}


def uneven_trials(seed=1) -> pl.DataFrame:
    """Unequal trials per participant and item, wrong trials, trials outside the keep window."""
    rng = np.random.default_rng(seed)
    t = simulate_trials(rng, n_items=12, n_people=15, s2_e=4.0)
    t = pl.concat([t, simulate_trials(rng, n_items=12, n_people=15, s2_e=4.0)])  # two trials per cell
    t = t.filter(pl.Series(rng.random(t.height) > 0.2))  # drop a fifth at random
    return t.with_columns(keep=(pl.col("correct") == 1) & (pl.col("rt_s") < 13))


@pytest.mark.parametrize("measure", ["mean_rt", "median_rt", "mean_log_rt", "error_rate"])
def test_one_split_matches_scipy_and_polars(measure):
    trials = uneven_trials()
    out = human_split_half(trials, measure, n_splits=1, seed=7)
    r, sb = fixed_split_reference_python(trials, measure, seed=7)
    assert out["r_half"] == pytest.approx(r, rel=1e-9) and out["reliability"] == pytest.approx(sb, rel=1e-9)
    assert out["n_splits_used"] == 1 and math.isnan(out["sd"]) and out["n_participants"] == 15


def test_one_split_matches_r_cor_and_psych_alpha(tmp_path):
    require_r("psych")
    trials = uneven_trials(seed=2)
    want = r_reference(trials, seed=11, tmp_path=tmp_path)
    for measure, (r, sb) in want.items():
        out = human_split_half(trials, measure, n_splits=1, seed=11)
        assert out["r_half"] == pytest.approx(r, abs=1e-9), measure
        assert out["reliability"] == pytest.approx(sb, abs=1e-9), measure
        assert sb == pytest.approx(2 * r / (1 + r), abs=1e-9)  # psych's standardised alpha of 2 halves = SB


def test_many_splits_summarise_the_per_split_values():
    trials = uneven_trials(seed=3)
    out = human_split_half(trials, "mean_rt", n_splits=40, seed=5)
    # each split alone (n_splits=1 with the split's seed would differ): recompute all 40 by hand
    people = sorted(trials["participant"].unique().to_list())
    halves = participant_halves(len(people), 40, seed=5)
    values = []
    for row in halves:
        in_a = dict(zip(people, row))
        wide = (trials.filter("keep").with_columns(h=pl.col("participant").replace_strict(in_a, return_dtype=pl.Boolean))
                .group_by("item_id", "h").agg(pl.col("rt_s").mean()).pivot("h", index="item_id", values="rt_s").drop_nulls())
        r = stats.pearsonr(wide["true"], wide["false"]).statistic
        values.append(2 * r / (1 + r))
    assert out["reliability"] == pytest.approx(np.mean(values)) and out["median"] == pytest.approx(np.median(values))
    assert out["sd"] == pytest.approx(np.std(values, ddof=1))
    assert out["ci_low"] == pytest.approx(np.percentile(values, 2.5)) and out["ci_high"] == pytest.approx(np.percentile(values, 97.5))
    assert out["n_splits_used"] == 40 and out["n_items"] == 12


# --- simulated studies with a known reliability ---------------------------------------------

def test_simulated_human_study_recovers_the_true_reliability():
    s2_d, s2_e, n_people = 1.0, 16.0, 40
    rho_half = s2_d / (s2_d + s2_e / (n_people / 2))  # item means over P/2 participants
    truth = 2 * rho_half / (1 + rho_half)  # 0.714
    rng = np.random.default_rng(0)
    estimates = [human_split_half(simulate_trials(rng, 50, n_people, s2_d, s2_e), "mean_rt", n_splits=200,
                                  seed=i)["reliability"] for i in range(20)]
    se = np.std(estimates, ddof=1) / math.sqrt(len(estimates))
    assert abs(np.mean(estimates) - truth) < 3 * se + 0.01, (np.mean(estimates), truth, se)
    # and a more reliable design is estimated as more reliable
    high = human_split_half(simulate_trials(rng, 50, 200, s2_d, s2_e), "mean_rt", n_splits=200)["reliability"]
    assert high > np.mean(estimates) + 0.1


def simulate_costs(rng, n_items=60, k=8, mu=2000.0, s_item=200.0, s_noise=400.0) -> pl.DataFrame:
    means = rng.normal(mu, s_item, n_items)
    cost = np.rint(np.clip(means[:, None] + rng.normal(0, s_noise, (n_items, k)), 1, None))
    return pl.DataFrame({"item_id": np.repeat([f"i{j:03d}" for j in range(n_items)], k),
                         "sample_idx": np.tile(np.arange(k), n_items), "cost": cost.ravel()})


def test_simulated_model_costs_recover_the_true_reliability():
    # cost = mu_i + e: mean over k/2 samples has reliability var(mu) / (var(mu) + var(e) / (k/2));
    # log(1 + mean) is close to linear over 2000 +- 20% (the correlation is unchanged to ~0.1%)
    s_item, s_noise, k = 200.0, 400.0, 8
    rho_half = s_item**2 / (s_item**2 + s_noise**2 / (k / 2))  # 0.5
    truth = 2 * rho_half / (1 + rho_half)  # 0.667
    rng = np.random.default_rng(1)
    estimates = [model_split_half(simulate_costs(rng, 60, k, s_item=s_item, s_noise=s_noise), seed=i)["reliability"]
                 for i in range(20)]
    se = np.std(estimates, ddof=1) / math.sqrt(len(estimates))
    assert abs(np.mean(estimates) - truth) < 3 * se + 0.01, (np.mean(estimates), truth, se)


def test_model_one_split_matches_scipy_and_polars():
    # split 0 of sample_halves, then half means, log1p and Pearson with polars and scipy
    rng = np.random.default_rng(2)
    costs = simulate_costs(rng, 30, 5).filter(pl.col("sample_idx") < 2 + pl.col("item_id").str.slice(1).cast(pl.Int64) % 4)
    costs = costs.sample(fraction=1.0, shuffle=True, seed=0)  # row order must not matter
    k = costs.group_by("item_id").len().sort("item_id")["len"].to_numpy()
    in_a = sample_halves(k, 1, seed=9)[0]
    marked = costs.sort("item_id", "sample_idx").with_columns(
        a=pl.Series([bool(in_a[i, j]) for i, n in enumerate(k) for j in range(n)]))
    half = marked.group_by("item_id", "a").agg(pl.col("cost").mean()).pivot("a", index="item_id", values="cost")
    r = stats.pearsonr(np.log1p(half["true"]), np.log1p(half["false"])).statistic
    out = model_split_half(costs, n_splits=1, seed=9)
    # 2..5 samples per item: the halves' lengths differ, so the correction is for their harmonic mean lengths
    # (issue 22: factor 2 underestimated), checked against a root-finder in tests/test_role_means_reliability.py
    lengths = [len(k) / np.sum(1.0 / x) for x in (k // 2, k - k // 2, k)]
    assert out["r_half"] == pytest.approx(r, rel=1e-9)
    assert out["reliability"] == pytest.approx(unequal_halves(r, *lengths), rel=1e-9)
    assert out["n_items"] == 30 and out["n_participants"] is None and out["note"] is None
    assert (in_a.sum(axis=1) == k // 2).all() and np.array_equal(sample_halves(k, 300, 9)[0], in_a)


def test_model_items_with_uneven_samples_and_one_sample_items():
    rng = np.random.default_rng(3)
    costs = simulate_costs(rng, 20, 5)
    # drop samples so items hold 2..5 samples; add an item with a single sample (left out)
    costs = costs.filter(pl.col("sample_idx") < (pl.col("item_id").str.slice(1).cast(pl.Int64) % 4 + 2))
    costs = pl.concat([costs, pl.DataFrame({"item_id": ["solo"], "sample_idx": [0], "cost": [5.0]})],
                      how="vertical_relaxed")
    out = model_split_half(costs, n_splits=100, seed=1)
    assert out["n_items"] == 20 and out["n_splits_used"] == 100 and -1 <= out["reliability"] <= 1
    assert out == model_split_half(costs, n_splits=100, seed=1)  # seeded


# --- undefined cases: NaN with the reason ----------------------------------------------------

def test_human_undefined_cases_say_why():
    rng = np.random.default_rng(4)
    trials = simulate_trials(rng, n_items=10, n_people=6)
    assert_undefined(human_split_half(trials.with_columns(participant=pl.lit(None, pl.Utf8)), "mean_rt"),
                     NO_PARTICIPANTS)
    assert NO_PARTICIPANTS == "the source has no participant ids"
    few = trials.filter(pl.col("participant").is_in(["p000", "p001", "p002"]))
    assert_undefined(human_split_half(few, "mean_rt"), "fewer than 4 participants")
    two_items = trials.filter(pl.col("item_id").is_in(["i000", "i001"]))
    assert_undefined(human_split_half(two_items, "mean_rt"), "fewer than 3 items")
    assert_undefined(human_split_half(trials.with_columns(correct=pl.lit(1.0)), "error_rate"), "constant difficulty")
    assert_undefined(human_split_half(trials.with_columns(rt_s=pl.lit(2.0)), "median_rt"), "constant difficulty")
    assert_undefined(human_split_half(trials.head(0), "mean_rt"), "no trial-level human data")
    with pytest.raises(ValueError, match="measure"):
        human_split_half(trials, "mean_speed")


def test_model_undefined_cases_say_why():
    rng = np.random.default_rng(5)
    assert_undefined(model_split_half(simulate_costs(rng, 10, 1)), ONE_SAMPLE)
    assert ONE_SAMPLE == "one sample per item: cost reliability needs sampling.n >= 2"
    assert_undefined(model_split_half(simulate_costs(rng, 10, 4).with_columns(cost=pl.lit(7.0))), "constant costs")
    assert_undefined(model_split_half(simulate_costs(rng, 2, 4)), "fewer than 3 items")
    with pytest.raises(ValueError, match="cost"):
        model_split_half(simulate_costs(rng, 5, 2).drop("cost"))


# --- noise ceiling ---------------------------------------------------------------------------

def test_noise_ceiling_and_normalised_r():
    assert noise_ceiling(0.81, 0.64) == pytest.approx(0.72) and ceiling_note(0.81, 0.64) is None
    # model reliability undefined (greedy, one sample): the human reliability alone, and it says so
    assert noise_ceiling(0.81, None) == pytest.approx(0.9) == noise_ceiling(0.81, float("nan"))
    assert "human reliability only" in ceiling_note(0.81, None)
    for bad in [(-0.1, 0.5), (0.5, -0.2), (float("nan"), 0.5), (None, None)]:
        assert math.isnan(noise_ceiling(*bad)) and ceiling_note(*bad).startswith("undefined")
    assert normalised_r(0.36, 0.72) == pytest.approx(0.5)
    assert math.isnan(normalised_r(0.3, 0.0)) and math.isnan(normalised_r(0.3, float("nan")))
    assert math.isnan(normalised_r(None, 0.7)) and normalised_r(0.8, 0.72) > 1  # not clipped


# --- Task.trials: the contract for every task kind ---------------------------------------------

def conf_task(name: str, mirror: Path, **changes) -> TaskConfig:
    cfg = OmegaConf.merge(OmegaConf.structured(TaskConfig), OmegaConf.load(CONF_DIR / "task" / f"{name}.yaml"))
    for key, value in changes.items():
        OmegaConf.update(cfg, key, value)
    return OmegaConf.to_object(cfg)


# task config -> the source's participant id column (None: the source has none / trials absent)
PARTICIPANT_COLUMN = {
    "multiplication": "participant", "relational-3ps": "id", "relational-4ps": "id", "relational-carddir": "id",
    "relational-smalllarge": "id", "syllogisms-wiens2021": "id", "syllogisms-ragni2016": "id",
    "tower-of-london": "worker_id", "crt": "worker_id", "arc": None,
}


@pytest.mark.skipif(real_mirror() is None, reason="real human data mirror (../shared/reference-data) absent")
@pytest.mark.parametrize("name", sorted(PARTICIPANT_COLUMN))
def test_every_task_has_the_trial_contract_and_a_reliability(name, tmp_path):
    task = load_task(conf_task(name, real_mirror()), mirror=str(real_mirror()), cache=tmp_path, timeout_s=1)
    assert dict(task.trials.schema) == TRIAL_SCHEMA
    assert task.items["item_id"].dtype == pl.Utf8
    assert set(task.trials["item_id"].unique()) <= set(task.items["item_id"])
    if PARTICIPANT_COLUMN[name] is None:  # ARC without the OSF human file: no trials
        assert task.trials.height == 0
        return
    assert task.trials["participant"].null_count() == 0
    assert task.trials.height == task.items["n_trials"].sum()
    assert task.trials["keep"].sum() == task.items["n_rt_trials"].sum()
    out = human_split_half(task.trials, task.config.difficulty.measure, n_splits=200)
    print(f"{name}: human split-half reliability ({task.config.difficulty.measure}) "
          f"{out['reliability']:.3f} (sd {out['sd']:.3f}, 95% {out['ci_low']:.3f}-{out['ci_high']:.3f}), "
          f"{out['n_participants']} participants, {out['n_items']} items")
    assert out["note"] is None and out["n_items"] == task.items.height


@pytest.mark.skipif(real_mirror() is None, reason="real human data mirror (../shared/reference-data) absent")
def test_trials_follow_split_and_max_items(tmp_path):
    task = load_task(conf_task("multiplication", real_mirror(), max_items=5), mirror=str(real_mirror()),
                     cache=tmp_path, timeout_s=1)
    assert sorted(task.trials["item_id"].unique()) == task.items["item_id"].to_list()
    held = load_task(conf_task("multiplication", real_mirror(), items_split="heldout"), mirror=str(real_mirror()),
                     cache=tmp_path, timeout_s=1)
    assert set(held.trials["item_id"].unique()) == set(held.items["item_id"])


@pytest.mark.skipif(real_mirror() is None, reason="real human data mirror (../shared/reference-data) absent")
def test_real_multiplication_human_reliability_and_speed(tmp_path):
    task = load_task(conf_task("multiplication", real_mirror()), mirror=str(real_mirror()), cache=tmp_path,
                     timeout_s=1)
    assert task.trials.height == 14338 and task.trials["participant"].n_unique() == 239
    human_split_half(task.trials, "mean_rt", n_splits=10)  # warm-up (imports, first allocations)
    timings = {}
    for measure in ("mean_rt", "median_rt", "mean_log_rt", "error_rate"):
        start = time.perf_counter()
        out = human_split_half(task.trials, measure, n_splits=1000, seed=0)
        timings[measure] = time.perf_counter() - start
        print(f"multiplication {measure}: reliability {out['reliability']:.4f} (median {out['median']:.4f}, "
              f"sd {out['sd']:.4f}, 95% {out['ci_low']:.4f}-{out['ci_high']:.4f}), r_half {out['r_half']:.4f}, "
              f"{out['n_participants']} participants x {out['n_items']} items, {timings[measure] * 1000:.0f} ms")
        assert out["n_participants"] == 239 and out["n_items"] == 60 and out["n_splits_used"] == 1000
        assert 0.7 < out["reliability"] < 1 and out["ci_low"] <= out["median"] <= out["ci_high"]
    assert timings["mean_rt"] < 1.0 and max(timings.values()) < 2.0, timings


# --- generic kind: ids as text, the participant column ---------------------------------------------

def generic_task(tmp_path, text: str, measure="mean_rt", columns=None, **difficulty):
    path = tmp_path / "m" / "mine.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    cfg = TaskConfig(name="mine", kind="generic", prompt="{question}", scorer="integer",
                     sources={"items": SourceConfig(url="http://127.0.0.1:9/x",
                                                    sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                                                    mirror_path="mine.csv")},
                     difficulty=DifficultyConfig(measure=measure, **difficulty), columns=columns or {})
    return load_task(cfg, mirror=str(path.parent), cache=tmp_path, timeout_s=1)


def test_generic_ids_stay_text_and_participants_come_from_the_mapped_column(tmp_path):
    text = ("stim,question,answer,rt_ms,correct,subject\n"
            "07,a?,1,1000,1,001\n07,a?,1,1200,1,002\n7,b?,2,2000,1,001\n7,b?,2,2500,0,002\n")
    task = generic_task(tmp_path, text, columns={"item_id": "stim", "participant": "subject"})
    assert task.items["item_id"].to_list() == ["07", "7"]  # not merged into one item 7
    assert task.trials.to_dicts() == [
        {"item_id": "07", "participant": "001", "rt_s": 1.0, "correct": 1.0, "keep": True},
        {"item_id": "07", "participant": "002", "rt_s": 1.2, "correct": 1.0, "keep": True},
        {"item_id": "7", "participant": "001", "rt_s": 2.0, "correct": 1.0, "keep": True},
        {"item_id": "7", "participant": "002", "rt_s": 2.5, "correct": 0.0, "keep": False},
    ]
    assert "participant" not in task.items.columns and "subject" not in task.items.columns


def test_generic_without_participants_or_trials(tmp_path):
    task = generic_task(tmp_path, "item_id,question,answer,rt_s\nq1,a,1,2.0\nq1,a,1,4.0\nq2,b,2,1.0\n")
    assert dict(task.trials.schema) == TRIAL_SCHEMA and task.trials["participant"].null_count() == 3
    assert task.trials["correct"].null_count() == 3 and task.trials["keep"].all()  # no correct column
    assert human_split_half(task.trials, "mean_rt")["note"] == NO_PARTICIPANTS
    items_only = generic_task(tmp_path, "item_id,question,answer,human_rt_s\n01,a,1,2.0\n02,b,2,3.0\n")
    assert items_only.trials.height == 0 and dict(items_only.trials.schema) == TRIAL_SCHEMA
    assert items_only.items["item_id"].to_list() == ["01", "02"]


# --- the unit check: a median RT outside 0.05-300 s ---------------------------------------------

def test_milliseconds_read_as_seconds_are_a_unit_error(tmp_path):
    text = "item_id,question,answer,rt_s,correct\nq1,a,1,1500,1\nq1,a,1,2500,1\nq2,b,2,900,1\n"
    with pytest.raises(TaskDataError, match=r"mine.csv: the median RT of the kept trials is 1500 s, outside "
                                            r"the plausible 0.05-300 s: a unit error\?.*rt_ms.*plausible_median_rt_s"):
        generic_task(tmp_path, text)
    # seconds read as milliseconds: too fast
    with pytest.raises(TaskDataError, match=r"median RT of the kept trials is 0.002 s"):
        generic_task(tmp_path, "item_id,question,answer,rt_ms,correct\nq1,a,1,1.5,1\nq2,b,2,2.5,1\n")
    # item-level RTs too
    with pytest.raises(TaskDataError, match=r"median RT of the items \(human_rt_s\) is 2500 s"):
        generic_task(tmp_path, "item_id,question,answer,human_rt_s\nq1,a,1,2000\nq2,b,2,3000\n")
    # a task that really is that slow says so in its config; null switches the check off
    task = generic_task(tmp_path, text, plausible_median_rt_s=[60.0, 3600.0])
    assert task.items["rt_mean"].to_list() == [2000.0, 900.0]
    assert generic_task(tmp_path, text, plausible_median_rt_s=None).items.height == 2
    # error_rate tasks do not read RTs: no check
    assert generic_task(tmp_path, text, measure="error_rate").items.height == 2


def test_unit_error_on_a_builtin_kind_names_the_file(mult_mirror, tmp_path):
    mirror, _ = mult_mirror
    csv = mirror / "soh-multiplication" / "consolidated_mult_data.csv"
    rows = csv.read_text().splitlines()
    head = rows[0].split(",")
    rt = head.index("multiplyRT")
    ms = [rows[0]] + [",".join(f"{float(v) * 1000:.1f}" if i == rt else v for i, v in enumerate(r.split(",")))
                      for r in rows[1:]]
    csv.write_text("\n".join(ms) + "\n")
    cfg = conf_task("multiplication", mirror, **{"sources.trials.sha256": hashlib.sha256(csv.read_bytes()).hexdigest(),
                                                 "difficulty.rt_max": None})
    with pytest.raises(TaskDataError, match=r"consolidated_mult_data.csv: the median RT .* s, outside the plausible"):
        load_task(cfg, mirror=str(mirror), cache=tmp_path, timeout_s=1)


@pytest.mark.parametrize("window", [[300, 0.05], [0, 10], [-1, 10], [1], [1, 2, 3], ["a", "b"]])
def test_plausible_median_window_is_validated(window):
    cfg = compose(["task=[multiplication]", f"task.multiplication.difficulty.plausible_median_rt_s={window}"]) \
        if all(isinstance(w, (int, float)) for w in window) else None
    if cfg is None:  # non-numbers never get past the schema
        with pytest.raises(Exception):
            compose(["task=[multiplication]", "task.multiplication.difficulty.plausible_median_rt_s=[a,b]"])
        return
    with pytest.raises(ConfigError, match=r"multiplication.yaml: `difficulty.plausible_median_rt_s: .*` "
                                          r"(needs two positive numbers with low < high|give two numbers)"):
        validate(cfg)


def test_default_window_composes():
    job = validate(compose(["task=[multiplication]"]))
    assert list(job.task["multiplication"].difficulty.plausible_median_rt_s) == [0.05, 300.0]
