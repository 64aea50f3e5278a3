"""cogdistill's end-to-end generation vs bare engine scripts, on the same prompts, side by side.

For each engine: the bare script (benchmarks/bare_<engine>.py, its own process) and
`python -m cogdistill engine=<engine>` with an empty generation cache, then the same job again
with the cache full. Prints throughput ratios (cogdistill / bare) and the cached re-run as a
fraction of the first run; writes benchmarks/results/engines.json.

usage: python benchmarks/engines.py [--model demo-smollm2-135m] [--items 60] [--max-tokens 256]
                                    [--engines transformers,vllm]
Needs the human-data mirror (COGDISTILL_DATA_MIRROR) and the model's weights (make setup).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def render_prompts(model: str, items: int, cache: Path) -> tuple[Path, str]:
    """The rendered prompts cogdistill will send, and the converted weights folder."""
    sys.path.insert(0, str(REPO))
    from hydra import compose, initialize_config_dir

    from cogdistill.config.schema import CONF_DIR, cache_dir
    from cogdistill.config.validate import register_schemas, validate
    from cogdistill.engines.tokenizer import ModelTokenizer
    from cogdistill.tasks.load import load_task
    from cogdistill.engines.weights import resolve_weights

    register_schemas()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        job = validate(compose("config", [f"model={model}", f"task.multiplication.max_items={items}"]))
    task = load_task(job.task["multiplication"], mirror=job.data.mirror, cache=cache_dir(job), timeout_s=60)
    weights = resolve_weights(job.model, cache_dir(job))
    tok = ModelTokenizer(job.model, weights)
    out = cache / "prompts.json"
    out.write_text(json.dumps([tok.render(p) for p in task.prompts()]))
    return out, weights.path


def run_json(cmd: list[str], env: dict) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cogdistill_job(engine: str, model: str, items: int, max_tokens: int, env: dict) -> dict:
    began = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "cogdistill", f"model={model}", f"engine={engine}", "tracking.enabled=false",
         f"task.multiplication.max_items={items}", f"model.max_tokens={max_tokens}", "analysis.bootstrap=200"],
        capture_output=True, text=True, env=env, cwd=env["BENCH_TMP"])
    wall = time.perf_counter() - began
    if proc.returncode:
        raise SystemExit(f"cogdistill engine={engine} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    line = next(l for l in proc.stdout.splitlines() if l.startswith("generation:") or "cache:" in l)
    gen_s = tokens = None
    for l in proc.stdout.splitlines():
        if l.startswith("generation:"):  # "generation: N tokens in S s (R tok/s)"
            parts = l.split()
            tokens, gen_s = int(parts[1]), float(parts[4])
    return {"wall_s": wall, "gen_s": gen_s, "tokens": tokens, "summary": line}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="demo-smollm2-135m")
    ap.add_argument("--items", type=int, default=60)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--engines", default="transformers,vllm")
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    console = Console()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        prompts, weights = render_prompts(args.model, args.items, tmp_path)
        for engine in args.engines.split(","):
            env = {**os.environ, "COGDISTILL_CACHE_DIR": str(tmp_path / f"cache-{engine}"), "BENCH_TMP": tmp,
                   "COGDISTILL_OUTPUT_DIR": str(tmp_path / "outputs")}
            # the converted weights are reused, not converted again, in the fresh cache
            (tmp_path / f"cache-{engine}" / "models").mkdir(parents=True)
            os.symlink(weights, tmp_path / f"cache-{engine}" / "models" / Path(weights).name)
            console.print(f"[bold]{engine}[/]: bare script ...")
            if engine == "transformers":
                bare = run_json([sys.executable, str(HERE / "bare_transformers.py"), weights, str(prompts),
                                 str(args.max_tokens), "16"], env)
            else:
                bare = run_json([sys.executable, str(HERE / "bare_vllm.py"), weights, str(prompts),
                                 str(args.max_tokens), "float32"], env)
            console.print(f"[bold]{engine}[/]: cogdistill, empty cache ...")
            first = cogdistill_job(engine, args.model, args.items, args.max_tokens, env)
            console.print(f"[bold]{engine}[/]: cogdistill, full cache ...")
            cached = cogdistill_job(engine, args.model, args.items, args.max_tokens, env)
            results.append({
                "engine": engine, "bare": bare, "cogdistill": first, "cached": cached,
                "bare_tok_s": bare["tokens"] / bare["gen_s"], "cogdistill_tok_s": first["tokens"] / first["gen_s"],
                "throughput_ratio": (first["tokens"] / first["gen_s"]) / (bare["tokens"] / bare["gen_s"]),
                "wall_ratio_bare_over_cogdistill": bare["wall_s"] / first["wall_s"],
                "cached_fraction": cached["wall_s"] / first["wall_s"],
            })
    table = Table(title=f"{args.model}, {args.items} multiplication prompts, greedy, max_tokens {args.max_tokens}, float32")
    for col in ("engine", "bare tok/s", "cogdistill tok/s", "throughput ratio", "bare wall s", "cogdistill wall s",
                "cached re-run s", "cached / first"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(r["engine"], f"{r['bare_tok_s']:.1f}", f"{r['cogdistill_tok_s']:.1f}",
                      f"{r['throughput_ratio']:.2f}", f"{r['bare']['wall_s']:.1f}", f"{r['cogdistill']['wall_s']:.1f}",
                      f"{r['cached']['wall_s']:.1f}", f"{r['cached_fraction']:.1%}")
    console.print(table)
    out = HERE / "results" / "engines.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    console.print(f"written {out}")


if __name__ == "__main__":
    main()
