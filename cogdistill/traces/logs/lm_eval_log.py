"""lm-evaluation-harness `--log_samples` files (samples_<task>_<date>.jsonl) read as logged samples.

What lm-eval 0.4 writes, one JSON line per doc AND filter: `doc_id` (the row index in the dataset),
`doc`, `target`, `arguments` ({"gen_args_0": {"arg_0": context, "arg_1": gen_kwargs}}; older
versions: [[context, gen_kwargs]]), `resps` ([[repeat 0, repeat 1, ...]]: one request per doc for
generate_until, its `repeats` inside), `filter`, metrics. Every filter repeats the same generations,
so a doc's rows after its first are dropped (and counted in a note). lm-eval keeps no token counts
and does not split the reasoning from the answer: each repeat becomes a raw_text, split later by the
model's reasoning protocol. The model is named in the sibling results_<date>.json; when its model
args set `think_end_token`, lm-eval cut the reasoning off before logging, and the log can give no
reasoning count at all (HarnessLog.no_reasoning).

Ids: a doc carrying `item_id` (every task cogdistill-export writes) gives that as the sample's id,
so an exported task's log matches with no mapping; any other doc gives str(doc_id).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from cogdistill.traces.logs.base import MAX_TEXT_CHARS, UNKNOWN, HarnessLog, LogFormatError, LoggedSample, jsonl_objects

FORMAT = "lm-eval"
MAX_RESULTS_BYTES = 64 * 2 ** 20  # a results_<date>.json holds aggregates: megabytes at most
# lm-eval's own order for naming the model from its model args (EvaluationTracker._get_model_name)
_NAME_KEYS = ("peft", "delta", "pretrained", "model", "path", "engine")


def read(path: Path) -> HarnessLog:
    path = Path(path)
    model, model_args, results = _results(path)
    samples: List[LoggedSample] = []
    first: Dict[int, Tuple[str, List[str], int]] = {}  # doc_id -> (filter, resps, line) of its first row
    dropped = 0
    filters: List[str] = []
    with_item_id = 0
    for n, row in _rows(path):
        doc_id = _doc_id(path, n, row.get("doc_id"))
        where = f"line {n} (doc_id {doc_id})"
        resps = _resps(path, where, row.get("resps"))
        filt = row.get("filter")
        filt = filt if isinstance(filt, str) else ""
        if filt not in filters:
            filters.append(filt)
        if doc_id in first:
            kept_filter, kept, kept_line = first[doc_id]
            if filt == kept_filter:
                raise LogFormatError(f"{path}: {where}: doc_id {doc_id} appears twice under filter {filt!r} (lines "
                                     f"{kept_line} and {n}): two runs were written into one file; keep one run per "
                                     "samples file.")
            if resps != kept:
                raise LogFormatError(f"{path}: {where}: the responses of doc_id {doc_id} under filter {filt!r} differ "
                                     f"from those under {kept_filter!r} (line {kept_line}), though every filter logs "
                                     "the same generations: the file was edited or joined from two runs.")
            dropped += 1
            continue
        first[doc_id] = (filt, resps, n)
        doc = row.get("doc")
        target = row.get("target")
        target = None if target is None else str(target)
        log_id = str(doc_id)
        if isinstance(doc, dict) and doc.get("item_id") is not None:
            log_id, with_item_id = str(doc["item_id"]), with_item_id + 1
        prompt = _prompt(path, where, row.get("arguments"))
        fields = {"doc": doc, "doc_id": doc_id, "target": target}
        for k, text in enumerate(resps):
            samples.append(LoggedSample(where=f"{where} resps[0][{k}]", log_id=log_id, sample_idx=k, model=model,
                                        prompt=prompt, raw_text=text, target=target, fields=fields,
                                        finish_reason=UNKNOWN))  # lm-eval logs no finish reason
    if not samples:
        raise LogFormatError(f"{path}: no samples in it: pass a samples_<task>_<date>.jsonl that lm_eval wrote with "
                             "--log_samples.")
    notes: List[str] = []
    if dropped:
        notes.append(f"{dropped} rows were filter duplicates (filters {', '.join(map(repr, filters))} log the same "
                     f"generations): one generation per doc kept, from filter {filters[0]!r}")
    docs = len(first)
    if with_item_id == docs:
        notes.append("ids are the docs' `item_id` (a cogdistill-exported task): matched with no mapping")
    else:
        notes.append(f"ids are lm-eval doc_ids (the row index in the task's dataset) for {docs - with_item_id} of "
                     f"{docs} docs: match with engine.id_field=doc.<field> or engine.match=prompt")
    if results is None:
        notes.append(f"no {_results_name(path)} beside it: the model is not named, and whether think_end_token "
                     "stripped the reasoning cannot be checked")
    think_end = _arg(model_args, "think_end_token")
    no_reasoning = None
    if think_end:
        no_reasoning = (f"{path.name} keeps neither reasoning text nor token counts (think_end_token={think_end!r} in "
                        f"{results.name if results else 'the results file'} made lm-eval strip the reasoning before "
                        "logging): re-run lm_eval without think_end_token in --model_args")
    return HarnessLog(path=path, format=FORMAT, samples=samples, model=model, notes=notes, no_reasoning=no_reasoning)


def _rows(path: Path):
    return jsonl_objects(path, "lm-eval samples_<task>_<date>.jsonl")


def _doc_id(path: Path, n: int, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:60] + "..."
        raise LogFormatError(f"{path}: line {n}: `doc_id` is {shown}, not a row index (a non-negative integer): the "
                             "file is damaged or was edited: fix or drop that line.")
    return value


def _resps(path: Path, where: str, value: Any) -> List[str]:
    """The repeats of the doc's one generate_until request."""
    if not isinstance(value, list) or not value:
        raise LogFormatError(f"{path}: {where}: `resps` is missing or empty: no generation to import; re-run lm_eval "
                             "with --log_samples.")
    if len(value) != 1 or not isinstance(value[0], list) or not all(isinstance(t, str) for t in value[0]):
        raise LogFormatError(f"{path}: {where}: `resps` is not one list of generated texts (it has {len(value)} "
                             "requests or non-text responses): only generate_until tasks log generations; a "
                             "loglikelihood or multiple-choice task has no reasoning to import.")
    if not value[0]:
        raise LogFormatError(f"{path}: {where}: `resps` holds no response: no generation to import.")
    for k, text in enumerate(value[0]):
        _check_text(path, f"{where} resps[0][{k}]", text)
    return value[0]


