"""Command-line overrides checked before Hydra composes, so a mistake gets one message, a did-you-mean
and exit code 2 instead of Hydra's exit code 1, or, worse, no error at all.

Refused here, in this order (each message names the override and the fix):
1. an argument that is not an override (a stray word from an unquoted space) or that Hydra cannot parse;
2. a secret anywhere on the command line: Hydra saves every override in .hydra/overrides.yaml and
   MLflow logs the engine settings; checked before any message that echoes a value (and a parse
   error that would quote a key-like text says only that);
3. the same key or group twice with plain values (Hydra silently keeps the last);
4. a group option with no file (`model=demo-smollm2`), `experiment=` without its `+`;
5. a key the schema does not have, with or without `+` (`+sampling.max_tokenz=5` would be added and
   ignored), except below free-form dicts (engine.extra_body, model.engine_kwargs, task.<t>.columns);
6. a value of the wrong type for its schema field (`model.max_tokens=abc`).
Sweeps (`a,b`, glob(...), range(...)), interpolations `${...}`, deletions `~key`, `hydra.*` and
another primary config (--config-path/--config-name/--config-dir) are left to Hydra.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import io
import re
import typing
from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from cogdistill.config.schema import CONF_DIR, Config, ConfigError
from cogdistill.config.validate import ENGINE_SCHEMAS, check_openai_settings

GROUPS = ("model", "task", "engine", "sampling", "effort", "tracking")  # the groups of conf/config.yaml's defaults list
_HYDRA_SYNTAX = ("(", "$", "*", "?")  # glob(...), choice(...), ${...}: not a plain option name
_ENGINE = object()  # Config.engine is typed Any: its keys are those of every engine schema
_SECRET_FIX = ("the command line is saved under .hydra/ and engine settings are logged to MLflow, so a key there "
               "would be stored with the run: put the key in an environment variable and name it with "
               "engine.api_key_env (e.g. engine.api_key_env=MY_API_KEY).")

_STORE_SECRET_FIX = ("the command line is saved under .hydra/ and the config is logged to MLflow, so the store's "
                     "password would be stored with every run: give the address in the environment instead, "
                     "MLFLOW_TRACKING_URI=postgresql://user:PASSWORD@host/db (it wins over tracking.uri).")

BUDGET_OPTION = re.compile(r"budget_(\d+)")  # the group option `effort=budget=N` is rewritten to


def effort_budgets(args: Sequence[str]) -> Tuple[List[str], List[int]]:
    """`effort=budget=64` (or a sweep `effort=low,budget=64`) in Hydra's grammar, which allows no `=` in a
    value: the budget becomes the option `budget_64`, registered by config.validate.register_budgets.
    Returns the rewritten arguments and every budget named."""
    out: List[str] = []
    budgets: Set[int] = set()
    for arg in args:
        key, eq, value = arg.partition("=")
        if eq and key.lstrip("+") == "effort":
            bad = re.search(r"budget=(?!\d+(?:[,\]]|$))[^,\]]*", value)
            if bad:
                raise ConfigError(f"command line: `{arg}`: {bad.group(0)!r} is no budget; a budget is a whole number "
                                  "of thinking tokens, e.g. effort=budget=64.")
            value = re.sub(r"budget=(\d+)", r"budget_\1", value)
            budgets |= {int(n) for n in BUDGET_OPTION.findall(value)}
            arg = f"{key}={value}"
        out.append(arg)
    return out, sorted(budgets)


def check_overrides(args: Sequence[str]) -> None:
    """Raise ConfigError for the first command-line override that Hydra would reject or ignore."""
    overrides = _overrides_of(args)
    if overrides is None:
        return
    parsed = [(arg, _parse(arg)) for arg in overrides]
    for arg, override in parsed:
        _refuse_secrets(override)
    _refuse_repeats(parsed)
    roots = _config_roots(overrides)
    for arg, override in parsed:
        _check_override(arg, override, roots)


def split_overrides(args: Sequence[str], own_keys: Set[str]) -> Tuple[Dict[str, Any], List[str]]:
    """One parser for every command: each argument is read with Hydra's override grammar. Those
    whose key starts with one of `own_keys` (a command's own settings, e.g. the training keys of
    cogdistill-train) come back as {dotted key: value}; the rest are overrides of the main config,
    checked as `cogdistill`'s are."""
    own: Dict[str, Any] = {}
    main: List[str] = []
    for arg in args:
        override = _parse(arg)
        key = override.key_or_group
        if key.split(".", 1)[0] not in own_keys or override.package is not None:
            main.append(arg)
            continue
        if override.is_sweep_override() or override.is_delete() or override.is_add():
            raise ConfigError(f"command line: `{arg}`: a setting of this command takes one value "
                              f"(write {key}=<value>, without +, ~ or a sweep).")
        own[key] = override.value()
    check_overrides(main)
    return own, main


