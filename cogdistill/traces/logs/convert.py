"""A harness log's samples as cogdistill trace records (the replay schema): which task item each
sample is, and where its reasoning cost comes from. One rule for every format
(docs: Bring your evaluation logs).

Matching (engine.match, engine.id_field, engine.id_map): a sample's item is its log id, the log field
id_field names, the id_map file's item for its log id, or (match=prompt) the task item whose prompt
is the same text once whitespace and case are normalised. Samples that match no item are counted and
named with the reason; none matching stops the job. Several log ids mapped to one item are its
samples, numbered in log order.

Cost (cost_source), the first a sample allows:
1. "provider": the provider's reasoning count; the answer is the provider's output count minus it
   (OpenAI's and Inspect's convention: output tokens include reasoning), else our count of the answer;
2. "counted": our count of the logged reasoning text (or of a raw generation split by the model's
   protocol) with the model's tokenizer;
3. "total_minus_answer": the provider's output count minus our count of the answer.
A log that keeps none of these stops the job naming the samples, never counting the answer as reasoning.
"""

from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from cogdistill.config.schema import ReplayEngineConfig
from cogdistill.tasks.load import Task
from cogdistill.traces.logs.base import FAILED, LENGTH, UNKNOWN, HarnessLog, LogFormatError, LoggedSample

Records = List[Tuple[str, Dict[str, Any]]]
MAX_SHOWN = 5


@dataclass(frozen=True)
class Imported:
    records: Records  # (where, replay record), matched to the task's items
    summary: str  # one line: what was read and matched
    warnings: List[str]  # one line each: unmatched samples, notes of the reader


def normalised(text: str) -> str:
    """Prompt text for matching: case and runs of whitespace do not matter (harnesses strip or re-wrap)."""
    return re.sub(r"\s+", " ", text).strip().casefold()


def import_log(log: HarnessLog, task: Task, settings: ReplayEngineConfig, label: str) -> Imported:
    samples = _of_model(log, settings.log_model)
    if log.no_reasoning:
        raise LogFormatError(f"{log.path}: {log.no_reasoning}")
    items = [str(i) for i in task.items["item_id"]]
    keys, unmatched = _match(log, samples, task, items, settings)
    matched = [(s, keys[i]) for i, s in enumerate(samples) if i in keys]
    if not matched:
        raise LogFormatError(f"{log.path}: none of its {len(samples)} sample(s) matches an item of task "
                             f"'{task.name}' ({_reasons(unmatched)}). {_match_fix(settings)}")
    records = [(s.where, _record(log.path, s, item, label)) for s, item in _numbered(matched)]
    _check_costs(log, records)
    model = log.model or next((s.model for s in samples if s.model), None)
    covered = len({item for _, item in matched})
    summary = (f"{log.path.name}: {log.format} log{f' of {model}' if model else ''}, {len(samples)} sample(s); "
               f"{len(matched)} matched {covered} of the {len(items)} items of task '{task.name}'"
               + (f"; {sum(len(v) for v in unmatched.values())} did not match ({_reasons(unmatched)})" if unmatched
                  else "")
               + f"; reasoning cost from {_sources(records)}.")
    if log.partial:
        summary = f"{summary} {log.partial}"
    warnings = list(log.notes)
    if unmatched:
        warnings.append(f"{log.path}: {sum(len(v) for v in unmatched.values())} of {len(samples)} sample(s) match "
                        f"no item of task '{task.name}' and are left out: {_reasons(unmatched)}. "
                        + _match_fix(settings))
    return Imported(records, summary, warnings)


