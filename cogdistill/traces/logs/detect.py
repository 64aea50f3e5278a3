"""engine.format=auto: which reader a file needs, told from its name and its first bytes (no reader
module is imported to decide)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from cogdistill.traces.logs.base import LogFormatError

HELM_FILES = ("scenario_state.json", "per_instance_stats.json")


def detect(path: Path) -> str:
    """The LOG_FORMATS name for path ("records" for cogdistill's own trace records)."""
    if path.is_dir():
        if (path / HELM_FILES[0]).is_file():
            return "helm"
        raise LogFormatError(f"{path} is a folder: engine.path takes a file (trace records or a harness log), or a "
                             f"HELM run folder holding {HELM_FILES[0]}.")
    name, suffix = path.name.lower(), path.suffix.lower()
    if suffix == ".eval":
        return "inspect"
    if name in HELM_FILES:
        return "helm"
    if suffix == ".parquet":
        return _parquet_format(path)
    if suffix == ".json":
        return "inspect" if _looks_like_inspect_json(path) else "records"
    if suffix == ".jsonl":
        keys = _first_keys(path)
        if "item_id" in keys:
            return "records"
        if "custom_id" in keys:
            return "openai-batch"
        if "doc_id" in keys and ("resps" in keys or "arguments" in keys or name.startswith("samples_")):
            return "lm-eval"
    return "records"


def _parquet_format(path: Path) -> str:
    import pyarrow.parquet as pq

    try:
        columns = set(pq.read_schema(path).names)
    except Exception:  # noqa: BLE001 - a damaged file: the records reader names it
        return "records"
    if "item_id" not in columns and ("model_response" in columns or {"example", "predictions"} <= columns
                                     or {"full_prompt", "predictions"} <= columns):
        return "lighteval"
    return "records"


def _head(path: Path, size: int = 4096) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read(size).decode("utf-8", errors="replace")
    except OSError as exc:
        raise LogFormatError(f"{path}: cannot be read ({exc}).") from exc


def _looks_like_inspect_json(path: Path) -> bool:
    head = _head(path)
    # an Inspect log is one JSON object whose first keys are version, status, eval (inspect_ai.log's EvalLog)
    return re.match(r'\s*\{\s*"version"\s*:\s*\d', head) is not None and '"eval"' in head


def _first_keys(path: Path) -> set:
    """The keys of the file's first JSON object; of a first line too long to read here (a 200 MB sample),
    the quoted names that precede a colon in its first megabyte."""
    line = _head(path, 1 << 20).split("\n", 1)[0]
    try:
        value = json.loads(line)
        return set(value) if isinstance(value, dict) else set()
    except json.JSONDecodeError:
        return set(re.findall(r'"([A-Za-z_]+)"\s*:', line))
