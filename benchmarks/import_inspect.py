"""Import time of an Inspect AI log of 10,000 samples (issue 25's figure).

    python benchmarks/import_inspect.py [--samples 10000] [--chars 4000] [--format eval|json] [--repeat 3]

inspect_ai itself writes one small log (mockllm with scripted outputs: ContentReasoning of --chars
characters, about 1,000 tokens, + ModelUsage); its samples are replicated with new ids to --samples and
the log is re-written by inspect_ai.log's own write_eval_log (10,000 generate() calls through eval()
would time Inspect, not the import). Times cogdistill.traces.logs.inspect_log.read; prints the median of
--repeat reads and writes benchmarks/results/import_inspect_<format>.json. Offline.
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


def small_log(tmp: Path, chars: int) -> Path:
    from inspect_ai import Task, eval as inspect_eval
    from inspect_ai.dataset import Sample
    from inspect_ai.model import (ChatCompletionChoice, ChatMessageAssistant, ContentReasoning, ContentText,
                                  ModelOutput, ModelUsage, get_model)
    from inspect_ai.scorer import includes
    from inspect_ai.solver import generate

    def answer(input, tools, tool_choice, config):
        message = ChatMessageAssistant(content=[ContentReasoning(reasoning=("step " * chars)[:chars]),
                                                ContentText(text="Answer: 4*6*1*1 = 24")])
        return ModelOutput(model="mockllm/model", choices=[ChatCompletionChoice(message=message, stop_reason="stop")],
                           usage=ModelUsage(input_tokens=60, output_tokens=1010, total_tokens=1070,
                                            reasoning_tokens=1000))

    task = Task(dataset=[Sample(id=f"{i:05d}", input=f"Use the numbers 1 1 4 {i} to obtain 24.", target="24")
                         for i in range(3)], solver=generate(), scorer=includes())
    logs = inspect_eval(task, model=get_model("mockllm/model", custom_outputs=answer), log_dir=str(tmp / "small"),
                        display="none")
    return Path(logs[0].location)


def big_log(small: Path, out: Path, n: int, fmt: str) -> Path:
    from inspect_ai.log import read_eval_log, write_eval_log

    log = read_eval_log(str(small))
    template = log.samples[0]
    samples = [template.model_copy(update={"id": f"{i:05d}", "uuid": f"bench-{i}",
                                           "input": f"Use the numbers 1 1 4 {i} to obtain 24."}) for i in range(n)]
    ids = [s.id for s in samples]
    dataset = log.eval.dataset.model_copy(update={"samples": n, "sample_ids": ids})
    log = log.model_copy(update={"samples": samples, "eval": log.eval.model_copy(update={"dataset": dataset}),
                                 "results": log.results.model_copy(update={"total_samples": n,
                                                                           "completed_samples": n})})
    path = out / f"bench.{fmt}"
    write_eval_log(log, str(path), format=fmt)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--chars", type=int, default=4000)
    ap.add_argument("--format", choices=["eval", "json"], default="eval")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("INSPECT_DISPLAY", "none")
    sys.path.insert(0, str(REPO))
    from cogdistill.traces.logs.inspect_log import read

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        path = big_log(small_log(tmp, args.chars), tmp, args.samples, args.format)
        built = time.perf_counter() - t0
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            log = read(path)
            times.append(time.perf_counter() - t0)
        assert len(log.samples) == args.samples and log.samples[-1].reasoning_tokens == 1000
        result = {"samples": args.samples, "chars": args.chars, "format": args.format,
                  "bytes": path.stat().st_size, "read_s": times, "median_s": statistics.median(times),
                  "build_s": built}
    print(f"inspect .{args.format} log, {args.samples:,} samples ({result['bytes'] / 2**20:.1f} MiB): "
          f"read() median {result['median_s']:.2f} s over {args.repeat} ({', '.join(f'{t:.2f}' for t in times)})")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"import_inspect_{args.format}.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
