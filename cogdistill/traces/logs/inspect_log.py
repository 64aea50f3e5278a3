"""Inspect AI logs (.eval and .json; lighteval >= 0.12 writes these) as LoggedSamples
(docs: Inspect AI).

Read only through inspect_ai.log, never by unzipping: its reader knows every log version it wrote.
A .eval log is streamed one sample at a time (events and store left unread: they are most of a sample
and none of a trace); a .json log is one JSON document, which inspect_ai reads whole in any case, so
it is read once with read_eval_log (its per-sample reader would rescan the whole list for each sample).

Counts are the evaluated model's own: `sample.model_usage[<header model>]` (every call that model
made for the sample), else `output.usage` when the output is that model's; a grader's or any other
model's usage is never taken for the model's cost.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

from cogdistill.traces.logs.base import FAILED, LENGTH, STOP, HarnessLog, LoggedSample, LogFormatError, token_count

FORMAT = "inspect"
# the parts of a sample a trace never needs; skipping them keeps a 10,000-sample log's read short
UNREAD_FIELDS = {"events", "store", "events_data", "timelines"}
BATCH = 64  # samples read (and held) at once from a .eval file
TRUNCATED = {"max_tokens", "model_length"}  # stop reasons meaning the generation was cut
CUT_LIMITS = {"token", "context"}  # sample limits that cut the generation (censored, not failed)
# what inspect_ai raises on a file it cannot read: damaged zip, bad JSON, a field of the wrong type
# (pydantic's ValidationError is a ValueError), a sample the header lists but the file lacks
_READ_ERRORS = (ValueError, KeyError, IndexError, EOFError, OSError, RuntimeError, zipfile.BadZipFile, zlib.error)


def read(path: Path) -> HarnessLog:
    from inspect_ai.log import read_eval_log

    path = Path(path)
    if not path.is_file():
        raise LogFormatError(f"{path}: no such file; give engine.path=<an Inspect .eval or .json log>.")
    fmt = _format_of(path)
    try:
        header = read_eval_log(str(path), header_only=True, format=fmt)
    except _READ_ERRORS as e:
        raise _damaged(path, "its header", e) from None
    model = header.eval.model
    samples: List[LoggedSample] = []
    others: set = set()
    for where, sample in _samples(path, fmt, header):
        record, other = _logged(path, where, sample, model)
        samples.append(record)
        others |= other
    partial = _partial(header, len(samples))
    notes: List[str] = []
    if others:
        notes.append(f"usage logged for other models ({', '.join(sorted(others))}: a grader or helper) was not "
                     f"taken as {model}'s cost" + (_uncounted(samples)))
    return HarnessLog(path=path, format=FORMAT, samples=samples, model=model, notes=notes, partial=partial)


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".eval", ".json"):
        raise LogFormatError(f"{path}: an Inspect log ends in .eval or .json, not '{suffix or '(none)'}'; give the "
                             "log file itself (inspect's log_dir holds one per task run).")
    return suffix[1:]


def _damaged(path: Path, what: str, e: BaseException) -> LogFormatError:
    why = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    return LogFormatError(f"{path}: inspect_ai cannot read {what} ({type(e).__name__}: {why}); the log is truncated, "
                          "damaged or edited: copy it again from where inspect wrote it (or re-run the eval).")


def _planned(header: Any) -> Optional[int]:
    epochs = header.eval.config.epochs or 1
    ids = header.eval.dataset.sample_ids
    if ids is not None:
        return len(ids) * epochs
    return header.results.total_samples if header.results is not None else None


def _partial(header: Any, held: int) -> Optional[str]:
    """A run that did not finish, or a file short of its header's samples, is read for what it holds
    and said so in one line: never shown as the whole eval."""
    planned = _planned(header)
    finished = header.status == "success" and not header.invalidated
    if finished and (planned is None or held >= planned):
        return None
    why = {"success": "finished", "error": "stopped on an error", "cancelled": "was cancelled",
           "started": "was still running (or was killed)"}.get(header.status, f"has status '{header.status}'")
    if header.invalidated:
        why = "was invalidated"
    error = f" ({str(header.error.message).splitlines()[0][:160]})" if header.error is not None else ""
    of = f"{planned} planned (ids x epochs)" if planned is not None else "an unknown number planned"
    return (f"PARTIAL LOG: this Inspect run {why}{error} and the log holds {held} samples of {of}: "
            "the import is not the whole eval.")


def _samples(path: Path, fmt: str, header: Any) -> Iterator[Tuple[str, Any]]:
    from inspect_ai.log import read_eval_log

    try:
        if fmt == "json":
            samples = read_eval_log(str(path), format="json", resolve_attachments=True).samples or []
            for sample in samples:
                yield _where(sample), sample
            return
        for sample in _eval_samples(str(path)):
            yield _where(sample), sample
    except _READ_ERRORS as e:
        raise _damaged(path, "its samples", e) from None


def _eval_samples(path: str) -> Iterator[Any]:
    """The samples a .eval file holds (listed by its summaries: a partial log lists what it logged),
    BATCH at a time through one zip reader. read_eval_log_samples opens the zip again for every sample,
    which grows with the square of the log (1,000 samples 6.5 s, 3,000 samples 41 s here)."""
    from inspect_ai import log as inspect_log

    by_id = getattr(inspect_log, "read_eval_log_samples_by_id", None)  # inspect-ai >= 0.3.2xx
    if by_id is None:
        yield from inspect_log.read_eval_log_samples(path, all_samples_required=False, resolve_attachments=True,
                                                     format="eval", exclude_fields=UNREAD_FIELDS)
        return
    pairs = [(s.id, s.epoch) for s in inspect_log.read_eval_log_sample_summaries(path)]
    for start in range(0, len(pairs), BATCH):
        yield from by_id(path, pairs[start:start + BATCH], resolve_attachments=True, format="eval",
                         exclude_fields=UNREAD_FIELDS)


def _where(sample: Any) -> str:
    return f"sample {str(sample.id)!r} epoch {sample.epoch}"


def _logged(path: Path, where: str, sample: Any, model: str) -> Tuple[LoggedSample, set]:
    output = sample.output
    usage, others = _own_usage(sample, model)
    reasoning_tokens = token_count(path, where, "usage.reasoning_tokens", usage.reasoning_tokens) if usage else None
    output_tokens = token_count(path, where, "usage.output_tokens", usage.output_tokens) if usage else None
    prompt_tokens = token_count(path, where, "usage.input_tokens", usage.input_tokens) if usage else None
    finish, failure = _finish(sample)
    target = _target(sample.target)
    record = LoggedSample(
        where=where, log_id=str(sample.id), sample_idx=sample.epoch - 1, model=model,
        prompt=_text(path, where, "input", _prompt(sample.input)),
        reasoning_text=_text(path, where, "reasoning", _reasoning(output)),
        answer_text=_text(path, where, "output.completion", output.completion if output is not None else None),
        reasoning_tokens=reasoning_tokens, output_tokens=output_tokens, prompt_tokens=prompt_tokens,
        finish_reason=finish, failure=failure,
        latency_s=sample.total_time if sample.total_time is not None else sample.working_time,
        target=target, fields={"metadata": dict(sample.metadata or {}), "id": sample.id, "target": target})
    return record, others


def _own_usage(sample: Any, model: str) -> Tuple[Any, set]:
    """The evaluated model's usage for this sample, and the other models whose usage the sample logs."""
    per_model = dict(sample.model_usage or {})
    others = {name for name in per_model if name != model}
    if model in per_model:
        return per_model[model], others
    output = sample.output
    if per_model or output is None or output.usage is None:
        return None, others  # a usage table without the model: whatever output.usage holds is another's
    if output.model and not _same_model(output.model, model):
        return None, others | {output.model}
    return output.usage, others


