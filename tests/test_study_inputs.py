"""A report's study inputs: every bad folder is refused with one StudyError line naming the file,
the row and the fix (exit code 2 on the command line); item ids stay text end to end; human
trial-level data travel with the study (folder, MLflow, Study.write)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest

from cogdistill.config.schema import ModelConfig, Role
from cogdistill.errors import CogdistillError
from cogdistill.traces.replay import ReplayError, load_traces
from cogdistill.report.__main__ import load as cli_load, parse as cli_parse
from cogdistill.report.folder import from_folder
from cogdistill.report.study import ROLES, TRACE_COLUMNS, TRIAL_COLUMNS, Study, StudyError, from_mlflow
from cogdistill.report.synthetic import simulate
from cogdistill.registry import SCORERS


def expect(fn, *needles: str) -> str:
    """fn must raise a StudyError (a CogdistillError: exit 2, no traceback) on one line holding every needle."""
    with pytest.raises(StudyError) as err:
        fn()
    assert isinstance(err.value, CogdistillError)
    message = str(err.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in: {message}"
    return message


@pytest.fixture
def folder(tmp_path) -> Path:
    """A valid study folder: teacher, base, student, control x 1 task x 6 items x 2 samples."""
    study = simulate(n_models=4, n_tasks=1, n_items=6, n_samples=2, seed=3)
    study.trials = study.trials.clear()  # an old-style folder: no trial-level human data
    return study.write(tmp_path / "study")


def traces_file(folder: Path) -> Path:
    return folder / "traces" / "traces.parquet"


def edit_traces(folder: Path, fn) -> None:
    fn(pl.read_parquet(traces_file(folder))).write_parquet(traces_file(folder))


def humans_csv(folder: Path, rows, measure="mean_rt") -> Path:
    """Replace humans.parquet by a humans.csv of (task, item_id, human_difficulty) rows."""
    (folder / "humans.parquet").unlink(missing_ok=True)
    path = folder / "humans.csv"
    path.write_text("task,item_id,human_difficulty,measure\n"
                    + "".join(f"{t},{i},{d},{measure}\n" for t, i, d in rows))
    return path


def human_rows(folder: Path, values):
    ids = sorted(pl.read_parquet(traces_file(folder))["item_id"].unique())
    return [("task-0", i, v) for i, v in zip(ids, values)]


def edit_models(folder: Path, **changes) -> None:
    """changes: model name -> {column: value}."""
    models = pl.read_csv(folder / "models.csv", infer_schema_length=0)
    for name, cols in changes.items():
        models = models.with_columns(**{c: pl.when(pl.col("model") == name).then(pl.lit(v)).otherwise(pl.col(c))
                                        for c, v in cols.items()})
    models.write_csv(folder / "models.csv")


# --- accepted input ---------------------------------------------------------------------------

def test_a_valid_folder_round_trips_unchanged_and_without_trials(folder):
    study = from_folder(folder)
    assert dict(study.traces.schema) == TRACE_COLUMNS
    again = from_folder(study.write(folder.parent / "again"))
    for name in ("traces", "humans", "models", "trials"):
        assert getattr(again, name).equals(getattr(study, name)), name
    # an old-style folder has no trials: an empty frame with the contract's schema, no error
    assert study.trials.height == 0 and dict(study.trials.schema) == TRIAL_COLUMNS
    assert not (folder.parent / "again" / "trials.parquet").exists() and study.notes == []


def test_study_built_without_trials_gets_the_empty_trial_frame():
    study = Study(pl.DataFrame(), pl.DataFrame(), pl.DataFrame(), source="x")
    assert study.trials.height == 0 and dict(study.trials.schema) == TRIAL_COLUMNS


def test_whole_number_float_costs_and_zero_one_correct_are_accepted(folder):
    edit_traces(folder, lambda t: t.with_columns(pl.col("cost").cast(pl.Float32),
                                                 pl.col("correct").cast(pl.Int64)))
    study = from_folder(folder)
    assert study.traces["correct"].dtype == pl.Boolean and study.traces["cost"].dtype == pl.Float64


def test_leading_zero_item_ids_survive_a_folder_round_trip(folder):
    rows = [{"model": m, "task": "task-0", "item_id": i, "sample_idx": 0, "cost": 10 * k + 1, "correct": k % 2 == 0}
            for m in ("teacher-0", "base-0", "student-0", "control-3") for k, i in enumerate(["07", "7", "007", "10"])]
    traces_file(folder).unlink()
    (folder / "traces" / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    humans_csv(folder, [("task-0", "07", 1.5), ("task-0", "7", 2.5), ("task-0", "007", 3.0)])
    study = from_folder(folder)
    assert sorted(study.humans["item_id"]) == ["007", "07", "7"]
    assert sorted(study.traces["item_id"].unique()) == ["007", "07", "10", "7"]
    # '10' has no human row: kept (no human data) and counted, not joined away
    missing = study.items_without_humans().row(0, named=True)
    assert (missing["task"], missing["n_items"], missing["n_without_humans"]) == ("task-0", 4, 1)
    assert missing["examples"] == ["10"]
    assert len(study.notes) == 1 and "1 of 4 trace item(s) have no human difficulty in humans.csv" in study.notes[0]
    again = from_folder(study.write(folder.parent / "again"))
    assert again.traces.equals(study.traces) and again.humans.equals(study.humans)


def test_mean_log_rt_may_be_negative(folder):
    humans_csv(folder, human_rows(folder, [-0.7, -0.2, 0.1, 0.4, 0.9, 1.3]), measure="mean_log_rt")
    assert from_folder(folder).humans["human_difficulty"].min() == -0.7


# --- refused: traces ----------------------------------------------------------------------------

def test_duplicate_trace_rows(folder):
    edit_traces(folder, lambda t: pl.concat([t, t.head(1)]))
    expect(lambda: from_folder(folder), "traces.parquet", "row 49", "repeats row 1", "sample_idx 0",
           "drop the copy", "number repeated samples")


def test_duplicate_trace_rows_across_files(folder):
    pl.read_parquet(traces_file(folder)).tail(2).write_parquet(folder / "traces" / "z.parquet")
    expect(lambda: from_folder(folder), "z.parquet", "row 1", "repeats row 47 of", "traces.parquet", "drop the copy")


@pytest.mark.parametrize("value, problem", [
    (float("nan"), "NaN"), (None, "empty"), (-3.0, "-3, negative"), (math.inf, "infinite"),
    (12.5, "12.5, not a whole number"),
])
def test_bad_costs(folder, value, problem):
    edit_traces(folder, lambda t: t.with_columns(
        cost=pl.when(pl.int_range(pl.len()) == 4).then(pl.lit(value, pl.Float64)).otherwise(pl.col("cost"))))
    expect(lambda: from_folder(folder), "traces.parquet", "row 5 (model 'teacher-0', task 'task-0'",
           f"the cost (column `cost`) is {problem}", "whole number >= 0", "fix the record or drop it")


def test_bad_cost_named_by_models_csv_and_text_costs(folder):
    edit_traces(folder, lambda t: t.rename({"cost": "reasoning_tokens"}).with_columns(
        reasoning_tokens=pl.when(pl.int_range(pl.len()) == 2).then(-1.0).otherwise(pl.col("reasoning_tokens"))))
    edit_models(folder, **{m: {"cost": "reasoning_tokens"} for m in ("teacher-0", "base-0", "student-0", "control-3")})
    expect(lambda: from_folder(folder), "traces.parquet", "row 3", "column `reasoning_tokens`", "negative")
    (folder / "traces" / "traces.parquet").unlink()
    (folder / "traces" / "t.jsonl").write_text(json.dumps(
        {"model": "teacher-0", "task": "task-0", "item_id": "a", "cost": "lots", "correct": True}) + "\n")
    expect(lambda: from_folder(folder), "t.jsonl", "row 1", "`cost` is 'lots', not a number", "whole numbers")


@pytest.mark.parametrize("correct, shown", [([2, 0], "2"), (["yes", "no"], "'yes'"), ([None, True], "empty")])
def test_correct_must_be_boolean_or_zero_one(folder, correct, shown):
    traces_file(folder).unlink()
    rows = [{"model": "teacher-0", "task": "task-0", "item_id": f"i{k}", "cost": 5, "correct": c}
            for k, c in enumerate(correct)]
    (folder / "traces" / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    expect(lambda: from_folder(folder), "t.jsonl", "row 1", f"`correct` is {shown}", "true/false or 1/0")


# --- refused: humans ----------------------------------------------------------------------------

def test_duplicate_human_rows(folder):
    rows = human_rows(folder, [2.0] * 6)
    humans_csv(folder, rows + [rows[2]])
    expect(lambda: from_folder(folder), "humans.csv", "row 7 (line 8; task 'task-0', item_id", "repeats row 3",
           "keep one row per (task, item_id)")


@pytest.mark.parametrize("value, needles", [
    ("", ["row 2 (line 3", "`human_difficulty` is empty", "give a number, or drop the row"]),
    ("nan", ["row 2", "`human_difficulty` is nan", "give a number"]),
    ("slow", ["row 2", "`human_difficulty` is 'slow', not a number", "give a number"]),
    ("0", ["row 2", "is 0.0 but measure mean_rt is an RT in seconds", "RTs are positive"]),
    ("-1.5", ["row 2", "is -1.5 but measure mean_rt", "only mean_log_rt"]),
])
def test_bad_human_difficulty(folder, value, needles):
    humans_csv(folder, human_rows(folder, [2.0, value, 2.5, 3.0, 2.2, 2.8]))
    expect(lambda: from_folder(folder), "humans.csv", *needles)


@pytest.mark.parametrize("measure, values, needles", [
    ("mean_rt", [1500, 2100, 2600, 900, 1800, 2300], ["is 1950 s", "outside the plausible range 0.05-300 s",
                                                     "milliseconds given as seconds? divide by 1000"]),
    ("median_rt", [0.002, 0.003, 0.002, 0.001, 0.004, 0.002], ["is 0.002 s", "convert to seconds"]),
    ("mean_log_rt", [7.1, 7.4, 7.6, 6.9, 7.3, 7.5], ["(mean_log_rt) is 7.35, i.e. exp(median) = 1556 s",
                                                    "a mean of log milliseconds? subtract log(1000)"]),
])
def test_implausible_rt_units(folder, measure, values, needles):
    humans_csv(folder, human_rows(folder, values), measure=measure)
    expect(lambda: from_folder(folder), "humans.csv", "task 'task-0'", *needles,
           "if these are truly seconds, pass --plausible-rt task-0=LOW:HIGH to python -m cogdistill.report")


def test_the_plausible_rt_flag_accepts_truly_long_rts(folder, tmp_path):
    humans_csv(folder, human_rows(folder, [400, 500, 650, 420, 380, 700]))
    expect(lambda: from_folder(folder), "--plausible-rt task-0=LOW:HIGH")
    study, client, parent = cli_load(cli_parse(["--folder", str(folder), "--plausible-rt", "task-0=1:3600"]))
    assert study.humans["human_difficulty"].max() == 700 and client is None and parent is None
    expect(lambda: cli_load(cli_parse(["--folder", str(folder), "--plausible-rt", "task-0=1:1000",
                                       "--plausible-rt", "nope=1:2"])),
           "humans.csv", "--plausible-rt names task(s) ['nope']", "use task names from the file: ['task-0']")
    expect(lambda: cli_load(cli_parse(["--folder", str(folder), "--plausible-rt", "task-0=5"])),
           "--plausible-rt 'task-0=5'", "expected TASK=LOW:HIGH in seconds")


@pytest.mark.parametrize("value", ["1.2", "-0.1"])
def test_error_rate_lies_in_zero_one(folder, value):
    humans_csv(folder, human_rows(folder, [0.1, value, 0.3, 0.2, 0.0, 1.0]), measure="error_rate")
    expect(lambda: from_folder(folder), "humans.csv", "row 2", f"is {float(value)} but an error_rate lies in [0, 1]",
           "proportion of wrong trials")


def test_unknown_and_mixed_measures(folder):
    humans_csv(folder, human_rows(folder, [1.0] * 6), measure="mean_RT")
    expect(lambda: from_folder(folder), "humans.csv", "row 1", "unknown measure 'mean_RT'", "use one of", "mean_rt")
    path = humans_csv(folder, human_rows(folder, [1.0] * 6))
    path.write_text(path.read_text().replace("mean_rt\n", "median_rt\n", 1))
    expect(lambda: from_folder(folder), "humans.csv", "task 'task-0'", "mixes measures ['mean_rt', 'median_rt']",
           "one measure per task")


# --- refused: models ----------------------------------------------------------------------------

def test_unknown_role(folder):
    edit_models(folder, **{"base-0": {"role": "baseline"}})
    msg = expect(lambda: from_folder(folder), "models.csv", "row 2 (line 3; model 'base-0')",
                 "unknown role 'baseline'", "use one of")
    assert all(role in msg for role in ROLES) and set(ROLES) == {r.value for r in Role}


@pytest.mark.parametrize("changes, needles", [
    ({"student-0": {"teacher": "student-0"}}, ["row 3", "model 'student-0'", "the model is its own teacher",
                                               "set `teacher` to the model it was trained from"]),
    ({"base-0": {"base": "base-0"}}, ["model 'base-0'", "the model is its own base", "set `base`"]),
    ({"teacher-0": {"teacher": "student-0"}}, ["teacher/base links form a cycle:",
                                               "student-0 -teacher-> teacher-0 -teacher-> student-0",
                                               "fix `teacher`/`base` in one of these rows"]),
    ({"base-0": {"base": "control-3"}, "control-3": {"teacher": "student-0"}},
     ["form a cycle: base-0 -base-> control-3 -teacher-> student-0 -base-> base-0",
      "no model can be its own (indirect) teacher or base"]),
])
def test_self_links_and_cycles(folder, changes, needles):
    edit_models(folder, **changes)
    expect(lambda: from_folder(folder), "models.csv", *needles)


# --- human trials -------------------------------------------------------------------------------

def trials_frame(folder: Path) -> pl.DataFrame:
    ids = sorted(pl.read_parquet(traces_file(folder))["item_id"].unique())
    n = 3 * len(ids)
    return pl.DataFrame({"task": ["task-0"] * n, "item_id": ids * 3,
                         "participant": [p for p in ("p01", "p02", None) for _ in ids],
                         "rt_s": [1.0 + 0.1 * k for k in range(n - 1)] + [None],
                         "correct": [1.0, 0.0] * (n // 2), "keep": [True] * (n - 2) + [False, False]},
                        schema=TRIAL_COLUMNS)


def test_trials_round_trip_through_write_and_from_folder(folder):
    study = from_folder(folder)
    study.trials = trials_frame(folder)
    written = study.write(folder.parent / "with-trials")
    assert (written / "trials.parquet").is_file()
    again = from_folder(written)
    assert again.trials.equals(study.trials) and dict(again.trials.schema) == TRIAL_COLUMNS


def test_trials_csv_keeps_text_ids_and_defaults_keep(folder):
    (folder / "trials.csv").write_text("task,item_id,participant,rt_s,correct\n"
                                       "task-0,07,001,1.2,1\ntask-0,07,002,,0\ntask-0,7,001,2.5,true\n")
    trials = from_folder(folder).trials
    assert trials["item_id"].to_list() == ["07", "07", "7"] and trials["participant"].to_list() == ["001", "002", "001"]
    assert trials["keep"].to_list() == [True] * 3 and trials["correct"].to_list() == [1.0, 0.0, 1.0]
    assert trials["rt_s"].to_list() == [1.2, None, 2.5]


@pytest.mark.parametrize("text, needles", [
    ("task,item_id,participant,correct\ntask-0,a,p,1\n",
     ["missing column(s) ['rt_s']", "add them"]),
    ("task,item_id,participant,rt_s,correct\ntask-0,a,p,1.2,1\ntask-0,b,p,fast,1\n",
     ["row 2 (line 3; task 'task-0', item_id 'b', participant 'p')", "`rt_s` is 'fast', not a number",
      "give the RT in seconds"]),
    ("task,item_id,participant,rt_s,correct,keep\ntask-0,a,p,-1,1,true\n",
     ["row 1", "`rt_s` is -1.0 on a kept trial", "set `keep` to false"]),
    ("task,item_id,participant,rt_s,correct\ntask-0,a,p,1200,1\ntask-0,b,p,900,1\n",
     ["task 'task-0'", "the median kept `rt_s` is 1050 s", "divide by 1000", "--plausible-rt task-0=LOW:HIGH"]),
    ("task,item_id,participant,rt_s,correct\ntask-0,a,p,1.2,maybe\n",
     ["row 1", "`correct` is 'maybe'", "1/0, true/false"]),
])
def test_bad_trials(folder, text, needles):
    (folder / "trials.csv").write_text(text)
    expect(lambda: from_folder(folder), "trials.csv", *needles)


def test_trial_rts_of_an_error_rate_task_are_not_checked_as_rts(folder):
    """As the task loaders: a task measured by its error rate may log RTs in any unit, or none."""
    humans_csv(folder, human_rows(folder, [0.1, 0.2, 0.3, 0.2, 0.0, 1.0]), measure="error_rate")
    (folder / "trials.csv").write_text("task,item_id,participant,rt_s,correct\ntask-0,a,p,1200,1\ntask-0,b,p,0,0\n")
    assert from_folder(folder).trials["rt_s"].to_list() == [1200.0, 0.0]


def test_trials_from_mlflow_one_copy_per_task_and_none_for_old_runs(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("s", artifact_location=(tmp_path / "artifacts").as_uri())
    trials = pl.DataFrame({"item_id": ["07", "08"], "participant": ["p1", None], "rt_s": [1.5, None],
                           "correct": [1.0, 0.0], "keep": [True, False]})
    for model, tasks_with_trials in (("m1", ["a"]), ("m2", ["a"]), ("m3", [])):  # m3: logged before trials
        run = client.create_run(exp, tags={"cogdistill.kind": "job", "model": model, "task": "a,b",
                                           "role": "control", "family": "f"})
        client.log_param(run.info.run_id, "cost", "total_tokens")
        for task in ("a", "b"):
            d = tmp_path / model / task
            for sub in ("traces", "items", "humans"):
                (d / sub).mkdir(parents=True, exist_ok=True)
            pl.DataFrame({"task": [task] * 2, "item_id": ["07", "08"], "sample_idx": [0, 0], "total_tokens": [3, 5],
                          "correct": [True, False], "censored": [False, False]}
                         ).write_parquet(d / "traces" / f"{task}.parquet")
            pl.DataFrame({"item_id": ["07", "08"], "human_difficulty": [1.0, 2.0]}).write_parquet(
                d / "items" / f"{task}_items.parquet")
            if task in tasks_with_trials:
                trials.write_parquet(d / "humans" / f"{task}_trials.parquet")
            for sub in ("traces", "items", "humans"):
                for f in (d / sub).iterdir():
                    client.log_artifact(run.info.run_id, str(f), sub)
        client.set_terminated(run.info.run_id)
    study = from_mlflow(uri, "s")
    assert study.traces.height == 12 and sorted(study.traces["item_id"].unique()) == ["07", "08"]
    assert dict(study.trials.schema) == TRIAL_COLUMNS
    assert study.trials.equals(trials.with_columns(task=pl.lit("a")).select(TRIAL_COLUMNS.keys()).cast(TRIAL_COLUMNS))
    assert study.notes == []


# --- item ids in replay ---------------------------------------------------------------------------

def zero_task():
    """A stand-in Task whose ids carry leading zeros (load_traces reads only these attributes)."""
    items = pl.DataFrame({"item_id": ["07", "08", "10"], "target": ["7", "8", "10"]})
    return SimpleNamespace(name="zeros", items=items, config=SimpleNamespace(max_items=None),
                           prompts=lambda: ["seven", "eight", "ten"],
                           score=lambda text, target: SCORERS.load("integer")(text, target))


def replay_model():
    return ModelConfig(name="m1", hf_id="local/m1", role=Role.control, family="test")


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_replay_keeps_leading_zero_item_ids(tmp_path, suffix):
    rows = [{"item_id": i, "reasoning_tokens": 4, "answer_tokens": 1, "correct": True} for i in ("07", "08")]
    path = tmp_path / f"t{suffix}"
    if suffix == ".parquet":
        pl.DataFrame(rows).write_parquet(path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    traces, warnings = load_traces(path, zero_task(), replay_model(), None)
    assert traces["item_id"].to_list() == ["07", "08"] and "'10'" in warnings[0]


def test_replay_names_ids_that_lost_their_leading_zeros(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"item_id": 7, "reasoning_tokens": 4, "answer_tokens": 1, "correct": True}) + "\n")
    lost = r"t\.jsonl: .*lost their leading zeros \(e\.g\. 7 for '07'\): write item_id as text"
    with pytest.raises(ReplayError, match=lost):
        load_traces(path, zero_task(), replay_model(), None)


# --- the command line -----------------------------------------------------------------------------

def test_cli_exits_2_with_the_message_and_no_traceback(folder):
    edit_models(folder, **{"base-0": {"role": "baseline"}})
    proc = subprocess.run([sys.executable, "-m", "cogdistill.report", "--folder", str(folder), "--no-figures"],
                          env={**os.environ, "COLUMNS": "400"}, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "models.csv" in out and "unknown role 'baseline'" in out and "use one of" in out
    assert "Traceback" not in out
