"""lighteval details parquets (details/<model>/<date>/details_<task>_<date>.parquet) read as logged samples.

Two schemas, one row per doc (lighteval's DetailsLogger.Detail, written by EvaluationTracker.save):
- current (0.10 and later): `doc` (Doc: query, choices, gold_index, id, task_name, specific, ...),
  `model_response` (ModelResponse: text [one per sample], output_tokens [the token ids of each
  sample], reasonings [0.13: the server's reasoning_content per sample], input_tokens, ...), `metric`;
- flat (0.9 and earlier): example, full_prompt, predictions [one text per sample], cont_tokens
  [per response, the token ids of each sample], gold, choices, gold_index, metrics, specifics; up to
  0.5 every value was written as its Python repr (str(v)), read back here with ast.literal_eval.

A sample's count of generated tokens is the length of its token-id list (exact: the ids the model
generated, reasoning included). Its text is a raw_text, split later by the model's reasoning
protocol, unless the row keeps the server's reasoning apart (`reasonings`): then reasoning_text and
answer_text. lighteval keeps no finish reason: a sample whose ids fill its token budget (the doc's
generation_size, else the run's max_new_tokens) is taken as cut off (LENGTH). The model is named in
the sibling results/<model>/results_<date>.json, else by the details/<model>/ folders.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from cogdistill.traces.logs.base import (LENGTH, MAX_TEXT_CHARS, STOP, HarnessLog, LogFormatError, LoggedSample,
                                         checked_size, log_text, token_count)

FORMAT = "lighteval"
MAX_FILE_BYTES = 2 * 2 ** 30  # a details parquet past this is no details file of a task a person scores
MAX_RESULTS_BYTES = 64 * 2 ** 20
_BATCH_ROWS = 256  # rows decoded at a time: a file with huge texts is refused batch by batch
_CURRENT = ("doc", "model_response")
_FLAT_TEXT = ("predictions",)
_DOC_FIELDS_SKIPPED = ("query", "fewshot_samples", "images", "choices", "original_query", "unconditioned_query")


def read(path: Path) -> HarnessLog:
    path = Path(path)
    import pyarrow as pa
    import pyarrow.parquet as pq

    checked_size(path, MAX_FILE_BYTES, "no lighteval details file of one task is; split the run by task or check "
                 "the file.")
    try:
        pf = pq.ParquetFile(path)
        columns = set(pf.schema_arrow.names)
    except (pa.ArrowException, OSError) as exc:
        raise LogFormatError(f"{path}: not a readable parquet file ({exc}): pass the details_<task>_<date>.parquet "
                             "that lighteval wrote, complete.") from exc
    if set(_CURRENT) <= columns:
        rows, flat = _CURRENT, False
    elif "predictions" in columns and ({"example"} & columns or {"full_prompt"} & columns):
        rows, flat = tuple(c for c in ("example", "full_prompt", "predictions", "cont_tokens", "input_tokens", "gold",
                                       "choices", "gold_index", "specifics") if c in columns), True
    else:
        raise LogFormatError(f"{path}: not a lighteval details parquet: it has neither `doc` + `model_response` "
                             "(lighteval >= 0.10) nor `example`/`full_prompt` + `predictions` (older) columns; for "
                             "cogdistill's own trace records add `item_id` and pass engine.format=records.")
    model, max_new = _results(path)
    task = _task_name(path)
    samples: List[LoggedSample] = []
    seen: Dict[Tuple[str, int], int] = {}
    skipped, length_cut, no_ids, with_reasoning = 0, 0, 0, 0
    for i, row in _rows(path, pf, rows):
        if flat:
            doc_id, got = None, _flat_row(path, i, row)
        else:
            doc_id, got = _current_row(path, i, row)
        if got is None:
            skipped += 1
            continue
        prompt, texts, reasonings, counts, target, limit, fields = got
        log_id = str(doc_id) if doc_id not in (None, "") else str(i)
        where = f"row {i}" + (f" (doc id {doc_id!r})" if doc_id not in (None, "") else "")
        limit = limit if limit is not None else max_new
        fields = {"row": i, "task": fields.pop("task_name", None) or task, **fields}
        for k, text in enumerate(texts):
            at = f"{where} sample {k}"
            key = (log_id, k)
            if key in seen:
                raise LogFormatError(f"{path}: {at}: doc id {log_id!r} sample {k} appears twice (rows {seen[key]} and "
                                     f"{i}): two runs were joined into one file; keep one run per details file.")
            seen[key] = i
            count = counts[k] if counts is not None else None
            reasoning = reasonings[k] if reasonings is not None and k < len(reasonings) else None
            reasoning = log_text(path, at, "reasonings", reasoning)
            text = log_text(path, at, "text", text)
            cut = count is not None and limit is not None and count >= limit
            length_cut += cut
            no_ids += count is None
            with_reasoning += reasoning is not None
            samples.append(LoggedSample(
                where=at, log_id=log_id, sample_idx=k, model=model, prompt=prompt,
                reasoning_text=reasoning, answer_text=text if reasoning is not None else None,
                raw_text=None if reasoning is not None else text, output_tokens=count,
                finish_reason=LENGTH if cut else STOP, target=target, fields=fields))
    if not samples:
        raise LogFormatError(f"{path}: no generations in it ({skipped} rows scored choices by log-likelihood, or "
                             "kept no text): only generative tasks have a reasoning cost to read.")
    notes: List[str] = []
    if skipped:
        notes.append(f"{skipped} rows hold no generation (log-likelihood scoring) and were left out")
    if length_cut:
        notes.append(f"{length_cut} samples filled their token budget and are taken as cut off (lighteval keeps no "
                     "finish reason)")
    if no_ids:
        notes.append(f"{no_ids} samples carry no token ids (an API backend): their cost is counted from the text")
    if flat or not any(s.fields.get("doc", {}).get("id") not in (None, "") for s in samples):
        notes.append("ids are row numbers (this details file keeps no doc id): match by prompt text "
                     "(engine.match=prompt) or by a field (engine.id_field=specific.<key>)")
    return HarnessLog(path=path, format=FORMAT, samples=samples, model=model, notes=notes)


def _rows(path: Path, pf: Any, columns: Tuple[str, ...]) -> Iterator[Tuple[int, Dict[str, Any]]]:
    import pyarrow as pa

    i = 0
    try:
        for batch in pf.iter_batches(batch_size=_BATCH_ROWS, columns=list(columns)):
            _refuse_huge_text(path, batch, i)
            for row in batch.to_pylist():
                yield i, row
                i += 1
    except (pa.ArrowException, OSError) as exc:
        raise LogFormatError(f"{path}: cannot be read past row {i} ({exc}): the file is damaged or cut short; import "
                             "the complete file.") from exc


def _refuse_huge_text(path: Path, batch: Any, first: int) -> None:
    """Before a batch becomes Python objects: no string value in it over MAX_TEXT_CHARS (UTF-8 bytes
    are at least as many as characters, so a value under the cap in bytes is under it in characters)."""
    import pyarrow.compute as pc

    for name, column in zip(batch.schema.names, batch.columns):
        for leaf_name, leaf in _string_leaves(name, column):
            lengths = pc.binary_length(leaf)
            top = pc.max(lengths).as_py()
            if top is not None and top > MAX_TEXT_CHARS:
                where = _row_of_long_value(column, leaf, lengths, first)
                raise LogFormatError(f"{path}: {where}: `{leaf_name}` holds {top:,} bytes of text, more than "
                                     f"{MAX_TEXT_CHARS:,} (no generation's text is that long; live answers are capped "
                                     "at 8 MiB): drop that row or check how the file was written.")


def _string_leaves(name: str, array: Any) -> Iterator[Tuple[str, Any]]:
    import pyarrow as pa

    t = array.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        yield name, array
    elif pa.types.is_struct(t):
        for j in range(t.num_fields):
            yield from _string_leaves(f"{name}.{t.field(j).name}", array.field(j))
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        yield from _string_leaves(name, array.flatten())


def _row_of_long_value(column: Any, leaf: Any, lengths: Any, first: int) -> str:
    if len(leaf) != len(column):  # inside a list: the row is not worth the bookkeeping to name
        return f"rows {first}-{first + len(column) - 1}"
    import pyarrow.compute as pc

    return f"row {first + pc.index(lengths, pc.max(lengths)).as_py()}"


def _current_row(path: Path, i: int, row: Dict[str, Any]):
    doc, resp = row.get("doc"), row.get("model_response")
    if not isinstance(doc, dict) or not isinstance(resp, dict):
        raise LogFormatError(f"{path}: row {i}: `doc` and `model_response` must be structs (lighteval's Doc and "
                             "ModelResponse); the file was not written by lighteval or was edited.")
    doc_id = doc.get("id")
    where = f"row {i}" + (f" (doc id {doc_id!r})" if doc_id not in (None, "") else "")
    texts = _texts(path, where, "model_response.text", resp.get("text"))
    if not texts:
        return doc_id, None
    counts = _counts(path, where, "model_response.output_tokens", resp.get("output_tokens"), len(texts))
    reasonings = resp.get("reasonings") or None
    if reasonings is not None and (not isinstance(reasonings, list) or all(r is None for r in reasonings)):
        reasonings = None
    limit = token_count(path, where, "doc.generation_size", doc.get("generation_size"))
    fields = {"doc": {k: v for k, v in doc.items() if k not in _DOC_FIELDS_SKIPPED},
              "specific": doc.get("specific") or {}, "task_name": doc.get("task_name")}
    prompt = log_text(path, where, "doc.query", doc.get("query"))
    return doc_id, (prompt, texts, reasonings, counts, _target(doc.get("choices"), doc.get("gold_index")), limit,
                    fields)


def _flat_row(path: Path, i: int, row: Dict[str, Any]):
    where = f"row {i}"
    row = {k: _literal(path, where, k, v) if k != "example" and k != "full_prompt" else v for k, v in row.items()}
    preds = row.get("predictions")
    if not isinstance(preds, list) or not preds or not all(isinstance(p, str) for p in preds):
        return None  # log-likelihood rows keep numbers here, not texts
    texts = _texts(path, where, "predictions", preds)
    counts = None
    cont = row.get("cont_tokens")
    if isinstance(cont, list) and cont:
        # one entry per model response; a response of a sampling task holds one id list per sample
        per_sample = [ids for resp in cont for ids in (resp if resp and isinstance(resp[0], list) else [resp])]
        if len(per_sample) == len(texts) and all(per_sample):
            counts = _counts(path, where, "cont_tokens", per_sample, len(texts))
    gold = row.get("gold")
    target = str(gold[0]) if isinstance(gold, list) and gold else _target(row.get("choices"), row.get("gold_index"))
    prompt = row.get("example") if row.get("example") else row.get("full_prompt")
    specific = row.get("specifics")
    return (log_text(path, where, "example", prompt), texts, None, counts, target, None,
            {"specific": specific if isinstance(specific, dict) else {}})


def _literal(path: Path, where: str, name: str, value: Any) -> Any:
    """A value lighteval <= 0.5 wrote as its Python repr, read back; others as they are. Token ids
    that were numpy arrays (nanotron) do not read back: the sample's count is then unknown."""
    if not isinstance(value, str) or not value[:1] in ("[", "{", "(") or len(value) > 16 * MAX_TEXT_CHARS:
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        if name in ("cont_tokens", "input_tokens"):
            return None
        if name in _FLAT_TEXT:
            raise LogFormatError(f"{path}: {where}: `{name}` is a string that does not read back as a list "
                                 f"({type(exc).__name__}); the file is damaged or was edited.") from exc
        return value