def _of_model(log: HarnessLog, wanted: Optional[str]) -> List[LoggedSample]:
    models = sorted({s.model for s in log.samples if s.model})
    if wanted:
        kept = [s for s in log.samples if s.model == wanted]
        if not kept:
            raise LogFormatError(f"{log.path}: no sample is of model '{wanted}' (engine.log_model); it holds "
                                 f"{models or 'samples naming no model'}.")
        return kept
    if len(models) > 1:
        raise LogFormatError(f"{log.path}: holds samples of {len(models)} models {models[:MAX_SHOWN]}; choose one "
                             "with engine.log_model=<name> (one model per job).")
    if not log.samples:
        raise LogFormatError(f"{log.path}: holds no samples.")
    return list(log.samples)


def _match(log: HarnessLog, samples: List[LoggedSample], task: Task, items: List[str],
           settings: ReplayEngineConfig) -> Tuple[Dict[int, str], Dict[str, List[str]]]:
    """{sample index: item id}, and {reason: [log ids]} for the samples that match none."""
    known = set(items)
    unmatched: Dict[str, List[str]] = defaultdict(list)
    keys: Dict[int, str] = {}
    if settings.match == "prompt":
        by_prompt: Dict[str, List[str]] = defaultdict(list)
        for item, prompt in zip(items, task.prompts()):
            by_prompt[normalised(prompt)].append(item)
        for i, s in enumerate(samples):
            if s.prompt is None:
                unmatched["the log keeps no prompt"].append(s.log_id)
                continue
            found = by_prompt.get(normalised(s.prompt), [])
            if len(found) == 1:
                keys[i] = found[0]
            else:
                unmatched["its prompt is no task item's" if not found
                          else f"its prompt is that of {len(found)} items"].append(s.log_id)
        return keys, unmatched
    mapping = _read_id_map(Path(settings.id_map)) if settings.id_map else None
    for i, s in enumerate(samples):
        if settings.id_field:
            value = _field(s.fields, settings.id_field)
            if value is None or isinstance(value, (dict, list, bool)):
                unmatched[f"no usable `{settings.id_field}`"].append(s.log_id)
                continue
            key = str(value)
        elif mapping is not None:
            if s.log_id not in mapping:
                unmatched[f"not in {Path(settings.id_map).name}"].append(s.log_id)
                continue
            key = mapping[s.log_id]
        else:
            key = s.log_id
        if key in known:
            keys[i] = key
        else:
            unmatched["id not in the task"].append(key)
    return keys, unmatched


def _field(fields: Any, dotted: str) -> Any:
    value = fields
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _read_id_map(path: Path) -> Dict[str, str]:
    """log id -> item id, from a CSV with the columns log_id and item_id (read as text: '07' stays '07')."""
    path = path.expanduser().resolve()
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"log_id", "item_id"} <= set(reader.fieldnames):
                raise LogFormatError(f"{path}: engine.id_map needs a CSV with the columns log_id,item_id; its header "
                                     f"is {reader.fieldnames}.")
            mapping: Dict[str, str] = {}
            for n, row in enumerate(reader, start=2):
                log_id, item = (row.get("log_id") or "").strip(), (row.get("item_id") or "").strip()
                if not log_id or not item:
                    raise LogFormatError(f"{path}: line {n} has an empty log_id or item_id; fill in both.")
                if log_id in mapping and mapping[log_id] != item:
                    raise LogFormatError(f"{path}: line {n} maps log_id '{log_id}' to '{item}', an earlier line to "
                                         f"'{mapping[log_id]}'; give each log id one item.")
                mapping[log_id] = item
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LogFormatError(f"{path}: engine.id_map cannot be read ({exc}); give a UTF-8 CSV with columns "
                             "log_id,item_id.") from exc
    return mapping


def _reasons(unmatched: Dict[str, List[str]]) -> str:
    return "; ".join(f"{len(ids)} {reason}, e.g. {sorted(set(ids))[:MAX_SHOWN]}" for reason, ids in unmatched.items())


def _match_fix(settings: ReplayEngineConfig) -> str:
    if settings.match == "prompt":
        return "Check that the log is of this task (task=[...]), or match by id (engine.match=id)."
    return ("Check that the log is of this task (task=[...]); if its ids are not the task's item ids, name the field "
            "that holds them (engine.id_field=metadata.item_id), map them (engine.id_map=map.csv with columns "
            "log_id,item_id) or match by prompt text (engine.match=prompt).")


