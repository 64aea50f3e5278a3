"""Before a sweep starts: compose and validate every one of its jobs, and say which are bad.

A sweep over 100 jobs that fails at job 37 has cost 36 jobs of compute before saying that a
model file is malformed; here every job is composed (Hydra) and validated (cogdistill.config.schema)
first, and a bad one stops the sweep before any job runs, with one line per bad job.
Hydra's own composition errors are rewritten as one line naming the file or override and the fix.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Dict, List, Sequence, Tuple

from cogdistill.errors import CogdistillError


class SweepConfigError(CogdistillError):
    """Some jobs of a sweep cannot run; the message lists each with its reason."""


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
                "e.g. 'model=name' or 'task=[a,b]'; see README, 'Overrides'.")
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
                f"for {key.group(1)}; give a {kind.group(1).lower()} (schemas in cogdistill/config.py).")
    first = cause.splitlines()[0] if cause else text
    return f"{override.group(1) if override else 'a config value'}: {first}."


def check_jobs(config_loader: Any, master_config: Any, jobs: Sequence[Sequence[str]],
               shown: Sequence[Sequence[str]]) -> List[Tuple[int, str, str]]:
    """(job number, its overrides as shown, the problem) for every job that does not compose or validate."""
    from omegaconf import open_dict

    from cogdistill.config.validate import validate

    problems: List[Tuple[int, str, str]] = []
    for idx, overrides in enumerate(jobs):
        try:
            cfg = config_loader.load_sweep_config(master_config=master_config, sweep_overrides=list(overrides))
            with open_dict(cfg):
                del cfg["hydra"]  # as Hydra's run_job hands it to the job: hydra.job.num is not known yet
            validate(cfg)
        except CogdistillError as exc:
            problems.append((idx, " ".join(shown[idx]), str(exc)))
        except Exception as exc:  # noqa: BLE001 - Hydra/OmegaConf/YAML errors, rewritten as one line
            from cogdistill.exits import hydra_problem

            message = hydra_problem(exc)
            if message is None:
                raise
            problems.append((idx, " ".join(shown[idx]), message))
    return problems


def raise_for_problems(problems: List[Tuple[int, str, str]], total: int) -> None:
    if not problems:
        return
    by_reason: Dict[str, List[str]] = {}  # a shared override that is wrong is one reason for many jobs
    for idx, overrides, why in problems:
        by_reason.setdefault(why, []).append(f"#{idx}" + (f" ({overrides})" if overrides else ""))
    lines = [f"{', '.join(jobs[:5])}{f' and {len(jobs) - 5} more' if len(jobs) > 5 else ''}: {why}"
             for why, jobs in list(by_reason.items())[:20]]
    more = f"\n... and {len(by_reason) - 20} more reasons" if len(by_reason) > 20 else ""
    raise SweepConfigError(f"{len(problems)} of {total} job(s) of this sweep cannot run, so none was started:\n"
                           + "\n".join(lines) + more)