def _texts(path: Path, where: str, name: str, value: Any) -> List[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise LogFormatError(f"{path}: {where}: `{name}` is {type(value).__name__}, not a list of texts (one per "
                             "sample); the file was not written by lighteval or was edited.")
    return [log_text(path, f"{where} sample {k}", name, t) or "" for k, t in enumerate(value)]


def _counts(path: Path, where: str, name: str, value: Any, n: int) -> Optional[List[Optional[int]]]:
    """Per sample, the number of generated tokens: the length of its id list (a bare number is taken
    as a count, checked like any count)."""
    if not value:
        return None
    if not isinstance(value, list) or len(value) != n:
        shown = f"{len(value)} entries" if isinstance(value, list) else type(value).__name__
        raise LogFormatError(f"{path}: {where}: `{name}` holds {shown} for {n} generated texts: one id list per "
                             "sample is expected; the file was edited or joined from two runs.")
    return [token_count(path, f"{where} sample {k}", name, len(ids) if isinstance(ids, list) else ids)
            for k, ids in enumerate(value)]


def _target(choices: Any, gold: Any) -> Optional[str]:
    gold = gold[0] if isinstance(gold, list) and gold else gold
    if isinstance(choices, list) and isinstance(gold, int) and not isinstance(gold, bool) and 0 <= gold < len(choices):
        return str(choices[gold])
    return None


def _task_name(path: Path) -> Optional[str]:
    """details_<task>_<date>.parquet, <date> being its folder's name."""
    stem, date = path.stem, path.parent.name
    if stem.startswith("details_") and stem.endswith("_" + date) and len(stem) > len("details__") + len(date):
        return stem[len("details_"):-len(date) - 1]
    return None


def _results(path: Path) -> Tuple[Optional[str], Optional[int]]:
    """The model's name and max_new_tokens from <out>/results/<model>/results_<date>.json, beside
    <out>/details/<model>/<date>/; else the model from the folders, and no token budget."""
    parts = path.parent.parts
    if "details" not in parts[:-1]:
        return None, None
    at = len(parts) - 1 - parts[::-1].index("details", 1)
    model_parts = parts[at + 1:-1]
    model = "/".join(model_parts) or None
    results = Path(*parts[:at]) / "results" / Path(*model_parts) / f"results_{path.parent.name}.json"
    try:
        if not results.is_file() or results.stat().st_size > MAX_RESULTS_BYTES:
            return model, None
        config = json.loads(results.read_text(encoding="utf-8")).get("config_general") or {}
    except (OSError, ValueError, AttributeError):
        return model, None
    model_config = config.get("model_config") if isinstance(config.get("model_config"), dict) else {}
    name = config.get("model_name") or model_config.get("model_name")
    params = model_config.get("generation_parameters") or config.get("generation_parameters") or {}
    max_new = params.get("max_new_tokens") if isinstance(params, dict) else None
    ok = isinstance(max_new, int) and not isinstance(max_new, bool) and max_new > 0
    return (str(name) if name else model), (max_new if ok else None)
