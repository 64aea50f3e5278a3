"""A fully cached task's trace frame, kept beside the generation cache: a re-run whose generations
are all cached needs neither the model nor its tokenizer (rendering the prompts and counting the
tokens of 60 cached generations costs a transformers import, most of a cached job's time).

An entry is keyed by everything the frame is derived from: the generation cache's own identity
(weights, engine and version, sampling, budget, effort), the model config (chat template use,
protocol, markers), the task (its config and its item table's content), the job's model label,
and the source of cogdistill itself (any code change misses). It holds the frame and the keys of
the generations it came from; it is used only while every one of those generations is still in
the generation cache, so deleting a generation still regenerates it. Written atomically; an
unreadable entry is a miss.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, List, Optional, Tuple

import polars as pl

FORMAT = 1
_CODE: Optional[str] = None


def code_digest() -> str:
    """A digest of cogdistill's Python source: the trace rows' derivation lives in it."""
    global _CODE
    if _CODE is None:
        root = Path(__file__).resolve().parents[1]
        digest = hashlib.sha256()
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
        _CODE = digest.hexdigest()
    return _CODE


def task_key(*, generation_identity: dict, model: Any, plan: Any, label: str, task: Any) -> str:
    fields = {
        "format": FORMAT, "code": code_digest(), "generations": generation_identity, "label": label,
        "model": dataclasses.asdict(model), "plan": dataclasses.asdict(plan), "task": repr(task.config),
        "items": hashlib.sha256(task.items.write_csv().encode()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


class TaskTraceCache:
    def __init__(self, root: Path):
        self.root = root / "task-traces"

    def _paths(self, key: str) -> Tuple[Path, Path]:
        base = self.root / key[:2] / key
        return base.with_suffix(".parquet"), base.with_suffix(".json")

    def get(self, key: str) -> Optional[Tuple[pl.DataFrame, List[str]]]:
        """(frame, the generation keys it came from), or None."""
        frame_path, keys_path = self._paths(key)
        try:
            keys = json.loads(keys_path.read_text())["generations"]
            return pl.read_parquet(frame_path), list(keys)
        except FileNotFoundError:
            return None
        except Exception:  # noqa: BLE001 - a damaged entry is a miss, rewritten by the next put()
            return None

    def put(self, key: str, frame: pl.DataFrame, generation_keys: List[str]) -> None:
        """Best effort: a cache that cannot be written costs the next re-run time, never this job."""
        frame_path, keys_path = self._paths(key)
        try:
            frame_path.parent.mkdir(parents=True, exist_ok=True)
            for path, write in ((frame_path, frame.write_parquet),
                                (keys_path, lambda p: Path(p).write_text(json.dumps({"generations": generation_keys})))):
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
                os.close(fd)
                try:
                    write(tmp)
                    os.replace(tmp, path)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
        except OSError:
            pass
