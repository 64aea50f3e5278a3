"""From generated text to a trace record: reasoning/answer split, token counts, correctness.

The split rule (docs: Concepts, "What gets measured"; each model's reasoning protocol, cogdistill.engines.protocols):
1. A server-provided reasoning field is the reasoning; the content is the answer.
2. Else, with think tags: reasoning is the content between `<think>` (from the template or the
   model) and the first `think_end`; the answer is what follows (harmony: the analysis channel and
   the final channel). Tags and channel headers count in total_tokens only.
3. Else, if the model has a reasoning block and was cut by max_tokens before it closed, the whole
   output is reasoning and there is no answer.
4. Else, the answer is the final line that holds the scorer's extracted answer and everything
   before that line is reasoning; with no extractable answer, the whole response is reasoning.
A generation that hit max_tokens is censored: for models with think tags, when it stopped
before `think_end`; for models without them, always (their response is their reasoning).
A generation we count longer than max_tokens (beyond count_tolerance) is censored too, with
finish_reason "overlong": the server ignored the budget, so its length is no complete cost
under that budget and must never be counted as one.

Token counts come from the generated token ids when the engine has them, else from the model's
own tokenizer, so every engine counts the same way.

A generation whose row cannot be made (the scorer or the split raises, or a count is no count:
checked_row) is a failed trace instead (failed_row): finish_reason "failed", censored, wrong, no
counts, and the reason in `failure`; cogdistill.traces.source keeps it out of the caches.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, List, Optional, Sequence, Tuple  # noqa: F401

import polars as pl

from cogdistill.config.schema import ModelConfig, Role
from cogdistill.engines.base import Generation, Tokenizer
from cogdistill.engines.protocols import (EffortPlan, Plain, ProtocolError, Split, answer_line_start, protocol_for,  # noqa: F401 (tokens_before: re-exported)
                                          tokens_before)
from cogdistill.errors import CogdistillError
from cogdistill.tasks.scorers import Scored

TRACE_SCHEMA = {
    "model": pl.Utf8, "task": pl.Utf8, "item_id": pl.Utf8, "sample_idx": pl.Int64,
    "prompt": pl.Utf8, "reasoning_text": pl.Utf8, "answer_text": pl.Utf8,
    "reasoning_tokens": pl.Int64, "answer_tokens": pl.Int64, "total_tokens": pl.Int64,
    "prompt_tokens": pl.Int64, "finish_reason": pl.Utf8, "censored": pl.Boolean,
    "extracted_answer": pl.Utf8, "target": pl.Utf8, "correct": pl.Boolean,
    "engine": pl.Utf8, "latency_s": pl.Float64,
    # the server's own accounting (openai engine), kept beside ours for comparison
    "usage_prompt_tokens": pl.Int64, "usage_completion_tokens": pl.Int64,
    "usage_reasoning_tokens": pl.Int64,  # completion_tokens_details.reasoning_tokens, when given
    # our total_tokens and the server's completion_tokens disagree beyond count_tolerance; null
    # without a per-generation server count (no usage, or n > 1 where it covers all samples)
    "token_count_mismatch": pl.Boolean,
    # effort (cogdistill.engines.protocols): the job's effort level, and whether budget forcing cut the
    # reasoning at its budget (null without a budget)
    "effort": pl.Utf8, "budget_hit": pl.Boolean,
    # where reasoning_tokens' cost comes from: "counted" (our tokenizer, over the reasoning text or ids)
    # or "server" (the server's usage.completion_tokens_details.reasoning_tokens, no text to count)
    "cost_source": pl.Utf8,
    # why a generation has no trace values (finish_reason "failed": its scorer or counting failed); null
    # for every usable trace
    "failure": pl.Utf8,
}


# The study folder's and the report's view of a trace (cogdistill.report.study): the record's keys
# and outcome, with the chosen cost (reasoning_tokens or total_tokens) as `cost`.
ANALYSIS_COLUMNS = {
    **{k: TRACE_SCHEMA[k] for k in ("model", "task", "item_id", "sample_idx")},
    "cost": pl.Float64,
    **{k: TRACE_SCHEMA[k] for k in ("correct", "censored", "budget_hit", "cost_source")},
}


def censoring(finish_reason: str, *, closed: bool, think_end: Optional[str], total: Optional[int] = None,
              max_tokens: Optional[int] = None) -> Tuple[str, bool]:
    """(finish_reason, censored) by the rule above, for generated and replayed traces alike. closed:
    the reasoning ended (think_end seen, or an answer exists)."""
    if max_tokens is not None and total is not None and total > max_tokens + count_tolerance(max_tokens):
        return "overlong", True
    if finish_reason == "overlong":
        return finish_reason, True
    # With think tags, only a cut inside the reasoning censors the cost; without them the
    # response is the reasoning, so any cut does.
    return finish_reason, finish_reason == "length" and (not closed if think_end else True)


def count_tolerance(reference: int) -> int:
    """How far two token counts of one generation may differ and still agree: max(3, 5%).
    Servers count the stop token and special tokens we strip, and re-tokenizing decoded text
    does not always give back the same tokens."""
    return max(3, int(0.05 * reference))


def split_point(text: str, think_end: Optional[str], answer_start: Optional[int]) -> int:
    """Character offset where the answer begins (rules 2 and 4 above)."""
    if think_end and think_end in text:
        return text.index(think_end) + len(think_end)
    return answer_line_start(text, answer_start)


def _tags_protocol(think_start: Optional[str], think_end: Optional[str]) -> Plain:
    """The protocol that bare think tags describe (callers that have no model config)."""
    model = ModelConfig(name="traces", hf_id="-", role=Role.control, family="-", think_start=think_start,
                        think_end=think_end)
    return protocol_for(model)


def trace_row(gen: Generation, *, tokenizer: Tokenizer, score: Callable[[str], Scored],
              think_start: Optional[str] = None, think_end: Optional[str] = None, max_tokens: Optional[int] = None,
              protocol: Optional[Plain] = None, plan: Optional[EffortPlan] = None, budget_hit: Optional[bool] = None,
              ) -> dict:
    """The per-generation fields of a trace record, split by the model's reasoning protocol (or, without
    one, by bare think tags). With max_tokens (the job's budget), a generation counted longer than it
    allows is censored as "overlong"."""
    protocol = protocol or _tags_protocol(think_start, think_end)
    plan = plan or EffortPlan()

    def decode(ids: Sequence[int]) -> str:
        return tokenizer.decode(list(ids), skip_special_tokens=True)

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False)) if text else 0

    usage = gen.usage or {}
    cost_source = "counted"
    if gen.reasoning_text is not None:  # rule 1: the server split it
        reasoning, answer = gen.reasoning_text, gen.text
        closed = bool(answer.strip()) or gen.finish_reason != "length"  # cut before any answer: still thinking
        split = Split(reasoning, answer, count(reasoning) if reasoning.strip() else 0, count(answer), closed)
        total = split.reasoning_tokens + split.answer_tokens  # without ids: the markup is unknown (a lower bound)
        if gen.token_ids is not None:  # every generated token, markup included, as for local engines
            total = len(gen.token_ids)
            marker = protocol.close_marker
            full = tokenizer.decode(list(gen.token_ids), skip_special_tokens=False)
            split = dataclasses.replace(split, closed=closed or bool(marker and marker in full))
    else:
        text = gen.text
        ids = list(gen.token_ids) if gen.token_ids is not None else tokenizer.encode(text, add_special_tokens=False)
        protocol.check_generation(text, gen.token_ids)
        split = protocol.split(text, ids, decode, gen.finish_reason, lambda t: score(t).start, plan)
        total = len(ids)
        server = protocol.server_cost(split, usage, ids)  # a server's count is the cost (protocol server_count)
        if server is not None:
            split, total, cost_source = server
    scored = scored_answer(score, split.answer_text)
    has_block = protocol.separates_reasoning and plan.thinking  # else the response is the reasoning: any cut censors
    finish, censored = censoring(gen.finish_reason, closed=split.closed, think_end="block" if has_block else None,
                                 total=total, max_tokens=max_tokens)
    server_count = usage.get("completion_tokens")  # absent for n > 1: then it is request_completion_tokens
    return {
        "reasoning_text": split.reasoning_text, "answer_text": split.answer_text,
        "reasoning_tokens": split.reasoning_tokens, "answer_tokens": split.answer_tokens,
        "total_tokens": total, "prompt_tokens": gen.prompt_tokens,
        "finish_reason": finish, "censored": censored,
        "extracted_answer": scored.answer, "correct": scored.correct, "latency_s": gen.latency_s,
        "usage_prompt_tokens": usage.get("prompt_tokens"),
        "usage_completion_tokens": server_count,
        "usage_reasoning_tokens": usage.get("reasoning_tokens"),
        "token_count_mismatch": (None if server_count is None
                                 else abs(total - server_count) > count_tolerance(server_count)),
        "effort": plan.effort, "budget_hit": budget_hit if plan.budget is not None else None,
        "cost_source": cost_source,
    }


def scored_answer(score: Callable[[str], Scored], answer: str) -> Scored:
    """The answer scored by the task's scorer; an empty answer is wrong (nothing to score), for every source."""
    return score(answer) if answer.strip() else Scored(None, None, False)


# No count in a trace is larger: a request holds at most sampling.n (<= 1000) generations of
# max_tokens (<= 1,000,000) each. A larger value is no count, and would overflow the Int64 table.
MAX_COUNT = 10 ** 9
FAILED = "failed"  # the finish_reason of a generation that could not be scored or counted


class UncountableTrace(CogdistillError):
    """A generation whose trace cannot be made (its scorer or counting failed, or a count is no count)."""


def checked_row(row: dict) -> dict:
    """row, refused (UncountableTrace) when a count in it is no count: a trace table must hold it."""
    for column, dtype in TRACE_SCHEMA.items():
        value = row.get(column)
        if dtype == pl.Int64 and value is not None and not (isinstance(value, int) and 0 <= value <= MAX_COUNT):
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
            raise UncountableTrace(f"`{column}` is {shown}, not a token count (0..{MAX_COUNT:,})")
    return row


def failed_row(gen: Generation, reason: str, *, plan: Optional[EffortPlan] = None) -> dict:
    """The per-generation fields of a generation that could not be scored or counted: censored, wrong,
    no counts (null: never a cost, whatever the censoring policy), finish_reason "failed"."""
    plan = plan or EffortPlan()
    return {"reasoning_text": gen.reasoning_text, "answer_text": gen.text, "reasoning_tokens": None,
            "answer_tokens": None, "total_tokens": None, "prompt_tokens": None, "finish_reason": FAILED,
            "censored": True, "extracted_answer": None, "correct": False, "latency_s": gen.latency_s,
            "usage_prompt_tokens": None, "usage_completion_tokens": None, "usage_reasoning_tokens": None,
            "token_count_mismatch": None, "effort": plan.effort, "budget_hit": None, "cost_source": None,
            "failure": reason}


def failure_reason(exc: BaseException) -> str:
    """An exception as a trace's one-line reason."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= 300 else text[:300] + "..."
    return text if isinstance(exc, CogdistillError) else f"{type(exc).__name__}: {text}"


def traces_frame(rows: List[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=TRACE_SCHEMA)
