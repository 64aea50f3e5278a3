"""What every harness-log reader returns: the generations a harness logged, as it logged them.

A reader (one module per format, registered in cogdistill.registry.LOG_FORMATS) turns one log into a
HarnessLog of LoggedSamples and stops with a LogFormatError (one message: the file, the sample, the
fix) when the log cannot be read. It matches nothing to the task and counts nothing itself:
cogdistill.traces.logs.convert matches items and chooses each record's cost, by one rule for all
formats (docs: Bring your evaluation logs):

1. the provider's count of reasoning tokens (`reasoning_tokens`), cost_source "provider";
2. our count of the logged reasoning text (or of a raw generation split by the model's protocol)
   with the model's tokenizer, cost_source "counted";
3. the provider's total generated tokens minus our count of the answer, cost_source
   "total_minus_answer".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, List, Mapping, Optional, Tuple

from cogdistill.errors import CogdistillError

# the finish reasons a reader may give; UNKNOWN: the log does not say (lm-eval), and a reasoning block
# that never closed is then taken as cut
STOP, LENGTH, FAILED, UNKNOWN = "stop", "length", "failed", "unknown"


class LogFormatError(CogdistillError, ValueError):
    """A harness log that cannot be read (or read completely); the message names the file and the fix."""


@dataclass(frozen=True)
class LoggedSample:
    """One generation of one item, as the harness logged it. None means "the log does not say"."""

    where: str  # where it is in the log, for messages: "sample 'q7' epoch 2", "line 31"
    log_id: str  # the harness's id of the item (Inspect sample id, lm-eval doc_id, batch custom_id, ...)
    sample_idx: int  # which repeat of the item (Inspect epoch - 1, lm-eval resps index, ...), from 0
    model: Optional[str] = None  # the model that generated it, as the log names it
    prompt: Optional[str] = None  # the input as the harness sent it: matching by prompt text uses it
    reasoning_text: Optional[str] = None  # None: the log keeps no reasoning text
    answer_text: Optional[str] = None  # the answer (completion) without the reasoning
    # the whole generation when the log does not separate reasoning from answer (lm-eval's resps): split
    # by the model's reasoning protocol, as a live generation is
    raw_text: Optional[str] = None
    reasoning_tokens: Optional[int] = None  # the provider's count of reasoning tokens
    output_tokens: Optional[int] = None  # the provider's count of all generated tokens, reasoning included
    prompt_tokens: Optional[int] = None
    finish_reason: str = STOP  # STOP, LENGTH (max_tokens or the context cut it), FAILED (an error line), UNKNOWN
    failure: Optional[str] = None  # why, for FAILED
    latency_s: Optional[float] = None
    target: Optional[str] = None  # the harness's target, shown beside ours when they differ
    # further fields an item id may be read from (engine.id_field=metadata.puzzle): the sample's
    # metadata, lm-eval's doc, the batch line's custom_id, ...
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HarnessLog:
    """One log, read whole: nothing is reported as imported from a log that broke part-way."""

    path: Path
    format: str  # the LOG_FORMATS name
    samples: List[LoggedSample]
    model: Optional[str] = None  # the log's model (header), when it names one
    # one line each, printed with the import summary (e.g. "records 3 and 9 were duplicates of ...")
    notes: List[str] = field(default_factory=list)
    # set when the log is not the whole run (it stopped early, or the file holds fewer samples than its
    # header plans): why, in one line; the import goes on with what it holds and says so in its summary
    partial: Optional[str] = None
    # set when the log keeps neither a reasoning count nor a reasoning text (lm-eval with
    # think_end_token): why, in one line; the import stops with it instead of counting the answer
    no_reasoning: Optional[str] = None


def token_count(path: Path, where: str, name: str, value: Any) -> Optional[int]:
    """A count a log gives, checked: None stays None; anything else must be a non-negative integer
    (an integral float is accepted: some writers produce them)."""
    if value is None:
        return None
    ok = not isinstance(value, bool) and (isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)
                                                                     and value.is_integer()))
    if not ok or value < 0:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:60] + "..."
        raise LogFormatError(f"{path}: {where}: `{name}` is {shown}, not a token count; the log is damaged or was "
                             "edited: fix or drop that sample.")
    return int(value)


MAX_TEXT_CHARS = 8 * 2 ** 20  # a text field: what a live answer's 8 MiB cap lets through (as replay)
MAX_LINE_BYTES = 64 * 2 ** 20  # a JSON line: several texts at their cap, JSON-escaped (as replay)


def bounded_lines(path: Path, max_bytes: int, too_long: Callable[[int], Exception]) -> Iterator[Tuple[int, bytes]]:
    """(line number, raw line) of a file, one line at a time: a line longer than max_bytes raises
    too_long(line number) after reading that much of it, never held whole."""
    with open(path, "rb") as fh:
        n = 0
        while True:
            raw = fh.readline(max_bytes + 1)
            if not raw:
                return
            n += 1
            if len(raw) > max_bytes:
                raise too_long(n)
            yield n, raw


def jsonl_objects(path: Path, what: str) -> Iterator[Tuple[int, dict]]:
    """(line number, object) of a JSON Lines log, one line at a time: a line over MAX_LINE_BYTES is
    refused, a line that is not a JSON object, or a last line cut short (a log still being written, or
    copied part-way), stops the import."""
    def too_long(n: int) -> LogFormatError:
        return LogFormatError(f"{path}: line {n} is longer than {MAX_LINE_BYTES // 2 ** 20} MiB: no {what} line "
                              "is; check how the file was written.")

    try:
        for n, raw in bounded_lines(path, MAX_LINE_BYTES, too_long):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                cut = not raw.endswith(b"\n")  # readline stops short of a newline only at the end of the file
                raise LogFormatError(
                    f"{path}: line {n} is not valid JSON ({exc}): "
                    + ("the file ends part-way through it (cut short while being written or copied?); "
                       "import the complete file." if cut else f"this is no {what} file, or it was damaged.")
                ) from None
            if not isinstance(value, dict):
                raise LogFormatError(f"{path}: line {n} is a JSON {type(value).__name__}, not an object: this "
                                     f"is no {what} file.")
            yield n, value
    except OSError as exc:
        raise LogFormatError(f"{path}: cannot be read ({exc}).") from exc


def checked_size(path: Path, limit: int, fix: str) -> int:
    """The file's size, refused over limit (a file read whole): the message says how to get under it."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise LogFormatError(f"{path}: cannot be read ({exc}).") from exc
    if size > limit:
        raise LogFormatError(f"{path}: {size / 2 ** 30:.1f} GiB, more than {limit / 2 ** 30:g} GiB (it is read "
                             f"whole): {fix}")
    return size


def log_text(path: Path, where: str, name: str, value: Any) -> Optional[str]:
    """A text a log gives, checked: a string of at most MAX_TEXT_CHARS characters, or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:60] + "..."
        raise LogFormatError(f"{path}: {where}: `{name}` is {shown}, not text; the log is damaged or was edited.")
    if len(value) > MAX_TEXT_CHARS:
        raise LogFormatError(f"{path}: {where}: `{name}` holds {len(value):,} characters, more than "
                             f"{MAX_TEXT_CHARS:,} (no generation's text is that long; live answers are capped at "
                             "8 MiB): drop that sample or check how the log was written.")
    return value
