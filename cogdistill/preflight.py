"""Before a sweep starts: compose and validate every one of its jobs, and say which are bad.

A sweep over 100 jobs that fails at job 37 has cost 36 jobs of compute before saying that a
model file is malformed; here every job is composed (Hydra) and validated (cogdistill.config.schema)
first, and a bad one stops the sweep before any job runs, with one line per bad job.
Hydra's own composition errors are rewritten as one line (cogdistill.hydra_errors).
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

from cogdistill.errors import CogdistillError
from cogdistill.hydra_errors import hydra_problem


class SweepConfigError(CogdistillError):
    """Some jobs of a sweep cannot run; the message lists each with its reason."""


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
