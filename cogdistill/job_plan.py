"""What a job will do, decided before anything runs: the validated config, the engine and its
settings, the token budget, the cost column and the loaded tasks (human data checked)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List

from omegaconf import DictConfig

from cogdistill.config.schema import Config, ConfigError, cache_dir, model_file
from cogdistill.config.validate import ENGINE_SCHEMAS, config_warnings, validate
from cogdistill.console import console
from cogdistill.engines.factory import resolve_engine_name
from cogdistill.registry import ENGINES
from cogdistill.tasks.load import Task, load_task


@dataclass(frozen=True)
class JobPlan:
    job: Config
    engine: str  # the engine's registered name (`auto` resolved)
    settings: Any  # its settings (cogdistill.config.schema), model overrides applied
    max_tokens: int
    cost: str  # the trace column that is the cost: reasoning_tokens or total_tokens
    tasks: List[Task]
    cache_root: Path

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
    settings = engine_settings(engine, job)
    tasks = [load_task(t, mirror=job.data.mirror, cache=cache_root, timeout_s=job.data.download_timeout_s)
             for t in job.task.values()]
    return JobPlan(job=job, engine=engine, settings=settings,
                   max_tokens=job.sampling.max_tokens or job.model.max_tokens, cost=cost_column(job),
                   tasks=tasks, cache_root=cache_root)


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


def cost_column(job: Config) -> str:
    if job.analysis.cost != "auto":
        return job.analysis.cost
    return "reasoning_tokens" if job.model.think_end else "total_tokens"
