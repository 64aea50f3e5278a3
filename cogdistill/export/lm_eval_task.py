"""A task written out as an lm-evaluation-harness task folder: `<out>/<task>/<task>.yaml` +
`<task>.jsonl`, run with `lm_eval --include_path <out> --tasks <task> --log_samples --output_path ...`.

Each JSONL row is one item in our order, so lm-eval's doc_id (the row index) follows our items, and
the row carries `item_id`: the lm-eval log reader (cogdistill.traces.logs.lm_eval_log) takes the
doc's `item_id` as the sample's id, so the log comes back with no id mapping. `doc_to_text` names the
`prompt` field, which lm-eval then sends verbatim (a field name is not rendered as a template).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import List

from cogdistill.errors import CogdistillError
from cogdistill.tasks.load import Task

# lm-eval finds tasks by the `task:` name and writes samples_<task>_<date>.jsonl: keep to characters
# that are safe in both (our task names use letters, digits, dashes and underscores)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# reasoning models need room: lm-eval's default (256 tokens) cuts nearly every reasoning trace
MAX_GEN_TOKS = 32768


class ExportError(CogdistillError, ValueError):
    """A task that cannot be written as an lm-eval task; the message names the task and the fix."""


def write(task: Task, out: Path) -> List[Path]:
    if not _NAME.match(task.name):
        raise ExportError(f"task {task.name!r}: lm-eval task names may hold only letters, digits, '-', '_' and "
                          "'.': rename the task config.")
    folder = Path(out) / task.name
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{task.name}.jsonl"
    prompts = task.prompts()
    ids = [str(x) for x in task.items["item_id"].to_list()]
    targets = ["" if t is None else str(t) for t in task.items["target"].to_list()]
    with data.open("w", encoding="utf-8") as f:
        for item_id, prompt, target in zip(ids, prompts, targets, strict=True):
            f.write(json.dumps({"item_id": item_id, "prompt": prompt, "target": target}, ensure_ascii=False) + "\n")
    spec = folder / f"{task.name}.yaml"
    spec.write_text(_yaml(task.name, data.resolve()), encoding="utf-8")
    return [spec, data]


def _yaml(name: str, data: Path) -> str:
    # JSON is YAML: json.dumps quotes the name and path safely whatever characters they hold
    return f"""\
# Written by cogdistill-export from the cogdistill task {name}. Run:
#   lm_eval --model <backend> --model_args pretrained=<model> --include_path <this folder's parent> \\
#     --tasks {name} --log_samples --output_path <dir>
# and read the log back: python -m cogdistill engine=replay engine.path=<dir>/<model>/samples_{name}_<date>.jsonl \\
#     model=<m> task=[{name}]
# Keep the reasoning in the log: do not set think_end_token in --model_args (lm-eval strips the reasoning
# then, and the log can no longer give a reasoning count). Sampling: --gen_kwargs temperature=0.6,... ;
# several samples per item: set `repeats: N` below.
# data_files is an absolute path: export again if this folder moves.
task: {json.dumps(name)}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {json.dumps(str(data))}
test_split: test
output_type: generate_until
doc_to_text: prompt
doc_to_target: target
target_delimiter: ""
num_fewshot: 0
repeats: 1
generation_kwargs:
  until: []
  max_gen_toks: {MAX_GEN_TOKS}
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""
