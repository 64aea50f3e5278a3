"""Reasoning protocols: how a model marks its reasoning, how an effort level reaches it, and how its
output splits into reasoning and answer. One protocol per model config (`protocol:`), used the same
way by every engine: the prompt renderer (engines/tokenizer.py), the trace split
(traces/records.py) and budget forcing (traces/source.py). Docs: Reasoning protocols.

What is counted: reasoning_tokens are the tokens of the reasoning's content and answer_tokens those
of the answer's content; the markup around them (`<think>`, `</think>`, harmony's channel headers and
`<|end|>`) counts in total_tokens only, so total = reasoning + answer + markup = every generated token.
This is also what a server's reasoning parser returns (vLLM's reasoning_content holds no tags), and
a think block holding only whitespace (Qwen3's non-thinking `<think>\\n\\n</think>`) costs zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

from cogdistill.config.schema import ConfigError, EffortConfig, ModelConfig, model_file
from cogdistill.errors import CogdistillError

Decode = Callable[[Sequence[int]], str]
AnswerStart = Callable[[str], Optional[int]]  # where the scorer finds the answer in a text, or None


class ProtocolError(CogdistillError):
    pass


@dataclass(frozen=True)
class EffortPlan:
    """What one effort level does to one model's requests."""
    effort: str = "default"
    thinking: bool = True  # False: no reasoning block (its cost is the visible response)
    template_kwargs: Dict[str, Any] = field(default_factory=dict)  # to the chat template (enable_thinking)
    request_fields: Dict[str, Any] = field(default_factory=dict)  # to a server (reasoning_effort, ...)
    prompt_level: Optional[str] = None  # a level the rendered prompt names itself (harmony: `Reasoning: <level>`)
    budget: Optional[int] = None  # thinking tokens before budget forcing closes the reasoning


@dataclass(frozen=True)
class Split:
    reasoning_text: str
    answer_text: str
    reasoning_tokens: int
    answer_tokens: int
    closed: bool  # the reasoning ended: its close marker came, or there was no reasoning block


def tokens_before(ids: Sequence[int], split: int, text: str, decode: Decode) -> int:
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


def answer_line_start(text: str, answer_start: Optional[int]) -> int:
    """Without a close marker, the answer is the line holding the scorer's answer
    (docs: Concepts, "What gets measured")."""
    return len(text) if answer_start is None else text.rfind("\n", 0, answer_start) + 1


def span_split(text: str, ids: Sequence[int], decode: Decode, r0: int, r1: int, a0: int, closed: bool) -> Split:
    """Reasoning text[r0:r1], answer text[a0:], counted on the generated ids."""
    at = tokens_before(ids, a0, text, decode)
    reasoning, answer = text[r0:r1], text[a0:]
    r_count = tokens_before(ids, r1, text, decode) - tokens_before(ids, r0, text, decode) if reasoning.strip() else 0
    return Split(reasoning, answer, r_count, len(ids) - at if answer.strip() else 0, closed)


class Plain:
    """No reasoning block (instruct models): the visible response is the reasoning; the answer is
    the line holding the scorer's answer.

    Every difference between protocols is a method or attribute here, overridden below: no module
    outside this one asks which protocol a model has."""
    name = "plain"
    levels: tuple = ()
    close_marker: Optional[str] = None  # the text (special tokens spelled out) that ends the reasoning
    # the reasoning is apart from the answer (a block, a channel, or out of sight on a server): only a cut
    # inside it censors a cost, and the reasoning tokens are the cost; else the whole response is both
    separates_reasoning = False

    def __init__(self, model: ModelConfig):
        self.model = model

    def render(self, prompt: str, plan: EffortPlan) -> Optional[str]:
        """The prompt as the model sees it, when the protocol renders it itself; None: the model's chat
        template does (engines/tokenizer.py)."""
        return None

    def tokenizer(self) -> Optional[Any]:
        """The tokenizer the protocol counts with instead of the weights' own (None: the weights')."""
        return None

    def check_tokenizer(self, tok: Any, where: str) -> None:
        """Refuse (ProtocolError) a tokenizer in which the protocol's markers cannot be read: every count
        would be silently zero or wrong. where: the model config and weights, for the message."""

    def check_generation(self, text: str, token_ids: Optional[Sequence[int]]) -> None:
        """Refuse (ProtocolError) an output that cannot be split as this protocol's."""

    def server_cost(self, split: Split, usage: Dict[str, Any], ids: Sequence[int]) -> Optional[tuple]:
        """(split, total tokens, cost_source) when the reasoning cost is the server's count, not ours."""
        return None

    def plan(self, effort: EffortConfig) -> EffortPlan:
        if effort.name != "default":
            raise ConfigError(f"{model_file(self.model.name)}: effort={effort.name} needs a reasoning protocol; "
                              f"model '{self.model.name}' has `protocol: {self.name}` (no reasoning block): run it "
                              "with effort=default.")
        return EffortPlan()

    def split(self, text: str, ids: Sequence[int], decode: Decode, finish: str, answer_start: AnswerStart,
              plan: EffortPlan) -> Split:
        a0 = answer_line_start(text, answer_start(text))
        return span_split(text, ids, decode, 0, a0, a0, closed=True)

    def force_close(self, rendered: str, partial: str) -> str:
        raise ProtocolError(f"model '{self.model.name}' has no reasoning block to close")


