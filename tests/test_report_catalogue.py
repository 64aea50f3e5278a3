"""The report as a catalogue of analyses: results by name, an analysis asked for by name lands after
version 2's layout without moving a byte of it, and the catalogue refuses an analysis that needs a
result no analysis above it gives."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from cogdistill.report import build
from cogdistill.report.catalogue import ANALYSES, _check
from cogdistill.report.render import markdown, sections
from cogdistill.report.synthetic import simulate


@pytest.fixture(scope="module")
def study():
    return simulate(4, 2, 40, 4, seed=7)


@pytest.fixture(scope="module")
def plain(study):
    return build(study, n_boot=30)


@pytest.fixture(scope="module")
def with_split_half(study):
    return build(study, n_boot=30, extra=("split_half",))


def _without_timings(report) -> dict:
    out = report.to_json()
    out.pop("timings_s")
    return out


def test_results_by_name_and_as_the_old_fields(plain):
    assert plain["alignment"] is plain.alignment and plain["paired"] is plain.paired
    assert plain.alignment.height == 8  # 4 models x 2 tasks
    with pytest.raises(AttributeError, match="no analysis result 'nonesuch'"):
        plain.nonesuch
    assert "split_half" not in plain.results  # off unless asked for


def test_an_extra_analysis_comes_after_and_changes_nothing_else(plain, with_split_half):
    base, extra = _without_timings(plain), _without_timings(with_split_half)
    assert list(extra) == [*base, "split_half"]
    assert list(extra["methods"]) == [*base["methods"], "split_half"]
    extra.pop("split_half")
    extra["methods"].pop("split_half")
    assert json.dumps(extra) == json.dumps(base)  # every other key, value and order as before
    titles = [s.title for s in sections(with_split_half)]
    assert titles[:-1] == [s.title for s in sections(plain)] and titles[-1].startswith("Cost reliability")
    assert markdown(with_split_half, {}).startswith(markdown(plain, {}).rstrip("\n"))


def test_split_half_is_the_odd_even_spearman_brown_value(study, with_split_half):
    traces = study.traces.filter(~pl.col("censored"))  # the drop policy's traces
    assert with_split_half.split_half.height == 8 and with_split_half.split_half["note"].is_null().all()
    for row in with_split_half.split_half.iter_rows(named=True):
        cell = traces.filter((pl.col("model") == row["model"]) & (pl.col("task") == row["task"]))
        items = sorted(set(cell["item_id"]))
        halves = [[np.log1p(cell.filter((pl.col("item_id") == i) & (pl.col("sample_idx") % 2 == h))["cost"]
                            .to_numpy().mean()) for i in items] for h in (0, 1)]
        r = np.corrcoef(halves[0], halves[1])[0, 1]
        assert row["n_items"] == len(items)
        assert row["r_half"] == pytest.approx(r, abs=1e-12)
        assert row["reliability"] == pytest.approx(2 * r / (1 + r), abs=1e-12)


def test_unknown_analysis_is_named():
    with pytest.raises(ValueError, match="unknown analysis nonesuch; the catalogue has items, alignment"):
        build(simulate(3, 1, 10, 1, seed=1), n_boot=10, extra=("nonesuch",))


def test_catalogue_refuses_a_need_from_below():
    by_name = {a.name: a for a in ANALYSES}
    swapped = (by_name["items"], by_name["models"], by_name["alignment"])  # models needs alignment's result
    with pytest.raises(RuntimeError, match="'models' needs \\['alignment'\\]"):
        _check(swapped)
    _check(ANALYSES)  # the registered order passes
