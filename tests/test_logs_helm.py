"""HELM run folders read back as logged samples.

tests/data/harness-logs/helm-0.5.16 was written by crfm-helm 0.5.16's own dataclasses (ScenarioState,
RequestState, RequestResult, GeneratedOutput with Thinking, PerInstanceStats) serialised as helm-run
does (json.dumps(asdict_without_nones(...), indent=2); make.py beside it). crfm-helm cannot be installed
beside this project (it downgrades pandas and fsspec), so the folder is committed. Its run: instance
id4 over two train trials (6 and 7 tokens, think tags inline), id7 with the thinking kept apart (the
first cut by length), id9 a failed request, and a typo-perturbed copy of id4.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cogdistill.traces.logs import helm_log
from cogdistill.traces.logs.base import FAILED, LENGTH, STOP, LogFormatError
from cogdistill.traces.logs.detect import detect

RUN = Path(__file__).parent / "data" / "harness-logs" / "helm-0.5.16"


def run_copy(tmp: Path, change_state=None, change_stats=None) -> Path:
    folder = tmp / "runs" / "v1" / "game24:model=openai_tiny-reasoner"
    shutil.copytree(RUN, folder)
    for name, change in (("scenario_state.json", change_state), ("per_instance_stats.json", change_stats)):
        if change is not None:
            value = json.loads((folder / name).read_text())
            change(value)
            (folder / name).write_text(json.dumps(value, indent=2))
    return folder


def test_a_run_folder_gives_one_sample_per_completion(tmp_path):
    folder = run_copy(tmp_path)
    assert detect(folder) == "helm"
    log = helm_log.read(folder)
    assert log.format == "helm" and log.model == "openai/tiny-reasoner"
    got = [(s.log_id, s.sample_idx, s.output_tokens, s.finish_reason) for s in log.samples]
    # id7's completions carry thinking: their tokens cover the answer only, so no count
    assert got == [("id4", 0, 6, STOP), ("id4", 1, 7, STOP), ("id7", 0, None, LENGTH), ("id7", 1, None, STOP),
                   ("id9", 0, None, FAILED)]
    id4 = log.samples[0]
    assert id4.prompt == "Q: Use 4 6 8 8 to make 24.\nA:" and id4.target == "(8-6)*8+8"
    assert (id4.raw_text, id4.reasoning_text, id4.answer_text) == ("<think>8-6=2</think>(8-6)*8+8", None, None)
    assert id4.latency_s == 0.5 and id4.fields["split"] == "test" and id4.fields["train_trial_index"] == 0
    assert id4.fields["stats"]["exact_match"]["mean"] == 1.0
    id7 = log.samples[2]
    assert (id7.reasoning_text, id7.answer_text, id7.raw_text) == ("8/3 then 3-8/3 then 8 over it", "8/(3-8", None)
    failed = log.samples[4]
    assert failed.failure == "OpenAI error: rate limited" and failed.raw_text is None
    assert any("1 requests of perturbed instances" in n for n in log.notes)


@pytest.mark.parametrize("name", ["scenario_state.json", "per_instance_stats.json"])
def test_either_files_path_reads_its_folder(tmp_path, name):
    folder = run_copy(tmp_path)
    assert detect(folder / name) == "helm"
    log = helm_log.read(folder / name)
    assert log.path == folder and len(log.samples) == 5


def test_without_per_instance_stats_the_run_still_reads_and_says_so(tmp_path):
    folder = run_copy(tmp_path)
    (folder / "per_instance_stats.json").unlink()
    log = helm_log.read(folder)
    assert [s.output_tokens for s in log.samples] == [6, 7, None, None, None]
    assert any("no per_instance_stats.json" in n for n in log.notes)


def test_completions_without_tokens_take_num_output_tokens(tmp_path):
    def drop_tokens(state):
        del state["request_states"][1]["result"]["completions"][0]["tokens"]
    log = helm_log.read(run_copy(tmp_path, change_state=drop_tokens))
    assert log.samples[1].output_tokens == 7  # the stat helm wrote for id4, train trial 1


def test_no_scenario_state_is_refused(tmp_path):
    folder = run_copy(tmp_path)
    (folder / "scenario_state.json").unlink()
    with pytest.raises(LogFormatError, match="no scenario_state.json in it"):
        helm_log.read(folder)


@pytest.mark.parametrize("name", ["scenario_state.json", "per_instance_stats.json"])
def test_a_json_file_cut_short_is_named(tmp_path, name):
    folder = run_copy(tmp_path)
    text = (folder / name).read_text()
    (folder / name).write_text(text[: len(text) // 2])
    with pytest.raises(LogFormatError, match=rf"{name}: not valid JSON"):
        helm_log.read(folder)


@pytest.mark.parametrize("bad", [-6, "6", True])
def test_bad_num_output_tokens_is_refused(tmp_path, bad):
    def damage(stats):
        stats[0]["stats"][0]["sum"] = bad
    with pytest.raises(LogFormatError, match=r"instance 'id4', train trial 0.*`num_output_tokens` is"):
        helm_log.read(run_copy(tmp_path, change_stats=damage))


def test_a_request_state_twice_is_named(tmp_path):
    def twice(state):
        state["request_states"].append(state["request_states"][0])
    with pytest.raises(LogFormatError, match=r"instance 'id4' train trial 0 appears twice \(request_states\[0\] "
                                             r"and \[6\]\)"):
        helm_log.read(run_copy(tmp_path, change_state=twice))


def test_a_file_over_the_cap_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(helm_log, "MAX_FILE_BYTES", 1000)
    with pytest.raises(LogFormatError, match=r"scenario_state.json: .* GiB, more than"):
        helm_log.read(run_copy(tmp_path))


def test_a_run_of_only_perturbations_or_an_unrun_request_is_refused(tmp_path):
    def all_perturbed(state):
        for rs in state["request_states"]:
            rs["instance"]["perturbation"] = {"name": "typos"}
    with pytest.raises(LogFormatError, match="no generations to read"):
        helm_log.read(run_copy(tmp_path / "a", change_state=all_perturbed))

    def unrun(state):
        del state["request_states"][0]["result"]
    with pytest.raises(LogFormatError, match=r"request_states\[0\].*no `result`"):
        helm_log.read(run_copy(tmp_path / "b", change_state=unrun))


def test_a_json_that_is_not_a_scenario_state_is_refused(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "scenario_state.json").write_text(json.dumps({"results": []}))
    with pytest.raises(LogFormatError, match="no `request_states` list"):
        helm_log.read(folder)
