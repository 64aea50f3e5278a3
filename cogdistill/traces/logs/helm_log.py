"""HELM run folders (benchmark_output/runs/<suite>/<run>/) read as logged samples.

helm-run writes, per run, `scenario_state.json` (ScenarioState: adapter_spec, request_states[]; a
request state = instance {id, input, references, split, perturbation}, train_trial_index, request
{prompt, num_completions, max_tokens, ...}, result {success, completions[{text, tokens[], finish_reason
{"reason": ...}, thinking {text}}], error, request_time}) and `per_instance_stats.json` (per instance,
perturbation and train trial: stats such as num_output_tokens). Both are JSON documents written
whole; they are read whole, up to MAX_FILE_BYTES.

Each completion is one sample: id = instance.id, repeats numbered over train trials and completions.
A completion's text is its answer when HELM kept the model's thinking apart (`thinking`, newer
HELM), else the whole generation (raw_text), split later by the model's reasoning protocol. Its
`tokens` are the completion's tokens as HELM's client recorded them (the server's logprob tokens, or
HELM's tokenization of the text): they cover the text only, so they give output_tokens only where
the text is the whole generation. A failed request (success false) is a FAILED sample with its error.
Requests HELM made for another purpose are left out, with a note: perturbed copies of an instance
(robustness/fairness augmentations: another prompt of the item) and per-choice scoring requests of
multiple-choice-separate adapters (reference_index set: no generation).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from cogdistill.traces.logs.base import (FAILED, LENGTH, STOP, HarnessLog, LogFormatError, LoggedSample, checked_size, log_text,
                                         token_count)

FORMAT = "helm"
STATE, STATS = "scenario_state.json", "per_instance_stats.json"
MAX_FILE_BYTES = 2 * 2 ** 30  # json.load holds the whole document (several times its size) in memory
# finish reasons of HELM's clients (their servers' words) that mean the token limit cut the text
_CUT = {"length", "max_tokens", "max_output_tokens", "model_length", "MAX_TOKENS"}


def read(path: Path) -> HarnessLog:
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    state_path = folder / STATE
    if not state_path.is_file():
        raise LogFormatError(f"{folder}: no {STATE} in it: pass a HELM run folder (benchmark_output/runs/<suite>/"
                             f"<run>) of a run that finished; helm-run writes {STATE} at its end.")
    state = _load(state_path)
    if not isinstance(state, dict) or not isinstance(state.get("request_states"), list):
        raise LogFormatError(f"{state_path}: no `request_states` list: this is not a HELM scenario state.")
    spec = state.get("adapter_spec") if isinstance(state.get("adapter_spec"), dict) else {}
    model = spec.get("model") or spec.get("model_deployment") or None
    notes: List[str] = []
    stats_path = folder / STATS
    if stats_path.is_file():
        stats = _stats(stats_path, _load(stats_path))
    else:
        stats = {}
        notes.append(f"no {STATS} beside {STATE}: counts come from the completions' tokens alone")
    samples: List[LoggedSample] = []
    repeats: Dict[str, int] = {}
    seen: Dict[Tuple[str, int], int] = {}
    perturbed = scoring = 0
    for n, rs in enumerate(state["request_states"]):
        if not isinstance(rs, dict) or not isinstance(rs.get("instance"), dict):
            raise LogFormatError(f"{state_path}: request_states[{n}] has no `instance`: the file was edited or is not "
                                 "HELM's.")
        inst = rs["instance"]
        if inst.get("id") is None:
            raise LogFormatError(f"{state_path}: request_states[{n}]: the instance has no `id`: HELM gives every "
                                 "instance one (id0, id1, ...); the file was edited.")
        iid = str(inst["id"])
        trial = token_count(state_path, f"request_states[{n}]", "train_trial_index", rs.get("train_trial_index", 0))
        where = f"request_states[{n}] (instance {iid!r}, train trial {trial})"
        pert = inst.get("perturbation") if isinstance(inst.get("perturbation"), dict) else None
        if pert is not None and pert.get("name") not in (None, "identity"):
            perturbed += 1
            continue
        if rs.get("reference_index") is not None or rs.get("request_mode") is not None:
            scoring += 1
            continue
        key = (iid, trial)
        if key in seen:
            raise LogFormatError(f"{state_path}: {where}: instance {iid!r} train trial {trial} appears twice "
                                 f"(request_states[{seen[key]}] and [{n}]): two runs were joined; keep one run per "
                                 "folder.")
        seen[key] = n
        request = rs.get("request") if isinstance(rs.get("request"), dict) else {}
        prompt = log_text(state_path, where, "request.prompt", request.get("prompt"))
        max_tokens = token_count(state_path, where, "request.max_tokens", request.get("max_tokens"))
        target = _target(inst)
        fields = {"instance_id": iid, "split": inst.get("split"), "sub_split": inst.get("sub_split"),
                  "train_trial_index": trial, "perturbation": (pert or {}).get("name"),
                  "stats": stats.get((iid, trial), {})}
        result = rs.get("result")
        if not isinstance(result, dict):
            raise LogFormatError(f"{state_path}: {where}: no `result`: the request was never run (a dry run, or a "
                                 "run stopped before its requests finished); import a completed run.")
        completions = result.get("completions") if isinstance(result.get("completions"), list) else []
        if result.get("success") is False or not completions:
            error = result.get("error") if result.get("success") is False else "no completion returned"
            samples.append(LoggedSample(
                where=where, log_id=iid, sample_idx=_next(repeats, iid), model=model, prompt=prompt,
                finish_reason=FAILED, failure=str(error or "the request failed (HELM gives no error)")[:500],
                latency_s=_seconds(result.get("request_time")), target=target, fields={**fields, "completion": 0}))
            continue
        stat_count = _stat_count(state_path, where, stats.get((iid, trial), {}), len(completions))
        for k, comp in enumerate(completions):
            at = f"{where} completion {k}"
            if not isinstance(comp, dict):
                raise LogFormatError(f"{state_path}: {at} is not an object: the file was edited or is not HELM's.")
            text = log_text(state_path, at, "text", comp.get("text")) or ""
            thinking = comp.get("thinking")
            thinking = log_text(state_path, at, "thinking.text",
                                thinking.get("text") if isinstance(thinking, dict) else None)
            tokens = comp.get("tokens")
            count: Optional[int] = None
            if thinking is None and isinstance(tokens, list) and tokens:
                count = token_count(state_path, at, "tokens", len(tokens))
            elif thinking is None and tokens is None:
                count = stat_count
            if count is not None and request.get("echo_prompt"):
                count = None  # the tokens then hold the prompt too
            reason = comp.get("finish_reason")
            reason = reason.get("reason") if isinstance(reason, dict) else reason
            cut = str(reason) in _CUT or (reason is None and count is not None and max_tokens and count >= max_tokens)
            samples.append(LoggedSample(
                where=at, log_id=iid, sample_idx=_next(repeats, iid), model=model, prompt=prompt,
                reasoning_text=thinking, answer_text=text if thinking is not None else None,
                raw_text=None if thinking is not None else text, output_tokens=count,
                finish_reason=LENGTH if cut else STOP, latency_s=_seconds(result.get("request_time")),
                target=target, fields={**fields, "completion": k, "finish_reason": reason}))
    if not samples:
        raise LogFormatError(f"{state_path}: no generations to read ({perturbed} perturbed and {scoring} per-choice "
                             "scoring requests): import a run of a generation adapter without perturbations.")
    if perturbed:
        notes.append(f"{perturbed} requests of perturbed instances (augmentations: other prompts of an item) were "
                     "left out")
    if scoring:
        notes.append(f"{scoring} per-choice scoring requests (no generation) were left out")
    return HarnessLog(path=folder, format=FORMAT, samples=samples, model=str(model) if model else None, notes=notes)


def _load(path: Path) -> Any:
    checked_size(path, MAX_FILE_BYTES, "import the run in parts (helm-run --max-eval-instances) or check the file.")
    try:
        with open(path, "rb") as fh:
            return json.load(fh)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LogFormatError(f"{path}: not valid JSON ({exc}): the file is cut short or damaged (helm-run still "
                             "writing it, or a copy stopped part-way); import the complete run folder.") from exc
    except OSError as exc:
        raise LogFormatError(f"{path}: cannot be read ({exc}).") from exc


def _stats(path: Path, value: Any) -> Dict[Tuple[str, int], Dict[str, Any]]:
    """(instance id, train trial) -> {stat name: its stat} of the unperturbed instances."""
    if not isinstance(value, list):
        raise LogFormatError(f"{path}: a JSON {type(value).__name__}, not HELM's list of per-instance stats.")
    out: Dict[Tuple[str, int], Dict[str, Any]] = {}
    for n, entry in enumerate(value):
        if not isinstance(entry, dict) or entry.get("instance_id") is None:
            raise LogFormatError(f"{path}: entry {n} has no `instance_id`: the file was edited or is not HELM's.")
        pert = entry.get("perturbation")
        if isinstance(pert, dict) and pert.get("name") not in (None, "identity"):
            continue
        trial = token_count(path, f"entry {n}", "train_trial_index", entry.get("train_trial_index", 0))
        named = {}
        for stat in entry.get("stats") or []:
            name = stat.get("name") if isinstance(stat, dict) else None
            name = name.get("name") if isinstance(name, dict) else name
            if isinstance(name, str) and not (isinstance(stat.get("name"), dict) and stat["name"].get("perturbation")):
                named[name] = {"sum": stat.get("sum"), "count": stat.get("count"), "mean": stat.get("mean")}
        out[(str(entry["instance_id"]), trial)] = named
    return out


def _stat_count(path: Path, where: str, stats: Dict[str, Any], completions: int) -> Optional[int]:
    """num_output_tokens of one request, when it holds one completion (HELM sums over completions)."""
    stat = stats.get("num_output_tokens")
    if stat is None or completions != 1:
        return None
    return token_count(path, f"{where} (per-instance stats)", "num_output_tokens", stat.get("sum"))


def _target(inst: Dict[str, Any]) -> Optional[str]:
    for ref in inst.get("references") or []:
        if isinstance(ref, dict) and "correct" in (ref.get("tags") or []):
            out = ref.get("output")
            if isinstance(out, dict) and isinstance(out.get("text"), str):
                return out["text"]
    return None


def _next(repeats: Dict[str, int], iid: str) -> int:
    repeats[iid] = repeats.get(iid, -1) + 1
    return repeats[iid]


def _seconds(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else None
