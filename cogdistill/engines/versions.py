"""Engine versions from package metadata, without importing the engine.

The version is part of the generation cache key, and a fully cached job must be able to
compute its keys without loading torch, vLLM or the model.
"""

from __future__ import annotations

from importlib import metadata
from typing import Tuple

from cogdistill.registry import ENGINES


def _first_version(names: Tuple[str, ...]) -> str:
    for name in names:
        try:
            return f"{name}-{metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return f"{names[0]}-missing"


def version_of(engine: str) -> str:
    slots = ENGINES.spec(engine).distributions if engine in ENGINES else ()
    if not slots:
        return engine
    return "+".join(_first_version(names) for names in slots)


def cache_identity(engine: str, settings, served_by: str) -> str:
    """The engine part of a generation cache key: the library versions, or for a server, which
    server and API (two servers must not share cached generations)."""
    if engine == "openai":
        from cogdistill.engines.openai_transport import display_url

        return f"openai@{display_url(settings.base_url)}:{settings.api}:{settings.served_model or served_by}"
    return version_of(engine)
