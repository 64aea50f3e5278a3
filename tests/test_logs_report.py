"""From harness logs to the report: a simulated study's traces written as batch-API outputs (one log
per model and task, as a harness writes them) give the same report as the same traces given as
cogdistill trace records, through the real command line."""

import json
import os
import subprocess
import sys

import polars as pl
import pytest

pytestmark = pytest.mark.slow


def batch_line(row) -> dict:
    """One OpenAI Batch API output line (its body checked by the openai SDK): the provider's reasoning
    count, and a one-token answer the task's integer scorer reads as the simulated verdict."""
    from openai.types.chat import ChatCompletion

    cost = int(row["reasoning_tokens"])
    body = {"id": "c", "object": "chat.completion", "created": 1, "model": row["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": "1" if row["correct"] else "0"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": cost + 1, "total_tokens": cost + 6,
                      "completion_tokens_details": {"reasoning_tokens": cost}}}
    ChatCompletion.model_validate(body)
    return {"id": f"b-{row['item_id']}", "custom_id": row["item_id"], "error": None,
            "response": {"status_code": 200, "request_id": "r", "body": body}}


def sweep(root, inputs, path: str, models) -> dict:
    root.mkdir(parents=True)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'store.db'}",
           "COGDISTILL_CACHE_DIR": str(root / "cache"), "COGDISTILL_OUTPUT_DIR": str(root / "outputs")}
    common = [f"hydra.searchpath=[file://{inputs.conf_dir}]", f"data.mirror={inputs.mirror}"]
    proc = subprocess.run([sys.executable, "-m", "cogdistill", "-m", "engine=replay", f"engine.path={path}",
                           f"model={','.join(models)}", f"task=[{','.join(inputs.tasks)}]", *common,
                           "analysis.bootstrap=50", "analysis.report=false", "study=logs"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rep = subprocess.run([sys.executable, "-m", "cogdistill.report", "--experiment", "logs", "--parent", "latest",
                          "--out", str(root / "report"), "--no-figures", "--bootstrap", "50"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stdout[-3000:] + rep.stderr[-3000:]
    return {"stdout": proc.stdout, **json.loads((root / "report" / "report.json").read_text())}


def test_a_report_from_batch_logs_equals_the_report_from_the_same_trace_records(tmp_path):
    from cogdistill.report.synthetic import simulate, write_replay_inputs

    inputs = write_replay_inputs(simulate(n_models=4, n_tasks=2, n_items=40, n_samples=1, seed=11), tmp_path / "in")
    traces = pl.read_parquet(inputs.traces)
    for (model, task), rows in traces.group_by("model", "task"):
        folder = tmp_path / "logs" / model
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{task}.jsonl").write_text("".join(json.dumps(batch_line(r)) + "\n"
                                                      for r in rows.iter_rows(named=True)))
    # the same generations as trace records: the answer, its one token, where the count came from
    records = traces.with_columns(answer_tokens=pl.lit(1, pl.Int64), cost_source=pl.lit("provider"),
                                  answer_text=pl.when(pl.col("correct")).then(pl.lit("1")).otherwise(pl.lit("0")))
    records.drop("correct").write_parquet(tmp_path / "records.parquet")

    from_logs = sweep(tmp_path / "a", inputs, f'"{tmp_path}/logs/${{model.name}}/{{task}}.jsonl"', inputs.models)
    from_records = sweep(tmp_path / "b", inputs, str(tmp_path / "records.parquet"), inputs.models)

    assert "openai-batch log of" in from_logs["stdout"] and "40 matched 40 of the 40 items" in from_logs["stdout"]
    assert "reasoning cost from provider (40)" in from_logs["stdout"]
    import sqlite3  # each job run records its import (run format: task.<task>.import)

    with sqlite3.connect(tmp_path / "a" / "store.db") as con:
        params = con.execute("SELECT key, value FROM params WHERE key LIKE 'task.%.import'").fetchall()
    assert len(params) == len(inputs.models) * len(inputs.tasks)
    assert all("openai-batch log of" in value and "40 matched 40" in value for _, value in params)
    for key in ("alignment", "roles", "families"):
        assert from_logs[key] == from_records[key], key
    assert len(from_logs["alignment"]) == len(inputs.models) * len(inputs.tasks)


def run_cli(module, args, cwd, **env):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **env})


def test_a_log_cut_short_exits_2_with_one_line_and_imports_nothing(isolated_env):
    """Through the real command line: exit 2, one message naming the file and the line, no traceback."""
    from cogdistill.report.synthetic import simulate, write_replay_inputs

    inputs = write_replay_inputs(simulate(n_models=1, n_tasks=1, n_items=10, seed=2), isolated_env / "in")
    rows = pl.read_parquet(inputs.traces).iter_rows(named=True)
    text = "".join(json.dumps(batch_line(r)) + "\n" for r in rows)
    log = isolated_env / "cut.jsonl"
    log.write_text(text[:-25])
    proc = run_cli("cogdistill", ["engine=replay", f"engine.path={log}", f"model={inputs.models[0]}",
                                  f"task=[{inputs.tasks[0]}]", f"hydra.searchpath=[file://{inputs.conf_dir}]",
                                  f"data.mirror={inputs.mirror}"], isolated_env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cut.jsonl: line 10 is not valid JSON" in errors[0] and "Traceback" not in out
    assert "part-way" in out


def test_the_export_command_writes_both_harnesses_files_and_refuses_bad_input(tmp_path):
    from helpers.data import real_mirror

    mirror = real_mirror()
    if mirror is None:
        pytest.skip("the reference-data mirror (../shared/reference-data or COGDISTILL_DATA_MIRROR) is absent")
    args = ["task=game-of-24", "task.game-of-24.max_items=4", f"data.mirror={mirror}"]
    for target in ("inspect", "lm-eval"):
        proc = run_cli("cogdistill.export", [*args, f"to={target}", f"out={tmp_path / target}"], tmp_path,
                       COGDISTILL_CACHE_DIR=str(tmp_path / "cache"))
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "task 'game-of-24' (4 items) written for " + target in proc.stdout
        jsonl = sorted((tmp_path / target).rglob("*.jsonl"))
        assert len(jsonl) == 1 and len(jsonl[0].read_text().splitlines()) == 4
    bad = run_cli("cogdistill.export", [*args, "to=helm"], tmp_path)
    assert bad.returncode == 2 and "to=helm: name the harness to write for, one of inspect, lm-eval" in bad.stdout