def _overrides_of(args: Sequence[str]) -> Optional[List[str]]:
    """The overrides among the arguments, as Hydra's own argument parser splits them (`--cfg job`
    takes `job`); None when Hydra answers by itself (--help, --version, a bad flag) or when another
    primary config makes conf/ and its schema the wrong reference."""
    from hydra._internal.utils import get_args_parser  # Hydra's own: flags that take a value match exactly

    try:  # argparse prints and exits on --help/--version/bad flags: Hydra will do that itself
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            ns = get_args_parser().parse_args(list(args))
    except SystemExit:
        return None
    if ns.config_path or ns.config_name or ns.config_dir:
        return None
    return list(ns.overrides)


def _parse(arg: str):
    """Hydra's parse of one override; a parse error becomes one message with the fix."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_override(arg)
    except HydraException as exc:
        if _secret_in_text(arg):  # Hydra's message may quote the offending text: never echo a key
            fix = _STORE_SECRET_FIX if arg.lstrip("+~").startswith("tracking.") else _SECRET_FIX
            raise ConfigError(f"command line: an argument holds what looks like an API key or password; {fix}") \
                from None
        if "=" not in arg:
            raise ConfigError(
                f"command line: `{arg}` is not an override (key=value). A value with a space split by the shell? "
                "Config names (conf/<group>/<name>.yaml) have no spaces: write e.g. model=demo-smollm2-135m; "
                "quote other values with spaces as a whole: 'key=\"a b\"'.") from None
        reason = str(exc).splitlines()[1:2] or [str(exc)]
        raise ConfigError(
            f"command line: `{arg}` is not a valid override ({reason[0].strip()}); quote a value holding spaces, "
            "commas, brackets or parentheses: 'key=\"value\"' (Hydra's override grammar).") from None


def _secret_in_text(text: str) -> bool:
    from cogdistill.secrets import looks_like_a_key, uri_secrets

    if any(uri_secrets(u) for u in re.findall(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"]+", text)):
        return True  # an address with a password or token (Hydra needs a URI with `=` quoted)
    return looks_like_a_key(text) or any(looks_like_a_key(t) for t in re.split(r"[\s=,:{}\[\]()'\"]+", text) if t)


def _refuse_secrets(override) -> None:
    """A credential (by its key's name or by its value's shape) in any override, nested dicts included."""
    from cogdistill.secrets import find_secrets

    key = override.key_or_group
    if key.split(".")[-1] in ("api_key_env", "base_url") and "engine" in key:  # their own, older messages
        value = override.value()
        if isinstance(value, str):
            check_openai_settings({key.split(".")[-1]: value}, f"command line: {key.rsplit('.', 1)[0]}.")
    problems = [p for value in _values(override) for p in find_secrets(value, key)]
    if problems:
        raise ConfigError(f"command line: {problems[0]}; "
                          + (_STORE_SECRET_FIX if key.split(".")[0] == "tracking" else _SECRET_FIX))


def _values(override) -> List[Any]:
    """The value(s) an override can set: each choice of a sweep, nothing for a deletion or a range."""
    from hydra.core.override_parser.types import ChoiceSweep, Glob

    if override.is_delete():
        return []
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return list(value.list)
    if isinstance(value, Glob):
        return list(value.include)
    return [] if override.is_sweep_override() else [value]


def _refuse_repeats(parsed: List[Tuple[str, Any]]) -> None:
    """Hydra applies `model=a model=b` as model=b without a word: one of them is a mistake. Only plain
    values count: a sweep beside a value is left to Hydra (tests list such mixes as valid syntax)."""
    first: Dict[Tuple[str, Optional[str]], str] = {}
    for arg, override in parsed:
        if override.is_delete() or override.is_sweep_override():
            continue
        where = (override.key_or_group, override.package)
        if where in first:
            plus = arg[:len(arg) - len(arg.lstrip("+"))]
            raise ConfigError(f"command line: `{override.key_or_group}` is given twice ({first[where]} and {arg}); "
                              "Hydra would silently use the last one. Keep one; to run both, sweep them: "
                              f"-m {plus}{override.key_or_group}=<a>,<b>.")
        first[where] = arg


def _config_roots(overrides: Sequence[str]) -> Optional[List[Path]]:
    """conf/ plus the file:// folders of hydra.searchpath; None when a search path is not a folder."""
    roots = [CONF_DIR]
    experiments = [CONF_DIR / "experiment" / f"{a.partition('=')[2].strip()}.yaml" for a in overrides
                   if a.lstrip("+").startswith("experiment=")]
    if any(f.is_file() and "searchpath" in f.read_text() for f in [CONF_DIR / "config.yaml", *experiments]):
        return None  # a config file adds folders: only Hydra knows every option then
    for arg in overrides:
        key, _, value = arg.lstrip("+").partition("=")
        if key.strip() != "hydra.searchpath":
            continue
        for item in value.strip().strip("[]").split(","):
            item = item.strip().strip("'\"")
            if not item.startswith("file://"):
                return None  # pkg:// or a relative spec: which options exist is Hydra's to say
            roots.append(Path(item[len("file://"):]))
    return roots


