"""The installed commands (pyproject's [project.scripts]) behave as their `python -m` forms."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def command(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = BIN / name
    if not exe.is_file():
        pytest.fail(f"{exe} is missing: the package's [project.scripts] are installed by `make setup` "
                    "(pip install -e .)")
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_cogdistill_composes_and_refuses_like_python_m(isolated_env):
    shown = command("cogdistill", "--cfg", "job", cwd=isolated_env)
    assert shown.returncode == 0 and "model:\n  name: demo-smollm2-135m" in shown.stdout, shown.stderr[-2000:]
    typo = command("cogdistill", "modle=demo-smollm2-135m", cwd=isolated_env)
    assert typo.returncode == 2 and "Did you mean model=...?" in typo.stdout and "Traceback" not in typo.stderr


@pytest.mark.parametrize("name, usage", [("cogdistill-report", "--experiment"),
                                         ("cogdistill-train", "mode=sft|rl base=<model>"),
                                         ("cogdistill-export", "to=inspect|lm-eval")])
def test_report_train_and_export_commands_answer_help(isolated_env, name, usage):
    proc = command(name, "--help", cwd=isolated_env)
    assert proc.returncode == 0 and usage in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_train_command_refuses_bad_input_with_exit_2(isolated_env):
    proc = command("cogdistill-train", "mode=sft", cwd=isolated_env)
    assert proc.returncode == 2 and "missing mandatory value: base" in proc.stdout and "Traceback" not in proc.stderr


def test_export_command_refuses_bad_input_with_exit_2(isolated_env):
    proc = command("cogdistill-export", "task=game-of-24", "to=inspekt", cwd=isolated_env)
    assert proc.returncode == 2 and "to=inspekt" in proc.stdout and "Did you mean 'inspect'?" in proc.stdout
