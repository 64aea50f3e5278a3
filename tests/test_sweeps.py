"""Sweeps at their process boundary: every job checked before the first starts, one job's failure never
stops the others, the parent run ends FAILED with the failed jobs listed, and the exit code says so.
Driven through the real command line, with the default launcher and with hydra/launcher=local."""

from __future__ import annotations

import pytest

from helpers.procs import cogdistill, output, runs_by_kind, single_job


def _models(conf, extra: dict) -> None:
    text = (conf / "model" / "tiny-random.yaml").read_text()
    for name, body in extra.items():
        (conf / "model" / f"{name}.yaml").write_text(body if body is not None else
                                                      text.replace("name: tiny-random", f"name: {name}"))


def _sweep(conf, mirror, models: str, *extra: str):
    args = [a for a in single_job(conf, mirror) if not a.startswith("model=")]
    return ["-m", f"model={models}", "analysis.report=false", *args, *extra]


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=local"]], ids=["basic", "local"])
@pytest.mark.slow  # 20-33 s per launcher
def test_a_failing_job_does_not_stop_the_others(isolated_env, tiny_conf, tiny_model_dir, mult_mirror, launcher):
    """The middle job's weights are gone at run time (its config is valid): jobs 0 and 2 still run."""
    import shutil

    # the folder passes the pre-flight (it holds a config.json) and has no weights to load
    (isolated_env / "no-such-weights").mkdir()
    shutil.copy(tiny_model_dir / "config.json", isolated_env / "no-such-weights")
    text = (tiny_conf / "model" / "tiny-random.yaml").read_text()
    broken = text.replace("name: tiny-random", "name: tiny-gone").split("weights:")[0] + \
        f"weights:\n  source: local\n  path: {isolated_env / 'no-such-weights'}\nchat: true\nthink_start: null\n" \
        "think_end: null\nmax_tokens: 12\n"
    _models(tiny_conf, {"tiny-random-b": None, "tiny-gone": broken})
    proc = cogdistill(_sweep(tiny_conf, mult_mirror, "tiny-random,tiny-gone,tiny-random-b", *launcher), isolated_env)
    out = output(proc)
    assert proc.returncode == 2, out
    assert "Traceback" not in out
    assert "1 of 3 job(s) failed" in proc.stdout and "#1 (model=tiny-gone" in proc.stdout
    assert "no-such-weights" in proc.stdout
    client, runs = runs_by_kind()
    # tiny-gone failed loading its weights: its run is FAILED and the parent lists it
    assert sorted((r.data.tags["model"], r.info.status) for r in runs["job"]) == [
        ("tiny-gone", "FAILED"), ("tiny-random", "FINISHED"), ("tiny-random-b", "FINISHED")]
    (parent,) = runs["sweep"]
    assert parent.info.status == "FAILED" and parent.data.tags["cogdistill.failed_jobs"] == "1"
    failed = client.download_artifacts(parent.info.run_id, "failed_jobs.csv")
    assert "tiny-gone" in open(failed).read()
    summary = client.download_artifacts(parent.info.run_id, "sweep_summary.csv")
    assert open(summary).read().count("tiny-random") == 2  # the finished jobs' table is still there


def test_bad_jobs_are_all_named_before_any_job_starts(isolated_env, tiny_conf, mult_mirror):
    """A malformed YAML file and an invalid link, in jobs 1 and 3 of 4: nothing runs, both are named."""
    _models(tiny_conf, {
        "tiny-random-b": None,
        "tiny-malformed": "name: tiny-malformed\nhf_id: [unclosed\n",
        "tiny-student": "name: tiny-student\nhf_id: x/y\nrole: student\nfamily: f\nteacher: tiny-random\n"
                        "base: tiny-nobase\n",
    })
    proc = cogdistill(_sweep(tiny_conf, mult_mirror, "tiny-random,tiny-malformed,tiny-random-b,tiny-student"),
                      isolated_env)
    out = output(proc)
    assert proc.returncode == 2, out
    assert "Traceback" not in out
    assert "2 of 4 job(s) of this sweep cannot run, so none was started" in out
    assert "#1 (model=tiny-malformed" in out and "tiny-malformed.yaml, line 3" in out and "malformed YAML" in out
    assert "#3 (model=tiny-student" in out and "`base: tiny-nobase` names no file" in out
    _, runs = runs_by_kind()
    assert runs == {"job": [], "sweep": []}  # no parent run, no job run
    assert not (isolated_env / "cache" / "generations").exists()


@pytest.mark.slow  # 25 s
def test_a_sweep_of_good_jobs_exits_0_and_its_parent_is_finished(isolated_env, tiny_conf, mult_mirror):
    _models(tiny_conf, {"tiny-random-b": None})
    proc = cogdistill(_sweep(tiny_conf, mult_mirror, "tiny-random,tiny-random-b", "hydra/launcher=local"),
                      isolated_env)
    assert proc.returncode == 0, output(proc)
    _, runs = runs_by_kind()
    assert [r.info.status for r in runs["sweep"]] == ["FINISHED"]
    assert [r.info.status for r in runs["job"]] == ["FINISHED", "FINISHED"]
