"""Scripted generations: an engine that 'generates' hand-written protocol text one character per
token, continuing whatever the prompt already holds, so splits, budget forcing and counts can be
checked on exact numbers (no model, no randomness)."""

from __future__ import annotations

from typing import Callable, List, Sequence

from cogdistill.engines.base import Generation, Request
from cogdistill.engines.protocols import protocol_for
from helpers.traces import CharTokenizer


class ScriptedTokenizer(CharTokenizer):
    """The model tokenizer seen by a trace source: renders `<prompt>\\n`, one token per character."""

    def __init__(self, model, weights=None, plan=None):
        self.protocol, self.plan = protocol_for(model), plan

    def render(self, prompt: str) -> str:
        return prompt + "\n"


class ScriptedEngine:
    """For each request: the script of its prompt, continued from what the rendered text already
    holds after `<prompt>\\n`; when that is no prefix of the script (a forced close was appended),
    the answer alone. One token per character; `calls` records (max_tokens, n requests)."""
    name, version = "scripted", "1"

    def __init__(self, script: Callable[[str], str], answer: Callable[[str], str]):
        self.script, self.answer, self.calls = script, answer, []

    def generate(self, requests: Sequence[Request], sampling, max_tokens: int, on_result) -> None:
        self.calls.append((max_tokens, len(requests)))
        for req in requests:
            done = req.rendered[len(req.prompt) + 1:]
            full = self.script(req.prompt)
            rest = full[len(done):] if full.startswith(done) else self.answer(req.prompt)
            text = rest[:max_tokens]
            gen = Generation(text=text, token_ids=tuple(ord(c) for c in text), prompt_tokens=len(req.rendered),
                             finish_reason="length" if len(rest) > max_tokens else "stop", latency_s=0.0)
            on_result(req.index, [gen] * sampling.n)

    def close(self) -> None:
        pass


def char_ids(text: str) -> List[int]:
    return [ord(c) for c in text]
