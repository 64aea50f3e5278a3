"""Import time of an lm-evaluation-harness samples file of 10,000 docs (issue 25's figure).

    python benchmarks/import_lm_eval.py [--docs 10000] [--chars 4000] [--repeat 3]

lm-eval itself writes one small samples file (the game-of-24 task exported by cogdistill-export, a
scripted model registered with lm-eval, simple_evaluate + EvaluationTracker as the CLI runs them);
its rows are then replicated with new doc_ids and item_ids to --docs rows, each response padded to
--chars characters (a reasoning trace of about 1,000 tokens). Times
cogdistill.traces.logs.lm_eval_log.read on that file; prints the median of --repeat reads and writes
benchmarks/results/import_lm_eval.json. Needs the data mirror (COGDISTILL_DATA_MIRROR or
../shared/reference-data) and runs offline.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ITEMS = 5


def lm_eval_samples(tmp: Path) -> Path:
    """A samples file written by lm-eval on the exported game-of-24 task (ITEMS docs)."""
    from cogdistill.config.compose import compose_main
    from cogdistill.export.lm_eval_task import write
    from cogdistill.tasks.load import load_task
    from lm_eval import simple_evaluate
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    @register_model("cogdistill-bench-scripted")
    class Scripted(LM):
        def generate_until(self, requests):
            return [f"<think>step {i}</think>\nAnswer: 24" for i, _ in enumerate(requests)]

        def loglikelihood(self, requests):
            raise NotImplementedError

        def loglikelihood_rolling(self, requests):
            raise NotImplementedError

    mirror = os.environ.get("COGDISTILL_DATA_MIRROR") or str(REPO.parent / "shared" / "reference-data")
    job = compose_main(["task=[game-of-24]", f"task.game-of-24.max_items={ITEMS}"])
    task = load_task(job.task["game-of-24"], mirror=mirror, cache=tmp / "cache", timeout_s=30)
    write(task, tmp / "exports")
    tracker = EvaluationTracker(output_path=str(tmp / "logs"))
    results = simple_evaluate(model=Scripted(), model_args="pretrained=org/bench-r1", tasks=["game-of-24"],
                              task_manager=TaskManager(include_path=str(tmp / "exports"), include_defaults=False),
                              log_samples=True, evaluation_tracker=tracker, bootstrap_iters=0)
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    tracker.save_results_samples(task_name="game-of-24", samples=samples["game-of-24"])
    (found,) = (tmp / "logs").glob("*/samples_*.jsonl")
    return found


def replicate(samples: Path, docs: int, chars: int) -> None:
    """The file grown to `docs` rows: lm-eval's own rows, cycled, with new ids and padded responses."""
    rows = [json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines()]
    with samples.open("w", encoding="utf-8") as f:
        for i in range(docs):
            row = json.loads(json.dumps(rows[i % len(rows)]))
            row["doc_id"] = i
            row["doc"]["item_id"] = f"b{i:05d}"
            row["resps"] = [[text[:-len("</think>\nAnswer: 24")].ljust(chars - 19, "x") + "</think>\nAnswer: 24"
                             for text in row["resps"][0]]]
            row["filtered_resps"] = [row["resps"][0][0]]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=10_000)
    ap.add_argument("--chars", type=int, default=4000, help="characters per response")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(REPO))
    from cogdistill.traces.logs.lm_eval_log import read

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.environ["HF_DATASETS_CACHE"] = str(tmp / "hf-datasets")
        samples = lm_eval_samples(tmp)
        replicate(samples, args.docs, args.chars)
        size = samples.stat().st_size
        seconds = []
        for _ in range(args.repeat):
            began = time.perf_counter()
            log = read(samples)
            seconds.append(time.perf_counter() - began)
        assert len(log.samples) == args.docs and log.model == "org/bench-r1"
    out = {"docs": args.docs, "chars_per_response": args.chars, "file_mb": round(size / 2 ** 20, 1),
           "read_s": seconds, "median_s": statistics.median(seconds)}
    print(json.dumps(out))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "import_lm_eval.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
