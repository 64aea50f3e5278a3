"""Training data from a study: the teacher's traces on training items (SFT), or the training
items' prompts with their targets (RL). Prompts are rendered exactly as the evaluation renders
them for the base model (its chat template), so the student is trained on what it will see.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import polars as pl

from cogdistill.config.schema import ModelConfig
from cogdistill.errors import CogdistillError
from cogdistill.tasks.load import Task
from cogdistill.tracking import run_format as rf

SFT_COLUMNS = ["task", "item_id", "prompt", "completion", "target", "teacher_run"]
RL_COLUMNS = ["task", "item_id", "prompt", "target", "scorer"]


class TrainDataError(CogdistillError):
    pass


def teacher_traces(client, experiment_id: str, teacher: str, task: Task) -> Tuple[pl.DataFrame, str]:
    """The `traces/<task>.parquet` of the teacher's newest finished job run that covers training
    items of `task` (a newer run over held-out items only is passed over), and that run's id."""
    runs = client.search_runs([experiment_id], rf.job_filter(model=teacher), max_results=500,
                              order_by=["attributes.start_time DESC"])
    wanted = set(task.items["item_id"])
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            if task.name not in rf.run_tasks(run):
                continue
            rf.check_readable(run)  # run format 1 (no version tag) and 2 read alike
            local = client.download_artifacts(run.info.run_id, rf.trace_file(task.name), tmp)
            traces = pl.read_parquet(local)
            if traces["item_id"].is_in(list(wanted)).any():
                return traces.filter(pl.col("item_id").is_in(list(wanted))), run.info.run_id
    raise TrainDataError(
        f"no finished run of teacher '{teacher}' on task '{task.name}' covers its training items in this study's "
        f"MLflow experiment. Run the teacher first: python -m cogdistill model={teacher} task=[{task.name}] "
        f"task.{task.name}.items_split=train (with the same study= and sampling settings).")


def completion_text(reasoning: Optional[str], answer: Optional[str], think_start: Optional[str],
                    think_end: Optional[str]) -> str:
    """The teacher's whole response. Reasoning a server returned apart (no tags in the text) is
    put back between the teacher's think tags, so the student learns the format it is read with."""
    reasoning, answer = reasoning or "", answer or ""
    if think_end and reasoning and think_end not in reasoning:
        return f"{think_start or ''}{reasoning}{think_end}{answer}"
    return reasoning + answer


def sft_frame(tasks: List[Task], traces: Dict[str, Tuple[pl.DataFrame, str]], render: Callable[[str], str],
              teacher: ModelConfig, correct_only: bool) -> pl.DataFrame:
    rows = []
    for task in tasks:
        frame, run_id = traces[task.name]
        if correct_only:
            frame = frame.filter(pl.col("correct").fill_null(False) & ~pl.col("censored").fill_null(False))
        targets = dict(zip(task.items["item_id"], task.items["target"]))
        prompts = dict(zip(task.items["item_id"], task.prompts()))
        for row in frame.sort("item_id", "sample_idx").iter_rows(named=True):
            rows.append({"task": task.name, "item_id": row["item_id"], "prompt": render(prompts[row["item_id"]]),
                         "completion": completion_text(row["reasoning_text"], row["answer_text"],
                                                       teacher.think_start, teacher.think_end),
                         "target": str(targets[row["item_id"]]), "teacher_run": run_id})
    if not rows:
        raise TrainDataError(
            f"no {'correct, uncensored ' if correct_only else ''}teacher traces on the training items of "
            f"{[t.name for t in tasks]}: nothing to imitate. Use more items (task.<name>.split_k, max_items), a "
            "larger sampling.max_tokens for the teacher, or correct_only=false.")
    return pl.DataFrame(rows, schema={c: pl.Utf8 for c in SFT_COLUMNS})


def rl_frame(tasks: List[Task], render: Callable[[str], str]) -> pl.DataFrame:
    rows = [{"task": t.name, "item_id": item_id, "prompt": render(prompt), "target": str(target),
             "scorer": t.config.scorer}
            for t in tasks for item_id, target, prompt in zip(t.items["item_id"], t.items["target"], t.prompts())]
    return pl.DataFrame(rows, schema={c: pl.Utf8 for c in RL_COLUMNS})


def split_note(tasks: List[Task]) -> Dict[str, str]:
    """The split, stated per task (params of the training run, notes of the registered model)."""
    return {t.name: f"train = sha256(item_id) % {t.config.split_k} == 0 ({t.items.height} items used); "
                    f"evaluate with task.{t.name}.items_split=heldout" for t in tasks}


def write_dataset(frame: pl.DataFrame, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(folder / f"{name}.parquet")
    return folder / f"{name}.parquet"
