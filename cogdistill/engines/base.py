"""Generation engines behind one protocol, registered by name and imported lazily.

An engine turns rendered prompts into Generations and hands each request's results back as
soon as they exist (so they can be cached before the next batch starts). Everything after
that (reasoning/answer split, token counting, scoring) happens in traces.py, identically for
every engine.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple

from cogdistill.config.schema import ModelConfig, SamplingConfig
from cogdistill.errors import CogdistillError
from cogdistill.engines.weights import ResolvedWeights


@dataclass(frozen=True)
class EngineSpec:
    target: str  # "module:Class" (for a non-generating source: "module:function")
    package: str  # the Python package that must be importable
    isolate: bool  # run in a fresh child process (frees all memory when the job ends)
    generates: bool = True  # False: traces are read, not generated (replay)


ENGINES: Dict[str, EngineSpec] = {
    "transformers": EngineSpec("cogdistill.engines.hf_transformers:TransformersEngine", "transformers", False),
    # vLLM does not free its memory on `del llm`: one model per process, always.
    "vllm": EngineSpec("cogdistill.engines.vllm_engine:VllmEngine", "vllm", True),
    "openai": EngineSpec("cogdistill.engines.openai_server:OpenAIEngine", "httpx", False),
    # replay generates nothing: the pipeline reads trace records instead
    "replay": EngineSpec("cogdistill.traces.replay:load_traces", "polars", False, generates=False),
    # dry: the pipeline prints the job's plan and stops (no weights, no generation, no MLflow)
    "dry": EngineSpec("cogdistill.job:print_plan", "polars", False, generates=False),
}

# `engine=auto` picks the first installed of these when the model names no engine.
AUTO_ORDER = ["vllm", "transformers"]


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


def is_installed(name: str) -> bool:
    return name in ENGINES and importlib.util.find_spec(ENGINES[name].package) is not None


def resolve_engine_name(requested: str, model: ModelConfig) -> str:
    if requested != "auto":
        return requested
    if model.engine:
        return model.engine
    for name in AUTO_ORDER:
        if is_installed(name):
            return name
    raise EngineError(f"no generation engine is installed; install one of {AUTO_ORDER}.")


def load_engine_class(name: str):
    if name not in ENGINES:
        raise EngineError(f"unknown engine '{name}'; known: {sorted(ENGINES)}.")
    spec = ENGINES[name]
    if importlib.util.find_spec(spec.package) is None:
        raise EngineError(
            f"engine '{name}' needs the Python package '{spec.package}', which is not installed "
            f"(see the README, 'Engines', for how to install it)."
        )
    module, cls = spec.target.split(":")
    return getattr(importlib.import_module(module), cls)


def create_engine(name: str, model: ModelConfig, weights: ResolvedWeights, settings: Any,
                  *, isolate: Optional[bool] = None) -> Engine:
    """The engine, in this process or (isolate, default from the registry) in a fresh child."""
    load_engine_class(name)  # fail here, with the install hint, not inside a child process
    if ENGINES[name].isolate if isolate is None else isolate:
        from cogdistill.engines.isolated import IsolatedEngine

        return IsolatedEngine(name, model, weights, settings)
    return load_engine_class(name)(model, weights, settings)
