"""The command lines of README.md and docs/ (```bash blocks) still work.

A few, offline and fast, run for real (RUN below). Every other `cogdistill`, `cogdistill-report`,
`cogdistill-train` and `cogdistill-export` line (and its `python -m` form) goes through the same
argument checks its command makes before it does anything: the main command's override precheck
(cogdistill.config.overrides, as cogdistill.__main__.cli calls it), the report's and the training
command's parsers, the export's split of its own keys. A placeholder (`<model>`) and the configs a
page asks the reader to write (READERS_OWN) stand in as a zoo model or task. Every `make <target>`
must be a target of the Makefile.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest
from helpers.data import real_mirror
from helpers.docs_pages import ROOT, command_lines, pages, rel

PROGRAMS = {"cogdistill": "main", "cogdistill-report": "report", "cogdistill-train": "train",
            "cogdistill-export": "export"}
MODULES = {"cogdistill": "main", "cogdistill.report": "report", "cogdistill.train": "train",
           "cogdistill.export": "export"}
# names the docs' readers define themselves (myconf/model/o3.yaml, their_conf/) or a simulated study
# writes (build/slurm-example/conf): checked as if they were these shipped configs
STAND_IN = {"model": "demo-smollm2-135m", "task": "multiplication"}
READERS_OWN = {"model": {"o3", "o4-mini", "gpt-4.1", "r1", "o3-mini", "their-teacher", "their-base",
                         "their-student", "teacher-0", "base-0", "student-0", "control-3"},
               "task": {"task-0"}}
LINKED = {"base": "model", "teacher": "model", "tasks": "task"}  # cogdistill-train's keys naming configs


def _command(words: List[str]) -> Tuple[str, List[str]] | None:
    """(which command, its arguments) of a docs line, None for any other program."""
    if words[0] in PROGRAMS:
        return PROGRAMS[words[0]], words[1:]
    if Path(words[0]).name == "python" and words[1:2] == ["-m"] and words[2] in MODULES:
        return MODULES[words[2]], words[3:]
    return None


def _documented():
    for page in pages():
        for number, words in command_lines(page):
            found = _command(words)
            if found:
                yield pytest.param(*found, id=f"{rel(page)}:{number}")


def _stand_ins(arg: str) -> str:
    """`model=<name>` and the readers' own configs become shipped ones; other placeholders a word."""
    key, eq, value = arg.partition("=")
    group = LINKED.get(key.lstrip("+"), key.lstrip("+"))
    if eq and group in STAND_IN and not value.startswith("glob("):
        names = [STAND_IN[group] if "<" in n or n in READERS_OWN[group] else n for n in value.strip("[]").split(",")]
        joined = ",".join(dict.fromkeys(names))  # a sweep names each config once
        value = f"[{joined}]" if value.startswith("[") else joined
    return key + eq + re.sub(r"<[^<>]+>", "x", value)


def _check(command: str, args: List[str]) -> None:
    """The checks the command makes of its arguments before it does anything."""
    if command == "main":  # as cogdistill.__main__.cli
        from cogdistill.config.overrides import check_overrides, effort_budgets
        from cogdistill.config.validate import register_budgets

        args, budgets = effort_budgets(args)
        register_budgets(budgets)
        check_overrides(args)
    elif command == "report":
        from cogdistill.report.__main__ import parse

        parse(args)
    elif command == "train":
        from cogdistill.train.__main__ import parse

        parse(args)
    else:
        from cogdistill.config.overrides import split_overrides
        from cogdistill.export.__main__ import OWN_KEYS
        from cogdistill.registry import EXPORTERS

        own, _ = split_overrides(args, OWN_KEYS)
        assert own.get("to") in EXPORTERS, f"to={own.get('to')}: not one of {EXPORTERS.names()}"


@pytest.mark.parametrize("command,args", list(_documented()))
def test_documented_command_parses(command, args):
    _check(command, [_stand_ins(a) for a in args])


def test_commands_are_found():
    """The block reader still sees the docs' commands: each of the four, more than 40 lines in all."""
    found = list(_documented())
    assert {p.values[0] for p in found} == {"main", "report", "train", "export"} and len(found) > 40


# --- the lines that run: (the line as a page writes it, extra checks of what it printed) --------

def _run(words: List[str], tmp_path: Path) -> subprocess.CompletedProcess:
    command, args = _command(words)
    module = {"main": "cogdistill", "export": "cogdistill.export"}[command]
    args = [f"out={tmp_path}" if a.startswith("out=") else a for a in args]  # never into the checkout
    env = {**os.environ, "COGDISTILL_CACHE_DIR": str(tmp_path / "cache"), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db",
           **({"COGDISTILL_DATA_MIRROR": str(real_mirror())} if real_mirror() else {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)


def _in_docs(line: str) -> List[str]:
    """The line's words, asserting a page still shows it (else RUN checks a command nobody reads)."""
    for page in pages():
        for _, words in command_lines(page):
            if " ".join(words) == line:
                return words
    pytest.fail(f"no page shows `{line}` any more: update RUN")


needs_data = pytest.mark.skipif(real_mirror() is None, reason="real human data mirror absent")
RUN = [
    pytest.param("cogdistill --cfg job", ["engine:", "model:", "task:"], id="cfg-job"),
    pytest.param("python -m cogdistill --cfg job", ["engine:", "model:", "task:"], id="python-cfg-job"),
    pytest.param("cogdistill-export task=game-of-24 to=inspect out=exports/",
                 ["game-of-24.jsonl", "game_of_24_task.py"], id="export-inspect", marks=needs_data),
    pytest.param("cogdistill-export task=game-of-24 to=lm-eval out=exports/",
                 ["game-of-24.yaml"], id="export-lm-eval", marks=needs_data),
    pytest.param("python -m cogdistill -m +experiment=paper engine=dry", ["plan r1-distill-qwen-7b", "717 items"],
                 id="paper-plan", marks=[needs_data, pytest.mark.slow]),
]


@pytest.mark.parametrize("line,expected", RUN)
def test_documented_command_runs(line, expected, tmp_path):
    proc = _run(_in_docs(line), tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-2000:]
    missing = [text for text in expected if text not in out]
    assert not missing, f"`{line}` no longer prints {missing}:\n{out[-2000:]}"


def test_make_targets_exist():
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    named = {(rel(page), words[1]) for page in pages() for _, words in command_lines(page)
             if words[0] == "make" and len(words) > 1 and "=" not in words[1]}
    assert named and not [f"{where}: make {t}" for where, t in named if t not in targets]
