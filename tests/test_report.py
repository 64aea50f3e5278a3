"""The comparison report end to end: a simulated study with known ground truth goes through the
real pipeline (replay sweep -> MLflow -> the sweep's report), and the report recovers the truth."""

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from cogdistill.report import build, write_report
from cogdistill.report.folder import from_folder
from cogdistill.report.study import Study, StudyError, from_mlflow
from cogdistill.report.synthetic import Truth, simulate
from helpers.report import replay_sweep

TRUTH = Truth()
SAMPLES = 2


@pytest.fixture(scope="module")
def replayed_sweep(tmp_path_factory):
    """Teacher, base, distilled student and a control over 3 tasks x 300 items x 2 samples,
    replayed as one `-m` sweep into a fresh MLflow store."""
    root = tmp_path_factory.mktemp("synthetic-study")
    study = simulate(n_models=4, n_tasks=3, n_items=300, n_samples=SAMPLES, seed=7, truth=TRUTH)
    env, stdout = replay_sweep(root, study, "synthetic", bootstrap=300)
    return {"root": root, "env": env, "study": study, "stdout": stdout, "uri": env["MLFLOW_TRACKING_URI"]}


def parent_run(uri):
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("synthetic")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`cogdistill.kind` = 'sweep'")
    return client, parent


@pytest.mark.slow  # replayed_sweep: a 3 x 300-item replay sweep, 20 s
def test_the_sweeps_report_recovers_the_simulated_ground_truth(replayed_sweep):
    client, parent = parent_run(replayed_sweep["uri"])
    report = json.loads(Path(client.download_artifacts(parent.info.run_id, "report/report.json")).read_text())
    roles = {row["role"]: row for row in report["roles"]}
    for role in ("teacher", "base", "student", "control"):
        assert abs(roles[role]["r_mean"] - TRUTH.expected_r(role, SAMPLES)) < 0.1, (role, roles[role])
    assert roles["teacher"]["r_mean"] > roles["base"]["r_mean"] > roles["student"]["r_mean"]
    assert roles["teacher"]["ci_low"] < roles["teacher"]["r_mean"] < roles["teacher"]["ci_high"]

    # collapse and negative transfer: each task's student below its base and its teacher, significantly
    fams = report["families"]
    assert len(fams) == 3 and {f["student"] for f in fams} == {"student-0"}
    assert all(f["delta_base"] < 0 and f["p_vs_teacher"] < 0.001 for f in fams)
    assert sum(f["p_vs_base"] < 0.05 for f in fams) >= 2  # a true gap of ~0.24 at n = 300: power ~0.85 per task
    assert all(f["q_vs_teacher"] < 0.001 and not f["underpowered_vs_teacher"] for f in fams)
    # every cell's r has q, BF10 and BF01; the teacher's alignment is decisive evidence
    cells = {(c["model"], c["task"]): c for c in report["alignment"]}
    assert all(cells[("teacher-0", t)]["bf10"] > 100 for t in ("task-0", "task-1", "task-2"))
    assert all(c["n_items"] == 300 and c["q"] >= c["p"] for c in cells.values())
    assert report["schema_version"] == 2 and report["censored_policy"] == "drop"
    # reliability: the human trials reach the report through the runs, and the known reliability is recovered
    for row in report["human_reliability"]:
        assert row["reliability"] == pytest.approx(TRUTH.human_reliability(), abs=0.03) and row["n_participants"] == 20
    assert all(0.85 < c["noise_ceiling"] < 1 and c["r_normalised"] == pytest.approx(c["r"] / c["noise_ceiling"])
               for c in cells.values())
    # the design-respecting contrast agrees in sign with the simulated collapse
    contrasts = report["multilevel"]["role_contrasts"]["contrasts"]
    assert contrasts["student_vs_teacher"]["estimate"] < 0 and contrasts["student_vs_teacher"]["ci_high"] < 0
    assert report["paired_tests"]["student_vs_base"]["mean_diff"] == pytest.approx(
        TRUTH.expected_r("student", SAMPLES) - TRUTH.expected_r("base", SAMPLES), abs=0.1)

    # cargo cult: tokens inflated ~2.44x over the base, at a near-constant factor
    summary = report["inflation"]["summary"]
    assert summary["student_vs_base_geomean"] == pytest.approx(TRUTH.inflation, rel=0.12)
    assert summary["student_vs_base_cv"] < 0.15
    effort = report["relative_effort"]
    teacher_scale = TRUTH.scale["base"] * TRUTH.inflation / TRUTH.scale["teacher"]
    # each task's items share one draw of difficulties, which the teacher tracks and the student
    # barely does, so a task's ratio of means moves by ~10%: compare the mean over tasks
    assert sum(e["effort_mean"] for e in effort) / len(effort) == pytest.approx(teacher_scale, rel=0.15)
    # the student reallocates (flat where the teacher tracks difficulty): JSD beyond the permutation null
    assert all(e["js_teacher_student"] > 0.02 and e["js_p"] < 0.05 for e in effort)
    elasticity = {(e["model"], e["task"]): e["slope"] for e in report["elasticity"]}
    assert all(elasticity[("teacher-0", t)] > elasticity[("student-0", t)] for t in ("task-0", "task-1", "task-2"))

    # fingerprints: closeness to the human fingerprint follows the simulated alignments
    to_human = {row["fingerprint"]: row["human"] for row in report["fingerprints"]["rsa"]}
    assert to_human["teacher-0"] > to_human["base-0"] > to_human["student-0"]
    assert report["fingerprints"]["n_items"] == 900

    # beyond the paper: the wrong-answer premium (0.3 in log cost) with item and model fixed effects
    for row in report["wrong_vs_right"]["fixed_effects"]:
        assert row["beta"] == pytest.approx(TRUTH.wrong_premium, abs=0.08)
    assert {c["model"] for c in report["correct_only"]} == {"teacher-0", "base-0", "student-0", "control-3"}


