"""`cogdistill-export task=<name> to=inspect|lm-eval [out=DIR] [key=value ...]`

Writes one of our tasks for another harness (cogdistill.registry.EXPORTERS): the same prompts, item
ids and targets, so that any model that harness runs can be read back with engine=replay
engine.path=<its log> (docs: Bring your evaluation logs). out= defaults to exports/; any other key=value
overrides the main config as for `python -m cogdistill` (data.mirror=, task.<name>.max_items=, task.<name>.ranks=...).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List

from cogdistill.config.schema import ConfigError, did_you_mean

OWN_KEYS = {"to", "out"}


def main(argv: List[str]) -> List[Path]:
    from cogdistill.config.overrides import split_overrides
    from cogdistill.registry import EXPORTERS

    own, overrides = split_overrides(argv, OWN_KEYS)
    target = own.get("to")
    if target not in EXPORTERS:
        raise ConfigError(f"to={target}: name the harness to write for, one of {', '.join(EXPORTERS.names())} "
                          "(e.g. cogdistill-export task=game-of-24 to=inspect)."
                          + did_you_mean(str(target), EXPORTERS.names()))
    tasks = [o for o in overrides if o.split("=", 1)[0] == "task"]
    if len(tasks) != 1 or "," in tasks[0] or "(" in tasks[0]:
        raise ConfigError("name one task to export: task=<name> (e.g. task=game-of-24); export several tasks one "
                          "at a time.")
    out = Path(str(own.get("out", "exports"))).expanduser()
    from cogdistill.config.compose import compose_main
    from cogdistill.config.schema import cache_dir
    from cogdistill.console import console
    from cogdistill.tasks.load import load_task

    job = compose_main(overrides)
    (task_cfg,) = job.task.values()
    task = load_task(task_cfg, mirror=job.data.mirror, cache=cache_dir(job), timeout_s=job.data.download_timeout_s)
    out.mkdir(parents=True, exist_ok=True)
    written = EXPORTERS.load(target)(task, out)
    console.print(f"task '{task.name}' ({task.items.height} items) written for {target}: "
                  + ", ".join(str(p) for p in written), soft_wrap=True)
    return written


def entry() -> None:
    """The installed command `cogdistill-export` (also `python -m cogdistill.export`)."""
    from cogdistill.exits import run_command

    if any(a in ("-h", "--help") for a in sys.argv[1:]):
        print(__doc__)
        return
    run_command(lambda: main(sys.argv[1:]))


if __name__ == "__main__":
    entry()
