"""From generated text to a trace record: reasoning/answer split, token counts, correctness.

The split rule (docs: Concepts, "Traces"):
1. A server-provided reasoning field is the reasoning; the content is the answer.
2. Else, if the model declares `think_end` and it occurs, reasoning is everything up to and
   including the first `think_end` (R1-distill templates put `<think>` in the prompt, so the
   output may hold only `</think>`); the answer is what follows.
3. Else, if the model declares `think_end` and was cut by max_tokens before it, the whole
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
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import polars as pl

from cogdistill.engines.base import Generation, Tokenizer
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
}


# The study folder's and the report's view of a trace (cogdistill.report.study): the record's keys
# and outcome, with the chosen cost (reasoning_tokens or total_tokens) as `cost`.
ANALYSIS_COLUMNS = {
    **{k: TRACE_SCHEMA[k] for k in ("model", "task", "item_id", "sample_idx")},
    "cost": pl.Float64,
    **{k: TRACE_SCHEMA[k] for k in ("correct", "censored")},
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
    if answer_start is None:
        return len(text)
    return text.rfind("\n", 0, answer_start) + 1


def tokens_before(ids: Sequence[int], split: int, text: str, decode: Callable[[Sequence[int]], str]) -> int:
    """Smallest k such that decode(ids[:k]) covers text[:split] (binary search over prefixes)."""
    if split <= 0:
        return 0
    if split >= len(text):
        return len(ids)
    lo, hi = 0, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if len(decode(ids[:mid])) >= split:
            hi = mid
        else:
            lo = mid + 1
    return lo


def trace_row(gen: Generation, *, tokenizer: Tokenizer, think_start: Optional[str], think_end: Optional[str],
              score: Callable[[str], Scored], max_tokens: Optional[int] = None) -> dict:
    """The per-generation fields of a trace record. With max_tokens (the job's budget), a
    generation counted longer than it allows is censored as "overlong"."""
    def decode(ids: Sequence[int]) -> str:
        return tokenizer.decode(list(ids), skip_special_tokens=True)

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False)) if text else 0

    if gen.reasoning_text is not None:
        reasoning, answer = gen.reasoning_text, gen.text
        reasoning_tokens, answer_tokens = count(reasoning), count(answer)
        closed = bool(answer.strip()) or gen.finish_reason != "length"  # cut before any answer: still thinking
    else:
        text = gen.text
        ids = list(gen.token_ids) if gen.token_ids is not None else tokenizer.encode(text, add_special_tokens=False)
        closed = bool(think_end) and think_end in text
        if think_end and not closed and gen.finish_reason == "length":
            split = len(text)  # cut inside the reasoning: there is no answer
        else:
            tail_start = split_point(text, think_end, None) if closed else 0
            scored_tail = score(text[tail_start:])
            answer_start = None if scored_tail.start is None else tail_start + scored_tail.start
            split = split_point(text, think_end, answer_start)
        reasoning, answer = text[:split], text[split:]
        reasoning_tokens = tokens_before(ids, split, text, decode)
        answer_tokens = len(ids) - reasoning_tokens
    if think_start and reasoning.lstrip().startswith(think_start):
        reasoning = reasoning.lstrip()[len(think_start):]
    scored = score(answer) if answer.strip() else Scored(None, None, False)
    total = reasoning_tokens + answer_tokens
    finish, censored = censoring(gen.finish_reason, closed=closed, think_end=think_end, total=total,
                                 max_tokens=max_tokens)
    usage = gen.usage or {}
    server_count = usage.get("completion_tokens")  # absent for n > 1: then it is request_completion_tokens
    return {
        "reasoning_text": reasoning, "answer_text": answer,
        "reasoning_tokens": reasoning_tokens, "answer_tokens": answer_tokens,
        "total_tokens": total, "prompt_tokens": gen.prompt_tokens,
        "finish_reason": finish, "censored": censored,
        "extracted_answer": scored.answer, "correct": scored.correct, "latency_s": gen.latency_s,
        "usage_prompt_tokens": usage.get("prompt_tokens"),
        "usage_completion_tokens": server_count,
        "usage_reasoning_tokens": usage.get("reasoning_tokens"),
        "token_count_mismatch": (None if server_count is None
                                 else abs(total - server_count) > count_tolerance(server_count)),
    }


def traces_frame(rows: List[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=TRACE_SCHEMA)
