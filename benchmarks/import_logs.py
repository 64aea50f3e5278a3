"""The whole import of a 10,000-sample harness log (issue 25's figure): read, match to the task's
items (an id map: 10,000 samples over game-of-24's 1,362 puzzles, about 7 each), choose each cost,
count and score, side by side for an Inspect .eval log, an lm-eval samples file and a batch output.

    python benchmarks/import_logs.py [--samples 10000] [--chars 4000]

The logs are those of benchmarks/import_inspect.py and import_lm_eval.py (written by inspect_ai and
lm-eval themselves, replicated to --samples). Counting uses a whitespace tokenizer (a real one is a
Rust call per text: comparable). Needs the data mirror (COGDISTILL_DATA_MIRROR or ../shared/reference-data).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


class WordTokenizer:
    def encode(self, text, add_special_tokens=False):
        return list(range(len(text.split())))

    def decode(self, ids, skip_special_tokens=True):
        return " ".join("w" for _ in ids)


def batch_log(path: Path, n: int, chars: int) -> Path:
    with path.open("w") as fh:
        for i in range(n):
            body = {"id": "c", "object": "chat.completion", "created": 1, "model": "o3",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "reasoning": "step " * (chars // 5),
                                             "content": "Answer: 4*6*1*1 = 24"}}],
                    "usage": {"prompt_tokens": 60, "completion_tokens": 1010, "total_tokens": 1070,
                              "completion_tokens_details": {"reasoning_tokens": 1000}}}
            fh.write(json.dumps({"id": f"b{i}", "custom_id": f"r{i:05d}", "error": None,
                                 "response": {"status_code": 200, "request_id": "x", "body": body}}) + "\n")
    return path


def id_map(path: Path, log_ids, items) -> Path:
    path.write_text("log_id,item_id\n" + "".join(f"{log_id},{items[k % len(items)]}\n"
                                                 for k, log_id in enumerate(log_ids)))
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--chars", type=int, default=4000)
    args = ap.parse_args()
    for k, v in {"INSPECT_DISPLAY": "none", "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}.items():
        os.environ.setdefault(k, v)
    sys.path[:0] = [str(REPO), str(HERE)]
    import import_inspect
    import import_lm_eval

    from cogdistill.config.compose import compose_main
    from cogdistill.config.schema import ModelConfig, ReplayEngineConfig, Role
    from cogdistill.registry import LOG_FORMATS
    from cogdistill.tasks.load import load_task
    from cogdistill.traces.replay import load_traces

    mirror = os.environ.get("COGDISTILL_DATA_MIRROR") or str(REPO.parent / "shared" / "reference-data")
    model = ModelConfig(name="bench", hf_id="-", role=Role.control, family="-", think_start="<think>",
                        think_end="</think>")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.environ["HF_DATASETS_CACHE"] = str(tmp / "hf")
        task = load_task(compose_main(["task=[game-of-24]"]).task["game-of-24"], mirror=mirror, cache=tmp / "c",
                         timeout_s=30)
        items = task.items["item_id"].to_list()
        inspect_path = import_inspect.big_log(import_inspect.small_log(tmp, args.chars), tmp, args.samples, "eval")
        lm_eval_path = import_lm_eval.lm_eval_samples(tmp / "lm")
        import_lm_eval.replicate(lm_eval_path, args.samples, args.chars)
        logs = {"inspect": inspect_path, "lm-eval": lm_eval_path,
                "openai-batch": batch_log(tmp / "batch.jsonl", args.samples, args.chars)}
        for fmt, path in logs.items():
            began = time.perf_counter()
            log = LOG_FORMATS.load(fmt)(path)
            read_s = time.perf_counter() - began
            mapping = id_map(tmp / f"{fmt}.csv", [s.log_id for s in log.samples], items)
            began = time.perf_counter()
            frame, _ = load_traces(path, task, model, WordTokenizer(), settings=ReplayEngineConfig(id_map=str(mapping)))
            total_s = time.perf_counter() - began
            assert frame.height == args.samples, frame.height
            rows.append({"format": fmt, "samples": args.samples, "mib": round(path.stat().st_size / 2 ** 20, 1),
                         "read_s": round(read_s, 2), "import_s": round(total_s, 2),
                         "cost_source": frame["cost_source"].value_counts().rows()})
    print(f"{'format':<14}{'samples':>9}{'MiB':>8}{'read() s':>10}{'whole import s':>16}  cost_source")
    for r in rows:
        print(f"{r['format']:<14}{r['samples']:>9,}{r['mib']:>8}{r['read_s']:>10}{r['import_s']:>16}  {r['cost_source']}")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "import_logs.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