class ThinkTags(Plain):
    """`<think> ... </think>` then the answer; `<think>` may come from the chat template (R1-distill:
    the output holds only `</think>`) or from the model (QwQ, Qwen3, Phi-4-reasoning)."""
    name = "think_tags"
    separates_reasoning = True

    def __init__(self, model: ModelConfig):
        super().__init__(model)
        self.start, self.end = model.think_start, model.think_end or "</think>"
        self.close_marker = self.end

    def check_tokenizer(self, tok: Any, where: str) -> None:
        """Think tags must be tokens or text that decoding keeps: the split finds them in the decoded text."""
        for name, marker in (("think_start", self.model.think_start), ("think_end", self.end)):
            if not marker or not marker.strip():
                continue
            back = tok.decode(tok.encode(marker, add_special_tokens=False), skip_special_tokens=True)
            if marker.strip() not in back:
                raise ProtocolError(
                    f"conf/model/{self.model.name}.yaml: `{name}: {marker}` does not survive the tokenizer of model "
                    f"'{self.model.name}' ({where}): it decodes to {back[:60]!r} (a special token that decoding "
                    "drops, or text it cannot spell), so the reasoning could never be split from the answer. Set the "
                    "tag these weights write, or the `protocol:` they speak (plain: no reasoning block).")

    def plan(self, effort: EffortConfig) -> EffortPlan:
        if effort.name == "default":
            return EffortPlan()
        if effort.level == "none":  # budget forcing with no budget: close the block at once (NoThinking)
            return EffortPlan(effort="none", budget=0)
        if effort.budget is not None:
            return EffortPlan(effort=effort.name, budget=effort.budget)
        raise self._no_levels(effort)

    def _no_levels(self, effort: EffortConfig) -> ConfigError:
        return ConfigError(
            f"{model_file(self.model.name)}: model '{self.model.name}' (protocol {self.name}) has no effort levels, "
            f"so effort={effort.name} cannot apply: use effort=budget=<N> (a thinking-token budget) or effort=none "
            "(the block closed at once); levels low/medium/high are for protocol harmony (gpt-oss) and "
            "server_count (hosted APIs).")

    def split(self, text: str, ids: Sequence[int], decode: Decode, finish: str, answer_start: AnswerStart,
              plan: EffortPlan) -> Split:
        lead = len(text) - len(text.lstrip())
        r0 = lead + len(self.start) if self.start and text[lead:].startswith(self.start) else 0
        end = text.find(self.end, r0)
        if end >= 0:
            return span_split(text, ids, decode, r0, end, end + len(self.end), closed=True)
        if finish == "length":  # cut inside the reasoning: no answer
            return span_split(text, ids, decode, r0, len(text), len(text), closed=False)
        a0 = max(r0, answer_line_start(text, answer_start(text)))
        return span_split(text, ids, decode, r0, a0, a0, closed=False)

    def force_close(self, rendered: str, partial: str) -> str:
        for k in range(len(self.end) - 1, 0, -1):  # the budget cut the close tag itself: complete it
            if partial.endswith(self.end[:k]):
                return self.end[k:] + "\n\n"
        opened = bool(self.start) and (rendered.rstrip().endswith(self.start) or self.start in partial)
        return ("" if opened or not self.start else self.start) + self.end + "\n\n"  # s1: just the delimiter


