"""Reading the JSON body of a /chat/completions or /completions answer: its choices and usage.

Pure reading, nothing tokenized: each choice becomes an Output (text, the server's reasoning
split from `message.reasoning_content` or `message.reasoning`, finish reason, raw token ids), and
the usage block a dict of counts. The engine (engines/openai_server.py) checks them against the
request's budget and turns them into Generations. Every malformed piece is an error made by the
caller's `bad(what)`, and every quoted server value goes through its `quote` (masked, then cut).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from cogdistill.config.schema import MAX_SAMPLES, MAX_TOKENS_LIMIT
from cogdistill.engines.base import EngineError

# One request's usage can count at most sampling.n generations of max_tokens each (both at their limits).
MAX_USAGE_TOKENS = MAX_TOKENS_LIMIT * MAX_SAMPLES

Bad = Callable[[str], EngineError]
Quote = Callable[..., str]


class Output(NamedTuple):
    """One choice of an answer, read but not yet tokenized."""
    text: str
    reasoning: Optional[str]
    finish: str
    token_ids: Any  # the server's raw `token_ids`, checked later


def token_count(value: Any) -> Optional[int]:
    """A usage value as a count: a non-negative int (or integral float) no larger than any real
    request's (MAX_USAGE_TOKENS), else None (broken): 10**30 would overflow the trace table."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return value if 0 <= value <= MAX_USAGE_TOKENS else None
    return None


def outputs(data: Any, n: int, chat: bool, bad: Bad, quote: Quote) -> List[Output]:
    """The n choices of an answer in index order; `chat`: a /chat/completions answer."""
    if not isinstance(data, dict):
        raise bad(f"expected a JSON object, got {type(data).__name__}")
    choices = data.get("choices")
    if not isinstance(choices, list):
        err = data.get("error")  # some servers report errors with HTTP 200
        said = err.get("message") if isinstance(err, dict) else err
        raise bad("the field `choices` is missing" + (f"; the server says: {quote(said)}" if said else ""))
    if not choices:
        raise bad("`choices` is empty: the server generated nothing for this request")
    if len(choices) != n:
        hint = " (does the server support sampling.n > 1?)" if n > 1 else ""
        raise bad(f"{len(choices)} choices for n={n}{hint}")
    if not all(isinstance(c, dict) for c in choices):
        raise bad("`choices` holds something other than objects")
    if all(isinstance(c.get("index"), int) for c in choices):
        choices = sorted(choices, key=lambda c: c["index"])
    return [_output(choice, i, chat, bad, quote) for i, choice in enumerate(choices)]


def _output(choice: Dict[str, Any], i: int, chat: bool, bad: Bad, quote: Quote) -> Output:
    finish = "length" if choice.get("finish_reason") == "length" else "stop"
    if not chat:
        text = choice.get("text")
        if not isinstance(text, str):
            raise bad(f"the field `choices[{i}].text` is missing or not text ({quote(repr(text), 60)})")
        return Output(text, None, finish, choice.get("token_ids"))
    msg = choice.get("message")
    if not isinstance(msg, dict):
        raise bad(f"the field `choices[{i}].message` is missing")
    reasoning = next((msg[f] for f in ("reasoning_content", "reasoning") if isinstance(msg.get(f), str)), None)
    if "content" not in msg:
        raise bad(f"the field `choices[{i}].message.content` is missing")
    text = msg["content"]
    if text is None and (reasoning is not None or finish == "length"):
        text = ""  # cut (or ended) inside the reasoning: no answer
    if not isinstance(text, str):
        raise bad(f"`choices[{i}].message.content` is {quote(repr(text), 60)}, not text")
    return Output(text, reasoning, finish, choice.get("token_ids"))


def usage(raw: Any, quote: Quote) -> Tuple[Dict[str, int], List[str]]:
    """The server's token accounting, and its values that are no count (NaN, Infinity, negative,
    text, more than MAX_USAGE_TOKENS) quoted; when there are any, the accounting is broken and
    the usage returned is empty (the caller counts tokens itself)."""
    if not isinstance(raw, dict):
        return {}, []
    values = {k: raw.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    details = raw.get("completion_tokens_details")
    if isinstance(details, dict):
        values["reasoning_tokens"] = details.get("reasoning_tokens")
    counts = {k: token_count(v) for k, v in values.items() if v is not None}
    broken = [f"{k}={quote(repr(values[k]), 40)}" for k, v in counts.items() if v is None]
    return ({}, broken) if broken else (counts, [])  # type: ignore[return-value]


def per_generation(counts: Dict[str, int], n: int) -> Dict[str, int]:
    """The usage each of n generations carries: with n > 1 the server counts all n choices together
    and one generation's share is unknown, so the shared counts are named request_*."""
    if n > 1 and "completion_tokens" in counts:
        return {("request_" + k if k in ("completion_tokens", "total_tokens", "reasoning_tokens") else k): v
                for k, v in counts.items()}
    return counts
