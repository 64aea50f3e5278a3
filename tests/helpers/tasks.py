"""Task configs for tests: the multiplication task over a mirror, the generic bring-your-own-data task."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cogdistill.config.schema import DifficultyConfig, SourceConfig, TaskConfig

PROMPT = "What is {a} x {b}?"


def mult_config(sha: str, **kw) -> TaskConfig:
    return TaskConfig(
        name="multiplication", kind="multiplication", prompt=kw.pop("prompt", PROMPT),
        sources={"trials": SourceConfig(url="http://127.0.0.1:9/unreachable.csv", sha256=sha,
                                        mirror_path="soh-multiplication/consolidated_mult_data.csv")},
        difficulty=DifficultyConfig(measure=kw.pop("measure", "mean_rt"), rt_min=0.25, rt_max=60.0), **kw)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def generic_cfg(path: Path, cls=TaskConfig, measure="mean_rt", url=None, **kw) -> TaskConfig:
    return cls(name="mine", kind="generic", prompt=kw.pop("prompt", "{question}"), scorer="integer",
               sources={"items": SourceConfig(url=url or "http://127.0.0.1:9/x", sha256=sha(path),
                                              mirror_path=path.name)},
               difficulty=DifficultyConfig(measure=measure, rt_min=kw.pop("rt_min", None)), **kw)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