def _check_override(arg: str, override, roots: Optional[List[Path]]) -> None:
    key = override.key_or_group
    if override.is_delete() or override.package is not None or key.startswith("hydra") or "/" in key:
        return  # deletions, packages and Hydra's own settings: Hydra's to judge
    if key in GROUPS or key in _optional_groups(roots):
        _check_group(arg, override, roots)
        return
    hint = _check_key(key)
    if hint is not None:
        _check_type(arg, override, hint)


def _optional_groups(roots: Optional[List[Path]]) -> List[str]:
    """Config groups outside the defaults list (experiment): selected with `+group=option`."""
    folders = {p.name for root in (roots or [CONF_DIR]) if root.is_dir() for p in root.iterdir() if p.is_dir()}
    return sorted(folders - set(GROUPS) - {"hydra"})


def _check_group(arg: str, override, roots: Optional[List[Path]]) -> None:
    group = override.key_or_group
    plus = "+" if override.is_add() or override.is_force_add() else ""
    value = arg.partition("=")[2].strip().strip("'\"")
    if roots is not None and not any(c in value for c in _HYDRA_SYNTAX):
        _check_options(group, value, roots, "" if group in GROUPS else "+")
    if group not in GROUPS and not plus:
        raise ConfigError(f"command line: `{arg}`: {group} is not in the defaults list, so it is added with a `+`: "
                          f"write +{group}={value}.")


def _check_options(group: str, value: str, roots: List[Path], plus: str = "") -> None:
    known = sorted({p.stem for root in roots for p in (root / group).glob("*.yaml")})
    for name in value.replace("[", "").replace("]", "").split(","):
        name = name.strip()
        if group == "effort" and BUDGET_OPTION.fullmatch(name):
            continue  # registered in the ConfigStore, no file
        if name and name != "null" and name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {plus}{group}={value.replace(name, close[0])}?" if close else ""
            hint += " Config names have no spaces." if " " in name else ""
            listing = f"known: {', '.join(known)}" if len(known) <= 12 else f"{len(known)} options in conf/{group}/"
            raise ConfigError(f"{plus}{group}={value}: there is no conf/{group}/{name}.yaml.{hint} ({listing}.)")


def _fields(node: Any) -> Optional[Dict[str, Any]]:
    """The keys of a schema node and their types; None below which anything goes."""
    if node is _ENGINE:
        return {k: t for schema in ENGINE_SCHEMAS.values() for k, t in typing.get_type_hints(schema).items()}
    if dataclasses.is_dataclass(node):
        hints = typing.get_type_hints(node)
        return {**hints, "engine": _ENGINE} if node is Config else hints
    return None


def _check_key(key: str) -> Any:
    """The schema type of `key` (None below a free-form dict or Any); ConfigError when the schema
    has no such key. `+key` is checked too: Hydra would add an unknown key and nothing reads it."""
    parts = key.split(".")
    node: Any = Config
    for depth, part in enumerate(parts):
        node = _unwrap_optional(node)
        if typing.get_origin(node) is dict:
            node = typing.get_args(node)[1]  # this part is a free name (a task, a source, an engine)
            continue
        known = _fields(node)
        if known is None:
            return None
        if part not in known:
            where = ".".join(parts[:depth]) or "the top level"
            close = difflib.get_close_matches(part, sorted(known), n=1)
            hint = f" Did you mean {'.'.join([*parts[:depth], close[0], *parts[depth + 1:]])}=...?" if close else ""
            raise ConfigError(f"command line: `{key}`: '{part}' is not a key of {where} (schemas in "
                              f"cogdistill/config/schema.py).{hint} Known there: {', '.join(sorted(known))}.")
        node = known[part]
    return node


def _unwrap_optional(hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) is typing.Union and len(args) == 1 else hint


def _check_type(arg: str, override, hint: Any) -> None:
    """A scalar value must fit its schema field as OmegaConf will convert it at compose time (where
    Hydra would fail with exit code 1); interpolations are resolved later and pass."""
    from omegaconf import BooleanNode, EnumNode, FloatNode, IntegerNode, StringNode
    from omegaconf.errors import ValidationError

    base = _unwrap_optional(hint)
    optional = base is not hint  # Optional[X]: null is a value too
    if isinstance(base, type) and issubclass(base, Enum):
        make, expected = (lambda v: EnumNode(base, v, is_optional=optional)), \
            "one of " + ", ".join(m.value for m in base)
    elif base in (int, float, bool, str):
        node = {int: IntegerNode, float: FloatNode, bool: BooleanNode, str: StringNode}[base]
        make = lambda v: node(v, is_optional=optional)  # noqa: E731
        expected = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[base]
    else:
        return  # a section, a list or a dict: Hydra merges and checks it
    for value in _values(override):
        if isinstance(value, str) and "${" in value:
            continue
        try:
            make(value)
        except ValidationError:
            shown = arg if len(arg) <= 80 else arg[:77] + "..."
            close = difflib.get_close_matches(str(value), [m.value for m in base], n=1) \
                if isinstance(base, type) and issubclass(base, Enum) else []
            hint_text = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"command line: `{shown}`: expected {expected}"
                              f"{' (or null)' if optional else ''} for {override.key_or_group}.{hint_text}") from None
