"""The engine protocol: what every engine (named in cogdistill.registry, imported lazily) implements.

An engine turns rendered prompts into Generations and hands each request's results back as
soon as they exist (so they can be cached before the next batch starts). Everything after
that (reasoning/answer split, token counting, scoring) happens in cogdistill.traces.records, identically for
every engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Protocol, Sequence, Tuple

from cogdistill.config.schema import SamplingConfig
from cogdistill.errors import CogdistillError


@dataclass(frozen=True)
class Request:
    index: int  # position in the caller's list, echoed back with the results
    prompt: str  # the user prompt (servers apply their own chat template)
    rendered: str  # the exact text after the chat template (local engines)


@dataclass(frozen=True)
class Generation:
    text: str  # the generated text, special tokens removed
    token_ids: Optional[Tuple[int, ...]]  # generated ids (no prompt, padding or stop token), when known
    prompt_tokens: int
    finish_reason: str  # "stop" (EOS / stop string) or "length" (hit max_tokens)
    latency_s: float  # wall time of the call that produced it, divided over its batch
    reasoning_text: Optional[str] = None  # when the server splits reasoning out itself
    usage: Optional[Dict[str, int]] = None  # the server's own token accounting, kept alongside ours


OnResult = Callable[[int, List[Generation]], None]


class Engine(Protocol):
    name: str
    version: str  # the engine library's version: part of the cache key

    def generate(self, requests: Sequence[Request], sampling: SamplingConfig, max_tokens: int,
                 on_result: OnResult) -> None:
        """Produce sampling.n generations per request; call on_result(request.index, gens)
        for each request as it finishes, in any order."""

    def close(self) -> None: ...


class Tokenizer(Protocol):
    def encode(self, text: str, add_special_tokens: bool = ...) -> List[int]: ...
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = ...) -> str: ...


class EngineError(CogdistillError):
    pass


def check_context(requests: Sequence[Request], lengths: Dict[int, int], context: Optional[int], source: str) -> None:
    """A prompt that fills the model's context leaves nothing to generate (models with learned
    positions crash past it, vLLM refuses it mid-run): refuse it by name before generating."""
    longest = max(requests, key=lambda r: lengths[r.index], default=None)
    if context and longest is not None and lengths[longest.index] >= context:
        raise EngineError(
            f"prompt {longest.index} ({longest.prompt[:60]!r}...) is {lengths[longest.index]} tokens after the "
            f"chat template, but the model's context ({source}) is {context}: shorten the task's `prompt:` "
            "template or leave out its longest items."
        )