def _numbered(matched: List[Tuple[LoggedSample, str]]) -> List[Tuple[LoggedSample, str]]:
    """Samples of one item from several log ids take the sample numbers in log order; one log id's
    repeats keep their own (a repeated (id, repeat) is a duplicate that replay refuses)."""
    ids_per_item: Dict[str, set] = defaultdict(set)
    for s, item in matched:
        ids_per_item[item].add(s.log_id)
    next_idx: Counter = Counter()
    out = []
    for s, item in matched:
        if len(ids_per_item[item]) > 1:
            out.append((_with_idx(s, next_idx[item]), item))
            next_idx[item] += 1
        else:
            out.append((s, item))
    return out


def _with_idx(s: LoggedSample, idx: int) -> LoggedSample:
    from dataclasses import replace

    return replace(s, sample_idx=idx)


def _record(path: Path, s: LoggedSample, item: str, label: str) -> Dict[str, Any]:
    """The replay record of one sample: the cost by the module's rule, the rest as logged."""
    rec: Dict[str, Any] = {"item_id": item, "sample_idx": s.sample_idx, "model": label, "prompt": s.prompt,
                           "latency_s": s.latency_s, "prompt_tokens": s.prompt_tokens,
                           "usage_prompt_tokens": s.prompt_tokens, "usage_completion_tokens": s.output_tokens,
                           "usage_reasoning_tokens": s.reasoning_tokens,
                           "finish_reason": s.finish_reason if s.finish_reason in (LENGTH, UNKNOWN) else "stop"}
    if s.finish_reason == FAILED:
        return {**rec, "finish_reason": "failed", "failure": s.failure or "failed in the harness",
                "answer_text": s.answer_text, "reasoning_text": s.reasoning_text}
    if s.reasoning_tokens is not None:
        answer = s.answer_text if s.answer_text is not None else ""
        rec.update(reasoning_text=s.reasoning_text, answer_text=answer, reasoning_tokens=s.reasoning_tokens,
                   cost_source="provider")
        if s.output_tokens is not None and s.output_tokens >= s.reasoning_tokens:
            rec["answer_tokens"] = s.output_tokens - s.reasoning_tokens
            rec["total_tokens"] = s.output_tokens
        return rec  # else replay counts the answer with the model's tokenizer
    if s.reasoning_text is not None:
        # no total_tokens: the provider's tokenizer is not ours, so its count may undercut our sum
        return {**rec, "reasoning_text": s.reasoning_text, "answer_text": s.answer_text or "", "cost_source": "counted"}
    if s.raw_text is not None:
        return {**rec, "text": s.raw_text, "cost_source": "counted"}
    if s.output_tokens is not None and s.answer_text is not None:
        return {**rec, "answer_text": s.answer_text, "total_tokens": s.output_tokens,
                "cost_source": "total_minus_answer"}
    return {**rec, "__uncosted__": True}


def _check_costs(log: HarnessLog, records: Records) -> None:
    uncosted = [where for where, rec in records if rec.pop("__uncosted__", False)]
    if uncosted:
        raise LogFormatError(
            f"{log.path}: {len(uncosted)} of {len(records)} sample(s) give no reasoning cost: no provider count, no "
            f"reasoning text and no output count ({', '.join(uncosted[:MAX_SHOWN])}"
            f"{' ...' if len(uncosted) > MAX_SHOWN else ''}). The answer alone is no reasoning cost: re-run with "
            "the provider's usage or the reasoning text logged.")


def _sources(records: Records) -> str:
    counts = Counter(rec.get("cost_source") or "none (failed)" for _, rec in records)
    return ", ".join(f"{source} ({n})" for source, n in counts.most_common())