def _prompt(path: Path, where: str, arguments: Any) -> Optional[str]:
    """The context lm-eval sent: arguments.gen_args_0.arg_0 (as 0.4 writes it) or arguments[0][0]."""
    context: Any = None
    if isinstance(arguments, dict):
        first = arguments.get("gen_args_0")
        if isinstance(first, dict):
            context = first.get("arg_0")
    elif isinstance(arguments, list) and arguments and isinstance(arguments[0], list) and arguments[0]:
        context = arguments[0][0]
    if context is None:
        return None
    if not isinstance(context, str):
        raise LogFormatError(f"{path}: {where}: the prompt (`arguments` gen_args_0.arg_0) is a "
                             f"{type(context).__name__}, not text: the file is damaged or was edited.")
    _check_text(path, f"{where} prompt", context)
    return context


def _check_text(path: Path, where: str, text: str) -> None:
    if len(text) > MAX_TEXT_CHARS:
        raise LogFormatError(f"{path}: {where} holds {len(text):,} characters, more than {MAX_TEXT_CHARS:,} (live "
                             "answers are capped at 8 MiB): this is no generation to import; drop that line.")


def _results_name(path: Path) -> str:
    # samples_<task>_<date>.jsonl; the date (isoformat, ':' -> '-') holds no '_', a task name may
    date = path.stem.rsplit("_", 1)[-1] if path.stem.startswith("samples_") and "_" in path.stem[8:] else "*"
    return f"results_{date}.json"


def _results(path: Path) -> Tuple[Optional[str], Any, Optional[Path]]:
    """(model name, model args, the results file) from the sibling results_<date>.json, or Nones."""
    results = path.parent / _results_name(path)
    if "*" in results.name or not results.is_file():
        return None, None, None
    if results.stat().st_size > MAX_RESULTS_BYTES:
        raise LogFormatError(f"{results}: over {MAX_RESULTS_BYTES:,} bytes, not an lm-eval results file: move it "
                             f"away from {path.name} or replace it with the one lm_eval wrote.")
    try:
        data = json.loads(results.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise LogFormatError(f"{results}: cannot be read as JSON ({e}): it names the model of {path.name} and "
                             "whether lm-eval stripped the reasoning; restore the file lm_eval wrote.") from None
    if not isinstance(data, dict):
        raise LogFormatError(f"{results}: not an lm-eval results object: restore the file lm_eval wrote.")
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    model_args = config.get("model_args")
    # the model args name the weights; config.model is the backend (hf, vllm) or the model class, and
    # model_name is a random id when the args name nothing
    name = next((str(v) for v in (_arg(model_args, k) for k in _NAME_KEYS) if v), None)
    if name is None:
        name = next((str(v) for v in (config.get("model"), data.get("model_name")) if isinstance(v, str) and v), None)
    return name, model_args, results


def _arg(model_args: Any, key: str) -> Optional[str]:
    """One value of lm-eval's model args, given as "k=v,k=v" (the CLI) or a dict (the Python API)."""
    if isinstance(model_args, dict):
        value = model_args.get(key)
        return None if value is None or value == "" else str(value)
    if isinstance(model_args, str):
        for part in model_args.split(","):
            k, sep, v = part.partition("=")
            if sep and k.strip() == key and v.strip():
                return v.strip()
    return None