def _same_model(named: str, model: str) -> bool:
    """Whether an output's model name (the provider's, often dated: gpt-4o-2024-08-06) is the header's
    model (provider/name: openai/gpt-4o)."""
    a, b = named.split("/")[-1], model.split("/")[-1]
    return named == model or a == b or a.startswith(b + "-") or b.startswith(a + "-")


def _finish(sample: Any) -> Tuple[str, Optional[str]]:
    if sample.error is not None:
        return FAILED, str(sample.error.message).splitlines()[0][:500] or "an error"
    if sample.limit is not None:
        if sample.limit.type in CUT_LIMITS:
            return LENGTH, None
        return FAILED, f"hit its {sample.limit.type} limit ({sample.limit.limit})"
    stop = sample.output.stop_reason if sample.output is not None else None
    return (LENGTH if stop in TRUNCATED else STOP), None


def _prompt(input: Any) -> Optional[str]:
    if isinstance(input, str):
        return input
    users = [m.text for m in input or [] if getattr(m, "role", None) == "user"]
    return "\n\n".join(users) if users else None


def _reasoning(output: Any) -> Optional[str]:
    """The output message's reasoning blocks (their summary where the provider redacted the reasoning);
    None when it has none, so the cost falls back to the provider's count or the answer rule."""
    from inspect_ai.model import ContentReasoning

    if output is None or not output.choices:
        return None
    content = output.message.content
    if isinstance(content, str):
        return None
    parts = [(block.summary if block.redacted else block.reasoning) for block in content
             if isinstance(block, ContentReasoning)]
    parts = [p for p in parts if p]
    return "\n\n".join(parts) if parts else None


def _target(target: Any) -> Optional[str]:
    if target is None:
        return None
    if isinstance(target, str):
        return target
    return "\n".join(str(t) for t in target)


def _text(path: Path, where: str, name: str, value: Optional[str]) -> Optional[str]:
    from cogdistill.traces.logs.base import MAX_TEXT_CHARS  # read when called: tests lower it

    if value is not None and len(value) > MAX_TEXT_CHARS:
        raise LogFormatError(f"{path}: {where}: its {name} holds {len(value):,} characters, more than "
                             f"{MAX_TEXT_CHARS:,} (live answers are capped at 8 MiB): no real generation is that "
                             "long; drop that sample from the log (inspect_ai.log's write_eval_log can re-write it).")
    return value


def _uncounted(samples: List[LoggedSample]) -> str:
    n = sum(s.output_tokens is None and s.reasoning_tokens is None for s in samples)
    return f"; {n} samples carry no usage of their own and are counted from their text instead." if n else "."
