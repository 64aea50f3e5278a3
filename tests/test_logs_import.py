"""HELM runs and lighteval details, written by those libraries (tests/data/harness-logs), through the
whole import: items matched by an id map, raw generations split by the model's protocol and counted,
cuts censored, failures kept as failed traces."""

import shutil
from pathlib import Path

from cogdistill.config.schema import ReplayEngineConfig
from cogdistill.traces.replay import load_traces
from helpers.traces import CharTokenizer, model

DATA = Path(__file__).parent / "data" / "harness-logs"


def id_map(tmp_path, pairs) -> str:
    path = tmp_path / "map.csv"
    path.write_text("log_id,item_id\n" + "".join(f"{a},{b}\n" for a, b in pairs))
    return str(path)


def test_a_helm_run_folder_imports_with_counted_costs_and_its_cut_censored(task, tmp_path):
    run = tmp_path / "runs" / "game24:model=tiny"
    shutil.copytree(DATA / "helm-0.5.16", run, ignore=shutil.ignore_patterns("make.py"))
    settings = ReplayEngineConfig(id_map=id_map(tmp_path, [("id4", "2x3"), ("id7", "3x4"), ("id9", "4x6")]))
    traces, warnings = load_traces(run, task, model(), CharTokenizer(), settings=settings)
    assert "helm log of openai/tiny-reasoner" in warnings[0]
    rows = {(r["item_id"], r["sample_idx"]): r for r in traces.iter_rows(named=True)}
    first = rows["2x3", 0]
    assert (first["reasoning_text"], first["answer_text"]) == ("8-6=2", "(8-6)*8+8")
    assert first["reasoning_tokens"] == len("8-6=2") and first["cost_source"] == "counted"
    cut = rows["3x4", 0]  # max_tokens after the reasoning closed: a complete reasoning cost, not censored
    assert cut["finish_reason"] == "length" and not cut["censored"] and cut["answer_text"] == "8/(3-8"
    failed = rows["4x6", 0]  # HELM's failed request: a failed trace, never a zero cost
    assert failed["finish_reason"] == "failed" and failed["reasoning_tokens"] is None
    assert "rate limited" in failed["failure"]
    assert any("perturbed" in w for w in warnings)


def test_lighteval_details_import_by_an_id_map_and_by_their_budget_cut(task, tmp_path):
    path = tmp_path / "details_custom|game24|0_2026-12-06T04-25-21.567107.parquet"
    shutil.copy(DATA / "lighteval-0.13" / "details_game24.parquet", path)
    settings = ReplayEngineConfig(id_map=id_map(tmp_path, [("g24-001", "2x3"), ("g24-002", "3x4")]))
    traces, warnings = load_traces(path, task, model(), CharTokenizer(), settings=settings)
    assert "lighteval log" in warnings[0] and "4 matched 2 of the 6 items" in warnings[0]
    rows = {(r["item_id"], r["sample_idx"]): r for r in traces.iter_rows(named=True)}
    assert rows["2x3", 0]["reasoning_text"] == "8-6=2, 2*8=16, 16+8=24" and not rows["2x3", 0]["censored"]
    assert rows["2x3", 0]["usage_completion_tokens"] == 7  # lighteval's own token ids, kept beside our count
    assert rows["3x4", 0]["censored"] and rows["3x4", 0]["finish_reason"] == "length"
