"""Command-line overrides checked before Hydra composes, so a typo gets a did-you-mean and exit code 2.

Hydra rejects the same mistakes, but with exit code 1 and no suggestion. Only what Hydra would
reject anyway is flagged here: a config-group option with no file, a key the schema does not have.
Sweeps (`a,b`, glob(...)), interpolations, `+`/`++`/`~` overrides, `hydra.*` and another primary
config (--config-path/--config-name/--config-dir) are left to Hydra. A secret given where a
config value belongs (engine.api_key_env=sk-...) is refused here, before Hydra saves the
overrides under .hydra/ and MLflow logs the engine settings.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from cogdistill.config import CONF_DIR, ENGINE_SCHEMAS, Config, ConfigError, check_openai_settings

GROUPS = ("model", "task", "engine", "sampling", "tracking")
_HYDRA_SYNTAX = ("(", "$", "*", "?")  # glob(...), choice(...), ${...}: not a plain option name
_OTHER_CONFIG = ("--config-path", "--config-name", "--config-dir", "-cp", "-cn", "-cd")
_ENGINE = object()  # Config.engine is typed Any: its keys are those of every engine schema


def check_overrides(args: Sequence[str]) -> None:
    """Raise ConfigError for a group option without a file or a key the schema lacks."""
    if any(a.startswith(_OTHER_CONFIG) for a in args):
        return
    roots = _config_roots(args)
    for arg in args:
        if "=" not in arg or arg.startswith(("-", "+", "~")):
            continue
        key, _, value = arg.partition("=")
        key, value = key.strip(), value.strip().strip("'\"")
        if key.startswith("hydra") or "/" in key or "@" in key:
            continue
        if key in GROUPS:
            if roots is not None and not any(c in value for c in _HYDRA_SYNTAX):
                _check_options(key, value, roots)
        else:
            _check_key(key)
            if key.split(".")[-1] in ("api_key_env", "base_url") and "engine" in key:
                check_openai_settings({key.split(".")[-1]: value}, f"command line: {key.rsplit('.', 1)[0]}.")


def _config_roots(args: Sequence[str]) -> Optional[List[Path]]:
    """conf/ plus the file:// folders of hydra.searchpath; None when a search path is not a folder."""
    roots = [CONF_DIR]
    experiments = [CONF_DIR / "experiment" / f"{a.partition('=')[2].strip()}.yaml" for a in args
                   if a.lstrip("+").startswith("experiment=")]
    if any(f.is_file() and "searchpath" in f.read_text() for f in [CONF_DIR / "config.yaml", *experiments]):
        return None  # a config file adds folders: only Hydra knows every option then
    for arg in args:
        key, _, value = arg.lstrip("+").partition("=")
        if key.strip() != "hydra.searchpath":
            continue
        for item in value.strip().strip("[]").split(","):
            item = item.strip().strip("'\"")
            if not item.startswith("file://"):
                return None  # pkg:// or a relative spec: which options exist is Hydra's to say
            roots.append(Path(item[len("file://"):]))
    return roots


def _check_options(group: str, value: str, roots: List[Path]) -> None:
    known = sorted({p.stem for root in roots for p in (root / group).glob("*.yaml")})
    for name in value.replace("[", "").replace("]", "").split(","):
        name = name.strip()
        if name and name != "null" and name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {group}={value.replace(name, close[0])}?" if close else ""
            listing = f"known: {', '.join(known)}" if len(known) <= 12 else f"{len(known)} options in conf/{group}/"
            raise ConfigError(f"{group}={value}: there is no conf/{group}/{name}.yaml.{hint} ({listing}.)")


def _fields(node: Any) -> Optional[Dict[str, Any]]:
    """The keys of a schema node and their types; None below which anything goes."""
    if node is _ENGINE:
        return {k: t for schema in ENGINE_SCHEMAS.values() for k, t in typing.get_type_hints(schema).items()}
    if dataclasses.is_dataclass(node):
        hints = typing.get_type_hints(node)
        return {**hints, "engine": _ENGINE} if node is Config else hints
    return None


def _check_key(key: str) -> None:
    parts = key.split(".")
    node: Any = Config
    for depth, part in enumerate(parts):
        args = [a for a in typing.get_args(node) if a is not type(None)]
        if typing.get_origin(node) is typing.Union and len(args) == 1:
            node = args[0]  # Optional[X]
        if typing.get_origin(node) is dict:
            node = typing.get_args(node)[1]  # this part is a free name (a task, a source, an engine)
            continue
        known = _fields(node)
        if known is None:
            return
        if part not in known:
            where = ".".join(parts[:depth]) or "the top level"
            close = difflib.get_close_matches(part, sorted(known), n=1)
            hint = f" Did you mean {'.'.join([*parts[:depth], close[0], *parts[depth + 1:]])}=...?" if close else ""
            raise ConfigError(f"command line: `{key}`: '{part}' is not a key of {where} (schemas in "
                              f"cogdistill/config.py).{hint} Known there: {', '.join(sorted(known))}.")
        node = known[part]
