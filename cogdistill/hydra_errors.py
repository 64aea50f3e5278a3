"""Hydra's and OmegaConf's own composition errors (malformed YAML, a wrong type, an unknown config
group option, a bad override), rewritten as one line naming the file or override and the fix.
Used by the commands' exit handling (cogdistill.exits) and the sweep's preflight."""

from __future__ import annotations

import difflib
import re
from typing import Optional


def hydra_problem(exc: BaseException) -> Optional[str]:
    """One line for Hydra's and OmegaConf's own composition errors (malformed YAML, a wrong type,
    an unknown config group option), which Hydra itself reports with exit code 1."""
    try:
        from hydra.errors import HydraException, MissingConfigException, OverrideParseException
        from omegaconf.errors import OmegaConfBaseException
    except ImportError:  # pragma: no cover - hydra is a dependency
        return None
    import yaml

    if isinstance(exc, ValueError) and str(exc).startswith("Only one of --run, --multirun"):
        # Hydra's own argument check, raised as a plain ValueError: `-m ... --cfg job` and the like
        return (f"{str(exc).rstrip('.')}. To see a sweep's jobs, run it with engine=dry instead of --cfg; "
                "to see one job's config, drop -m.")
    if not isinstance(exc, (HydraException, OmegaConfBaseException, MissingConfigException, OverrideParseException,
                            yaml.YAMLError)):
        return None
    return explain_hydra_error(exc)


def explain_hydra_error(exc: BaseException) -> str:
    """One line for a composition error (malformed YAML, wrong type, missing option)."""
    import yaml
    from hydra.errors import MissingConfigException, OverrideParseException

    if isinstance(exc, yaml.YAMLError):
        mark = getattr(exc, "problem_mark", None)
        where = f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}" if mark else "a config file"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return f"{where}: malformed YAML ({problem}). Fix the file's syntax (quote values holding ':' or '[')."
    text = str(exc)
    if isinstance(exc, MissingConfigException):
        return _missing_option(text)
    if isinstance(exc, OverrideParseException):
        first = text.splitlines()[0] if text else "unparseable"
        return (f"a command-line override cannot be parsed ({first}). Quote values with spaces or brackets, "
                "e.g. 'model=name' or 'task=[a,b]'; see the docs, Getting started > 'Overrides'.")
    cause = exc.__cause__
    if cause is not None and type(cause).__name__ in ("ValidationError", "ConfigTypeError", "ConfigKeyError"):
        return _type_problem(text, str(cause))
    if "No match in the defaults list" in text and "To append" in text:
        hint = text.rsplit("use ", 1)[-1].strip()
        return f"{text.splitlines()[0]} Add a '+': {hint}."
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines[:3]) or type(exc).__name__


def _missing_option(text: str) -> str:
    found = re.search(r"Could not find '([^']+)/([^']*)'", text)
    if not found:
        return " ".join(line.strip() for line in text.splitlines()[:2])
    group, name = found.groups()
    options = re.findall(r"^\t(\S+)$", text.split("Config search path")[0], re.M)
    close = difflib.get_close_matches(name, options, n=1)
    listing = ", ".join(options) if len(options) <= 12 else f"{len(options)} options in conf/{group}/"
    space = " (a name has no spaces)" if " " in name else ""
    return (f"{group}={name}: there is no conf/{group}/{name}.yaml{space}."
            + (f" Did you mean {group}={close[0]}?" if close else "") + f" (known: {listing}.)")


def _type_problem(text: str, cause: str) -> str:
    key = re.search(r"full_key: (\S+)", cause)
    value = re.search(r"Value '([^']*)'", cause)
    kind = re.search(r"converted to (\w+)", cause)
    override = re.search(r"override (\S+)", text)
    if key and kind:
        got = f"'{value.group(1)}'" if value else "this value"
        return (f"{override.group(1) if override else key.group(1)}: {got} is not a valid {kind.group(1).lower()} "
                f"for {key.group(1)}; give a {kind.group(1).lower()} (schemas in cogdistill/config/schema.py).")
    first = cause.splitlines()[0] if cause else text
    return f"{override.group(1) if override else 'a config value'}: {first}."