class Qwen3(ThinkTags):
    """Qwen3's hybrid thinking: the same weights think or not, switched by the chat template's
    `enable_thinking` (and a vLLM server's `chat_template_kwargs`). Thinking off, the template puts
    an empty block in the prompt: the output is all answer and costs zero reasoning tokens."""
    name = "qwen3"

    def plan(self, effort: EffortConfig) -> EffortPlan:
        if effort.level == "none":
            switch = {"enable_thinking": False}
            return EffortPlan(effort="none", thinking=False, template_kwargs=switch,
                              request_fields={"chat_template_kwargs": switch})
        if effort.name != "default" and effort.budget is None:
            raise self._no_levels(effort)
        switch = {"enable_thinking": True}
        return EffortPlan(effort=effort.name, template_kwargs=switch, request_fields={"chat_template_kwargs": switch},
                          budget=effort.budget)

    def _no_levels(self, effort: EffortConfig) -> ConfigError:
        return ConfigError(
            f"{model_file(self.model.name)}: Qwen3 thinks or not, it has no effort levels: effort={effort.name} "
            "cannot apply to model '{0}'; use effort=none (thinking off), effort=default (on) or "
            "effort=budget=<N> (a thinking-token budget).".format(self.model.name))

    def split(self, text: str, ids: Sequence[int], decode: Decode, finish: str, answer_start: AnswerStart,
              plan: EffortPlan) -> Split:
        if not plan.thinking and self.end not in text:
            return span_split(text, ids, decode, 0, 0, 0, closed=True)
        return super().split(text, ids, decode, finish, answer_start, plan)


class ServerCount(Plain):
    """A hosted API that reasons out of sight: it returns the answer and only a count of reasoning
    tokens (usage.completion_tokens_details.reasoning_tokens). That count is the cost, marked
    `cost_source: server` in every trace and in the report; effort goes as `reasoning_effort`."""
    name = "server_count"
    levels = ("low", "medium", "high")
    separates_reasoning = True

    def server_cost(self, split: Split, usage: Dict[str, Any], ids: Sequence[int]) -> Optional[tuple]:
        server = usage.get("reasoning_tokens")
        if server is None:
            raise ProtocolError("protocol server_count: the server returned no usage.completion_tokens_details."
                                "reasoning_tokens; it does not report reasoning, so use protocol plain.")
        return Split("", split.answer_text, int(server), split.answer_tokens, split.closed), int(server) + len(ids), \
            "server"

    def plan(self, effort: EffortConfig) -> EffortPlan:
        if effort.name == "default":
            return EffortPlan()
        if effort.level in self.levels:
            return EffortPlan(effort=effort.name, request_fields={"reasoning_effort": effort.level})
        raise ConfigError(f"{model_file(self.model.name)}: model '{self.model.name}' reasons on the server (protocol "
                          f"server_count): effort={effort.name} cannot reach it; use effort=low, medium or high "
                          "(sent as reasoning_effort).")

    def split(self, text: str, ids: Sequence[int], decode: Decode, finish: str, answer_start: AnswerStart,
              plan: EffortPlan) -> Split:
        return span_split(text, ids, decode, 0, 0, 0, closed=finish != "length" or bool(text.strip()))


