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
    holds after the prompt's rendering; when that is no prefix of the script (a forced close was
    appended), the answer alone. Tokens are the tokenizer's (default: one per character; `stop`:
    a final stop token the engine strips, as local engines do); `calls` records (max_tokens, n requests)."""
    name, version = "scripted", "1"

    def __init__(self, script: Callable[[str], str], answer: Callable[[str], str], tokenizer=None,
                 render: Callable[[str], str] = lambda prompt: prompt + "\n", stop: str = ""):
        self.script, self.answer, self.calls = script, answer, []
        self.tok, self.render, self.stop = tokenizer or CharTokenizer(), render, stop

    def generate(self, requests: Sequence[Request], sampling, max_tokens: int, on_result) -> None:
        self.calls.append((max_tokens, len(requests)))
        for req in requests:
            done = req.rendered[len(self.render(req.prompt)):]
            full = self.script(req.prompt)
            rest = self.tok.encode(full[len(done):] if full.startswith(done) else self.answer(req.prompt))
            ids = rest[:max_tokens]
            stopped = len(rest) <= max_tokens
            if stopped and self.stop and ids and self.tok.decode(ids[-1:], skip_special_tokens=False) == self.stop:
                ids = ids[:-1]
            gen = Generation(text=self.tok.decode(ids), token_ids=tuple(ids), prompt_tokens=len(req.rendered),
                             finish_reason="stop" if stopped else "length", latency_s=0.0)
            on_result(req.index, [gen] * sampling.n)

    def close(self) -> None:
        pass


def char_ids(text: str) -> List[int]:
    return [ord(c) for c in text]
