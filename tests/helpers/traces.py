"""Hand-made traces: a one-token-per-character tokenizer, replay records and files, loading them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Sequence

import polars as pl

from cogdistill.config.schema import ModelConfig, Role

IDS = ["2x3", "3x4", "4x6", "6x7", "7x8", "8x9"]  # the mult_mirror items, sorted


class CharTokenizer:
    """One token per character: token counts can be checked by eye."""

    def encode(self, text: str, add_special_tokens: bool = False) -> List[int]:
        return [ord(c) for c in text]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(i) for i in ids)


def model(name="m1", think=True) -> ModelConfig:
    return ModelConfig(name=name, hf_id=f"local/{name}", role=Role.control, family="test",
                       think_start="<think>" if think else None, think_end="</think>" if think else None)


def write(path: Path, rows) -> Path:
    """Replay records as a parquet file or (any other suffix) one JSON object per line."""
    if path.suffix == ".parquet":
        pl.DataFrame(rows).write_parquet(path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def counts(item, r, a=3, **kw):
    return {"item_id": item, "reasoning_tokens": r, "answer_tokens": a, **kw}


def replay(path, task_, m=None):
    """The records at path loaded for task_ without a tokenizer."""
    from cogdistill.traces.replay import load_traces

    return load_traces(path, task_, m or model(), None)
