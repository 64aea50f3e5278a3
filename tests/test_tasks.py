"""Task loading: mirror and sha256, the per-item human table, bad input."""

import csv
import statistics
from math import log

import pytest

from cogdistill.tasks.load import load_task
from cogdistill.tasks.item_table import TaskDataError
from cogdistill.tasks.sources import DataSourceError
from helpers.data import real_mirror
from helpers.tasks import mult_config


def reference_items(path):
    """An independent computation with the csv module: the authors' cleaning, per problem."""
    rows = list(csv.DictReader(open(path, newline="")))
    out = {}
    for problem in {r["problem"] for r in rows}:
        trials = [r for r in rows if r["problem"] == problem]
        kept = [float(r["multiplyRT"]) for r in trials
                if r["multiplyCorr"] == "1" and 0.25 <= float(r["multiplyRT"]) <= 60]
        a, b = problem.replace("=", "").split(" x ")
        out[f"{int(a)}x{int(b)}"] = {
            "n": len(trials), "acc": sum(int(r["multiplyCorr"]) for r in trials) / len(trials),
            "mean": statistics.fmean(kept), "median": statistics.median(kept),
            "logmean": statistics.fmean(log(v) for v in kept), "target": str(int(a) * int(b)),
        }
    return out


def check_against_reference(task, path):
    ref = reference_items(path)
    assert sorted(task.items["item_id"]) == sorted(ref)
    for row in task.items.iter_rows(named=True):
        want = ref[row["item_id"]]
        assert row["n_trials"] == want["n"] and row["target"] == want["target"]
        assert row["accuracy"] == pytest.approx(want["acc"])
        assert row["rt_mean"] == pytest.approx(want["mean"]) and row["rt_median"] == pytest.approx(want["median"])
        assert row["log_rt_mean"] == pytest.approx(want["logmean"])
        assert row["human_difficulty"] == row["rt_mean"]


def test_synthetic_mirror_matches_independent_computation(mult_mirror, tmp_path):
    mirror, sha = mult_mirror
    task = load_task(mult_config(sha), mirror=str(mirror), cache=tmp_path, timeout_s=1)
    check_against_reference(task, mirror / "soh-multiplication" / "consolidated_mult_data.csv")
    assert task.prompts()[0] == "What is 2 x 3?"
    assert task.score("so it is 6", "6").correct


@pytest.mark.skipif(real_mirror() is None, reason="real human data mirror (../shared/reference-data) absent")
def test_real_multiplication_items_match_independent_computation(tmp_path):
    import hashlib

    path = real_mirror() / "soh-multiplication" / "consolidated_mult_data.csv"
    task = load_task(mult_config(hashlib.sha256(path.read_bytes()).hexdigest()), mirror=str(real_mirror()),
                     cache=tmp_path, timeout_s=1)
    # 14,338 trials over 60 problems (two problems have 238 trials, not the 239 SOURCE.md says)
    assert task.items.height == 60 and task.items["n_trials"].sum() == 14338
    check_against_reference(task, path)
    # the problem-size effect the source documents: 9x7 is slower than 3x4
    rt = dict(zip(task.items["item_id"], task.items["rt_median"]))
    assert rt["9x7"] > 2 * rt["3x4"]


def test_measure_selects_the_human_column(mult_mirror, tmp_path):
    mirror, sha = mult_mirror
    task = load_task(mult_config(sha, measure="median_rt"), mirror=str(mirror), cache=tmp_path, timeout_s=1)
    assert task.items["human_difficulty"].to_list() == task.items["rt_median"].to_list()


def test_max_items_takes_a_stable_subset(mult_mirror, tmp_path):
    mirror, sha = mult_mirror
    task = load_task(mult_config(sha, max_items=2), mirror=str(mirror), cache=tmp_path, timeout_s=1)
    assert task.items["item_id"].to_list() == ["2x3", "3x4"]


def test_checksum_mismatch_names_the_file(mult_mirror, tmp_path):
    mirror, _ = mult_mirror
    with pytest.raises(DataSourceError, match=r"consolidated_mult_data.csv: sha256 .* does not match"):
        load_task(mult_config("0" * 64), mirror=str(mirror), cache=tmp_path, timeout_s=1)


def test_mirror_without_the_file_says_what_to_set(tmp_path):
    with pytest.raises(DataSourceError, match="has no soh-multiplication/consolidated_mult_data.csv"):
        load_task(mult_config("0" * 64), mirror=str(tmp_path), cache=tmp_path, timeout_s=1)


def test_unreachable_url_without_mirror_says_to_use_a_mirror(tmp_path):
    with pytest.raises(DataSourceError, match="could not download .*COGDISTILL_DATA_MIRROR"):
        load_task(mult_config("0" * 64), mirror=None, cache=tmp_path, timeout_s=1)
    assert not list((tmp_path / "data").rglob("*.csv")), "no partial download may be left behind"


def _mirror_with(tmp_path, text):
    import hashlib

    path = tmp_path / "m" / "soh-multiplication" / "consolidated_mult_data.csv"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return tmp_path / "m", hashlib.sha256(path.read_bytes()).hexdigest()


def test_missing_column_is_named(tmp_path):
    mirror, sha = _mirror_with(tmp_path, "typedAnswer,RT,multiplyCorr,problem\n6,1.2,1,2 x 3 =\n")
    with pytest.raises(TaskDataError, match=r"missing column\(s\) \['multiplyRT'\]"):
        load_task(mult_config(sha), mirror=str(mirror), cache=tmp_path, timeout_s=1)


def test_non_numeric_rt_is_reported(tmp_path):
    mirror, sha = _mirror_with(tmp_path, "multiplyRT,multiplyCorr,problem\nfast,1,2 x 3 =\n1.0,1,2 x 3 =\n")
    with pytest.raises(TaskDataError, match="non-numeric"):
        load_task(mult_config(sha), mirror=str(mirror), cache=tmp_path, timeout_s=1)


def test_malformed_problem_is_quoted(tmp_path):
    mirror, sha = _mirror_with(tmp_path, "multiplyRT,multiplyCorr,problem\n1.0,1,two times three\n")
    with pytest.raises(TaskDataError, match="'two times three'"):
        load_task(mult_config(sha), mirror=str(mirror), cache=tmp_path, timeout_s=1)


def test_prompt_field_missing_from_items_is_named(mult_mirror, tmp_path):
    mirror, sha = mult_mirror
    with pytest.raises(TaskDataError, match=r"uses \{operand\}"):
        load_task(mult_config(sha, prompt="{operand}?"), mirror=str(mirror), cache=tmp_path, timeout_s=1)


def test_error_rate_measure_for_accuracy_only_data(mult_mirror, tmp_path):
    mirror, sha = mult_mirror
    task = load_task(mult_config(sha, measure="error_rate"), mirror=str(mirror), cache=tmp_path, timeout_s=1)
    assert task.items["human_difficulty"].to_list() == pytest.approx((1 - task.items["accuracy"]).to_list())
