"""One of our tasks as an Inspect AI task: a JSON-lines dataset and a task file that runs it
(`inspect eval <out>/<name>_task.py --model <m>`), whose log cogdistill reads back (engine=replay).

Each sample is exactly our prompt as its one user message, our item id as its id (so the import matches
by id, with no mapping) and our target. The task file scores with Inspect's includes() only so the eval
shows a number; the import scores every answer with the task's own scorer.
"""

from __future__ import annotations

import json
import keyword
import re
from pathlib import Path
from typing import List

from cogdistill.tasks.load import Task

TASK_FILE = '''"""Inspect AI task for cogdistill's `{task}` ({n} items), written by `cogdistill-export task={task} to=inspect`.

Run:   inspect eval {py_name} --model <provider/model>   (add --epochs N for N samples per item)
Read:  python -m cogdistill engine=replay engine.path=<the .eval log> model=<m> task=[{task}]
Keep the sample ids: they are cogdistill's item ids, which the import matches on.
"""

from pathlib import Path

from inspect_ai import Task, task
from inspect_ai.dataset import json_dataset
from inspect_ai.scorer import includes
from inspect_ai.solver import generate

DATASET = Path(__file__).resolve().parent / {dataset!r}


@task
def {func}():
    return Task(dataset=json_dataset(str(DATASET)), solver=generate(), scorer=includes())
'''


def identifier(name: str) -> str:
    """A task name as a Python identifier (game-of-24 -> game_of_24): the @task function's name."""
    ident = re.sub(r"\W", "_", name)
    if not ident or ident[0].isdigit() or keyword.iskeyword(ident):
        ident = f"task_{ident}"
    return ident


def write(task: Task, out: Path) -> List[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    func = identifier(task.name)
    dataset = out / f"{task.name}.jsonl"
    py = out / f"{func}_task.py"
    ids, targets, prompts = task.items["item_id"].to_list(), task.items["target"].to_list(), task.prompts()
    with dataset.open("w", encoding="utf-8") as f:
        for item_id, prompt, target in zip(ids, prompts, targets):
            row = {"id": item_id, "input": prompt, "target": "" if target is None else str(target),
                   "metadata": {"item_id": item_id}}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    py.write_text(TASK_FILE.format(task=task.name, n=len(ids), py_name=py.name, dataset=dataset.name, func=func),
                  encoding="utf-8")
    return [dataset, py]