@pytest.mark.slow  # replayed_sweep (20 s)
def test_the_parent_run_shows_the_report_in_the_mlflow_ui(replayed_sweep):
    client, parent = parent_run(replayed_sweep["uri"])
    metrics = parent.data.metrics
    for key in ("report/r_teacher", "report/r_student", "report/r_base", "report/student_vs_base_t",
                "report/student_vs_base_p", "report/inflation_vs_base", "report/rsa_human/teacher-0",
                "report/r_student_weighted", "report/multilevel/student_vs_base_z", "report/human_reliability/task-0",
                "report/cells_q_below_05"):
        assert key in metrics, key
    assert parent.info.status == "FINISHED"
    files = {f.path for f in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.json", "report/report.md", "report/figures", "report/study"} <= files
    pngs = {f.path for f in client.list_artifacts(parent.info.run_id, "report/figures")}
    assert len(pngs) == 5
    for png in pngs:
        assert Path(client.download_artifacts(parent.info.run_id, png)).read_bytes()[:4] == b"\x89PNG"
    assert "Collapse and negative transfer" in replayed_sweep["stdout"]  # the rich tables, in the terminal


@pytest.mark.slow  # replayed_sweep (20 s) + 8 s
def test_the_cli_rebuilds_the_same_report_from_mlflow_and_from_the_saved_study(replayed_sweep, tmp_path):
    client, parent = parent_run(replayed_sweep["uri"])
    logged = json.loads(Path(client.download_artifacts(parent.info.run_id, "report/report.json")).read_text())
    cmd = [sys.executable, "-m", "cogdistill.report", "--bootstrap", "300", "--no-figures"]
    proc = subprocess.run(cmd + ["--experiment", "synthetic", "--parent", "latest", "--out", str(tmp_path / "a")],
                          env=replayed_sweep["env"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    again = json.loads((tmp_path / "a" / "report.json").read_text())
    assert again["alignment"] == logged["alignment"] and again["roles"] == logged["roles"]
    # the study folder the report wrote is itself a valid input
    proc = subprocess.run(cmd + ["--folder", str(tmp_path / "a" / "study"), "--out", str(tmp_path / "b")],
                          env=replayed_sweep["env"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads((tmp_path / "b" / "report.json").read_text())["families"] == logged["families"]


@pytest.mark.slow  # replayed_sweep (20 s)
def test_from_mlflow_takes_each_models_newest_finished_run(replayed_sweep):
    study = from_mlflow(replayed_sweep["uri"], "synthetic")
    assert sorted(study.models["model"]) == ["base-0", "control-3", "student-0", "teacher-0"]
    assert study.traces.height == replayed_sweep["study"].traces.height
    assert set(study.models.filter(pl.col("model") == "student-0").row(0, named=True).items()) >= {
        ("teacher", "teacher-0"), ("base", "base-0"), ("role", "student"), ("cost", "total_tokens")}


def test_a_study_of_controls_only_builds_with_nothing_to_compare(tmp_path):
    study = simulate(n_models=2, n_tasks=2, n_items=30, n_samples=1)
    assert set(study.models["role"]) == {"control"}
    report, files = write_report(study, tmp_path / "out", n_boot=50)
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["families"] == [] and data["paired_tests"]["student_vs_base"]["n_pairs"] == 0
    assert data["inverse_efficiency"]["fit"]["slope"] is None
    assert len([f for f in files if f.suffix == ".png"]) == 5


def test_the_inflation_law_is_recovered_across_families():
    report = build(simulate(n_models=15, n_tasks=3, n_items=200, n_samples=1, seed=2), n_boot=50)
    fit = report.inverse_efficiency_fit
    assert fit["n"] == 15 and fit["r2"] > 0.7
    assert fit["slope"] == pytest.approx(TRUTH.inflation_law_slope(), rel=0.3)


def write_folder(tmp_path, study: Study) -> Path:
    return study.write(tmp_path / "study")


def test_folder_errors_name_the_file_and_the_fix(tmp_path):
    folder = write_folder(tmp_path, simulate(n_models=3, n_tasks=1, n_items=10))
    (folder / "models.csv").unlink()
    with pytest.raises(StudyError, match=r"no models\.csv or models\.parquet"):
        from_folder(folder)
    folder = write_folder(tmp_path, simulate(n_models=3, n_tasks=1, n_items=10))
    pl.read_parquet(folder / "traces" / "traces.parquet").drop("cost").write_parquet(folder / "traces" / "traces.parquet")
    models = pl.read_csv(folder / "models.csv").drop("cost")
    models.write_csv(folder / "models.csv")
    with pytest.raises(StudyError, match=r"traces\.parquet: no cost for model .* add a `cost` column"):
        from_folder(folder)
    models.filter(pl.col("model") != "teacher-0").write_csv(folder / "models.csv")
    pl.read_parquet(folder / "traces" / "traces.parquet").with_columns(cost=pl.lit(3.0)).write_parquet(
        folder / "traces" / "traces.parquet")
    with pytest.raises(StudyError, match=r"models\.csv: no row for model\(s\) \['teacher-0'\]"):
        from_folder(folder)


def test_cli_errors_exit_2_without_a_traceback(tmp_path):
    from mlflow import MlflowClient

    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'empty.db'}"}
    proc = subprocess.run([sys.executable, "-m", "cogdistill.report", "--experiment", "nope"],
                          env=env, capture_output=True, text=True, timeout=120)
    # a reader never creates a store (issue 23)
    assert proc.returncode == 2 and "no MLflow store at" in proc.stdout and "Traceback" not in proc.stderr
    assert not (tmp_path / "empty.db").exists()
    MlflowClient(env["MLFLOW_TRACKING_URI"]).search_experiments()  # an empty store, made by MLflow
    proc = subprocess.run([sys.executable, "-m", "cogdistill.report", "--experiment", "nope"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no experiment 'nope'" in proc.stdout and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "cogdistill.report", "--folder", str(tmp_path / "missing")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "not a folder" in proc.stdout
