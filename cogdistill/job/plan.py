"""What a job will do, decided before anything runs: the validated config, the engine and its
settings, the token budget, the cost column and the loaded tasks (human data checked)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional

from omegaconf import DictConfig

from cogdistill.config.schema import Config, ConfigError, cache_dir, model_file
from cogdistill.config.validate import ENGINE_SCHEMAS, config_warnings, validate
from cogdistill.console import console
from cogdistill.engines.factory import resolve_engine_name
from cogdistill.engines.protocols import EffortPlan, protocol_for
from cogdistill.registry import ENGINES
from cogdistill.tasks.load import Task, load_task
from cogdistill.tracking.run_format import model_label


@dataclass(frozen=True)
class JobPlan:
    job: Config
    engine: str  # the engine's registered name (`auto` resolved)
    settings: Any  # its settings (cogdistill.config.schema), model overrides applied
    max_tokens: int
    cost: str  # the trace column that is the cost: reasoning_tokens or total_tokens
    tasks: List[Task]
    cache_root: Path
    effort: EffortPlan  # what the job's effort level does to this model (cogdistill.engines.protocols)
    label: str  # the model's name in this job's runs, traces and reports (run_format.model_label)

    @property
    def plan_only(self) -> bool:
        """engine=dry: print what would run, run nothing."""
        return ENGINES.spec(self.engine).source == "plan"


def plan_job(cfg: DictConfig) -> JobPlan:
    job = validate(cfg)
    for warning in config_warnings(job):
        console.print(f"[yellow]warning: {warning}[/]", soft_wrap=True)
    cache_root = cache_dir(job)
    engine = resolve_engine_name(job.engine.name, job.model)
    effort = protocol_for(job.model).plan(job.effort)
    max_tokens = job.sampling.max_tokens or job.model.max_tokens
    settings = effort_settings(engine_settings(engine, job), effort, job, max_tokens)
    tasks = [load_task(t, mirror=job.data.mirror, cache=cache_root, timeout_s=job.data.download_timeout_s)
             for t in job.task.values()]
    return JobPlan(job=job, engine=engine, settings=settings, max_tokens=max_tokens, cost=cost_column(job, effort),
                   tasks=tasks, cache_root=cache_root, effort=effort, label=model_label(job.model.name, effort.effort))


def effort_settings(settings: Any, effort: EffortPlan, job: Config, max_tokens: int) -> Any:
    """The engine settings under an effort level: a chat server gets the level's request fields
    (reasoning_effort, chat_template_kwargs; the user's engine.extra_body wins); budget forcing
    continues the rendered text, which a chat API cannot."""
    src = model_file(job.model.name)
    if effort.budget is not None:
        if effort.budget >= max_tokens:
            raise ConfigError(f"effort=budget={effort.budget} leaves the answer no tokens: the job's max_tokens is "
                              f"{max_tokens} ({src} or sampling.max_tokens); raise it above the budget.")
        if getattr(settings, "api", None) == "chat":
            raise ConfigError(f"effort={effort.effort} (budget forcing) continues the model's text after closing its "
                              "reasoning, which a chat API cannot: set engine.api=completions (a vLLM server) or use "
                              "engine=vllm or engine=transformers.")
    if getattr(settings, "api", None) == "chat" and effort.request_fields:
        settings = dataclasses.replace(settings, extra_body={**effort.request_fields, **dict(settings.extra_body)})
    return settings


def engine_settings(name: str, job: Config):
    """The selected engine's settings, or its defaults under engine=auto, plus model overrides."""
    if name not in ENGINE_SCHEMAS:
        raise ConfigError(f"engine '{name}' has no settings schema in cogdistill/registry.py.")
    settings = job.engine if job.engine.name == name else ENGINE_SCHEMAS[name]()
    overrides = dict(job.model.engine_kwargs.get(name, {}))
    known = {f.name for f in dataclasses.fields(settings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(
            f"{model_file(job.model.name)}: engine_kwargs.{name} has unknown key(s) {unknown}; "
            f"engine '{name}' accepts {sorted(known - {'name'})}."
        )
    return dataclasses.replace(settings, **overrides)


def cost_column(job: Config, effort: Optional[EffortPlan] = None) -> str:
    """auto: reasoning_tokens for a model with a reasoning block, total_tokens (the visible response)
    for one without, or with its thinking switched off (Qwen3 at effort=none)."""
    if job.analysis.cost != "auto":
        return job.analysis.cost
    thinking = effort.thinking if effort is not None else True
    return "reasoning_tokens" if protocol_for(job.model).separates_reasoning and thinking else "total_tokens"