class Harmony(Plain):
    """gpt-oss's harmony format: reasoning in the `analysis` channel, the answer in `final` (and in
    `commentary` addressed to no tool, as vLLM reads it); rendered and parsed with the openai-harmony
    package, effort as the system message's `Reasoning: low|medium|high`. Counts are over the
    channels' content tokens, not their headers; tool calls count in the total only."""
    name = "harmony"
    levels = ("low", "medium", "high")
    close_marker = "<|channel|>final"
    separates_reasoning = True
    SPECIAL = ("<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|return|>")

    def tokenizer(self) -> Any:
        return HarmonyTokenizer()

    def check_tokenizer(self, tok: Any, where: str) -> None:
        """harmony's special tokens with harmony's ids: the output is parsed as o200k_harmony ids."""
        enc = harmony_encoding()
        missing = [t for t in self.SPECIAL
                   if list(tok.encode(t, add_special_tokens=False)) != list(enc.encode(t, allowed_special="all"))]
        if missing:
            raise ProtocolError(
                f"conf/model/{self.model.name}.yaml: model '{self.model.name}' has `protocol: harmony`, but the tokenizer "
                f"of its weights ({where}) lacks harmony's special tokens {missing} (gpt-oss's o200k_harmony ids): its "
                "output cannot be read as harmony, and every count would be zero. Set the `protocol:` these weights "
                "speak (plain, think_tags, qwen3), or point the config at gpt-oss weights.")

    def check_generation(self, text: str, token_ids: Optional[Sequence[int]]) -> None:
        if token_ids is None:
            raise ProtocolError("harmony output came as text without token ids, and its channel markers are special "
                                "tokens the text has lost: start the server with `--reasoning-parser openai_gptoss` "
                                "(it returns the analysis channel as reasoning) or set engine.request_token_ids=true.")

    def plan(self, effort: EffortConfig) -> EffortPlan:
        if effort.name == "default":
            return EffortPlan()
        if effort.level in self.levels:
            return EffortPlan(effort=effort.name, prompt_level=effort.level,
                              request_fields={"reasoning_effort": effort.level})
        if effort.budget is not None:
            return EffortPlan(effort=effort.name, budget=effort.budget)
        raise ConfigError(f"{model_file(self.model.name)}: gpt-oss always reasons: effort={effort.name} cannot apply "
                          f"to model '{self.model.name}'; use effort=low, medium, high or budget=<N>.")

    def render(self, prompt: str, plan: EffortPlan) -> str:
        from openai_harmony import Conversation, DeveloperContent, Message, ReasoningEffort, Role, SystemContent

        system = SystemContent.new()
        if plan.prompt_level:
            system = system.with_reasoning_effort(ReasoningEffort(plan.prompt_level.capitalize()))
        messages = [Message.from_role_and_content(Role.SYSTEM, system)]
        if self.model.system_prompt:
            messages.append(Message.from_role_and_content(
                Role.DEVELOPER, DeveloperContent.new().with_instructions(self.model.system_prompt)))
        messages.append(Message.from_role_and_content(Role.USER, prompt))
        enc = harmony_encoding()
        return enc.decode(enc.render_conversation_for_completion(Conversation.from_messages(messages), Role.ASSISTANT))

    def split(self, text: str, ids: Sequence[int], decode: Decode, finish: str, answer_start: AnswerStart,
              plan: EffortPlan) -> Split:
        from openai_harmony import Role, StreamableParser, StreamState

        parser = StreamableParser(harmony_encoding(), role=Role.ASSISTANT)
        parts: Dict[tuple, List[int]] = {}  # (message index, "reasoning" | "answer") -> content ids
        final_started = False
        for tok in ids:
            in_content = parser.state == StreamState.CONTENT
            try:
                parser.process(tok)
            except Exception as exc:  # noqa: BLE001 - the Rust parser raises HarmonyError for malformed output
                raise ProtocolError(f"model '{self.model.name}': output is not harmony format ({exc}); check "
                                    "`protocol:` in its config") from None
            final_started = final_started or parser.current_channel == "final"
            kind = self._kind(parser.current_channel, parser.current_recipient)
            if kind and in_content and parser.state == StreamState.CONTENT:
                parts.setdefault((len(parser.messages), kind), []).append(tok)
        enc = harmony_encoding()

        def text(kind: str) -> str:  # one message per line, as vLLM's harmony parser joins them
            return "\n".join(enc.decode(t) for (_, k), t in sorted(parts.items()) if k == kind)

        def count(kind: str) -> int:
            return sum(len(t) for (_, k), t in parts.items() if k == kind)
        return Split(text("reasoning"), text("answer"), count("reasoning"), count("answer"), closed=final_started)

    @staticmethod
    def _kind(channel: Optional[str], recipient: Optional[str]) -> Optional[str]:
        """As vLLM's harmony parser reads channels: analysis is reasoning; final, and commentary
        addressed to no tool (a preamble to the user), are the answer; tool calls are neither."""
        if recipient:
            return None
        return {"analysis": "reasoning", "final": "answer", "commentary": "answer"}.get(channel or "")

    def force_close(self, rendered: str, partial: str) -> str:
        if "<|channel|>" not in partial:  # nothing generated yet: straight to the answer
            return "<|channel|>final<|message|>"
        if partial.endswith(("<|end|>",)):
            return "<|start|>assistant<|channel|>final<|message|>"
        return "<|end|><|start|>assistant<|channel|>final<|message|>"


def protocol_name(model: ModelConfig) -> str:
    """`protocol:`, or what the think tags imply for configs written before it existed."""
    return model.protocol or ("think_tags" if model.think_end else "plain")


def protocol_for(model: ModelConfig) -> Plain:
    from cogdistill.registry import PROTOCOLS

    return PROTOCOLS.load(protocol_name(model))(model)


_ENCODING = None


def harmony_encoding():
    """gpt-oss's encoding (o200k_harmony), loaded once; its vocabulary file comes from
    cogdistill.engines.harmony_vocab (no download at run time)."""
    global _ENCODING
    if _ENCODING is None:
        from cogdistill.engines.harmony_vocab import load_encoding

        _ENCODING = load_encoding()
    return _ENCODING


class HarmonyTokenizer:
    """The harmony encoding behind the tokenizer interface: special tokens in text (`<|end|>`) are
    read as the special tokens they name, as gpt-oss's Hugging Face tokenizer reads them."""
    chat_template = None

    def __init__(self):
        self._enc = harmony_encoding()

    def encode(self, text: str, add_special_tokens: bool = False) -> List[int]:
        return list(self._enc.encode(text, allowed_special="all"))

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        ids = list(ids)
        if skip_special_tokens:
            ids = [i for i in ids if not self._enc.is_special_token(i)]
        return self._enc.decode(ids)
