"""Which engine a job uses and how it is created: in this process, or (vLLM, which never frees its
memory) in a fresh child process (cogdistill.engines.isolated)."""

from __future__ import annotations

from typing import Any, Optional

from cogdistill.config.schema import ModelConfig
from cogdistill.engines.base import Engine, EngineError
from cogdistill.engines.weights import ResolvedWeights
from cogdistill.registry import AUTO_ORDER, ENGINES


def is_installed(name: str) -> bool:
    return name in ENGINES and ENGINES.spec(name).installed()


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
    if name not in ENGINES or ENGINES.spec(name).source != "generate":
        raise EngineError(f"'{name}' is no generation engine; engines: "
                          f"{[n for n, s in ENGINES.items() if s.source == 'generate']}.")
    spec = ENGINES.spec(name)
    if not spec.installed():
        raise EngineError(
            f"engine '{name}' needs the Python package '{spec.package}', which is not installed "
            f"(see the docs, 'Models and engines', for how to install it)."
        )
    return ENGINES.load(name)


def create_engine(name: str, model: ModelConfig, weights: ResolvedWeights, settings: Any,
                  *, isolate: Optional[bool] = None) -> Engine:
    """The engine, in this process or (isolate, default from the registry) in a fresh child."""
    load_engine_class(name)  # fail here, with the install hint, not inside a child process
    if ENGINES.spec(name).isolate if isolate is None else isolate:
        from cogdistill.engines.isolated import IsolatedEngine

        return IsolatedEngine(name, model, weights, settings)
    return load_engine_class(name)(model, weights, settings)
