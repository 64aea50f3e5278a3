"""Hostile inputs (issue 23): a YAML alias bomb in a model file, nonsense training settings, and
COGDISTILL_DEBUG read as it is meant. Each through a real command-line process: exit 2, one line
naming the file or the field and the fix."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cogdistill.config.schema import ConfigError
from cogdistill.config.yaml_bounds import MAX_NODES, check_text, expanded_size
from helpers.errors import expect


def run(module: str, args, cwd: Path, timeout: float = 60, **env: str):
    environ = {k: v for k, v in os.environ.items() if k != "COGDISTILL_DEBUG"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**environ, **env})


def lines_of(proc) -> list:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]


def laughs(levels: int, width: int = 10, indent: str = "") -> str:
    """Anchors referring to anchors: width**levels scalars from a file of a few hundred bytes."""
    out = [f"{indent}l0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    out += [f"{indent}l{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels + 1)]
    return "\n".join(out) + "\n"


MODEL = "name: bomb\nhf_id: x/bomb\nrole: control\nfamily: test\n"


# --- 8. YAML aliases ("billion laughs") --------------------------------------------------------

def _expanded(value) -> int:
    """YAML nodes of a loaded value, shared objects walked every time they occur (no memo): a mapping
    is one node plus a key node and the value's nodes per entry."""
    if isinstance(value, dict):
        return 1 + sum(1 + _expanded(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(_expanded(v) for v in value)
    return 1


@pytest.mark.parametrize("text", [laughs(3, width=3), laughs(4, width=5),
                                  "base: &b {x: 1, y: [1, 2]}\nmodels: [*b, *b, {z: *b}]\n"])
def test_expanded_size_counts_every_alias_as_its_copy(text):
    assert expanded_size(yaml.compose(text, Loader=yaml.SafeLoader)) == _expanded(yaml.safe_load(text))


def test_a_recursive_alias_and_a_bomb_are_refused_by_name():
    expect(ConfigError, lambda: check_text("a: &x [1, *x]\n", "conf/model/loop.yaml"), "conf/model/loop.yaml",
           "recursive YAML alias")
    expect(ConfigError, lambda: check_text(laughs(6), "conf/model/bomb.yaml"), "conf/model/bomb.yaml",
           f"more than {MAX_NODES:,} values", "Remove the nested aliases")
    check_text(laughs(3), "conf/model/fine.yaml")  # 1,000 values with aliases: a config may use them


@pytest.mark.parametrize("where", ["top", "engine_kwargs", "sweep"])
def test_a_billion_laughs_model_file_exits_2_in_seconds(tmp_path, where):
    """The issue's file: 7 levels of 10 aliases (10**7 values) from about 1 kB, at the top of the file
    or under engine_kwargs; a job and a sweep's preflight refuse it before building anything."""
    folder = tmp_path / "mine"
    (folder / "model").mkdir(parents=True)
    body = laughs(7) if where == "top" else "engine_kwargs:\n  vllm:\n" + laughs(7, indent="    ")
    bomb = folder / "model" / "bomb.yaml"
    bomb.write_text(MODEL + body)
    assert bomb.stat().st_size < 1500
    sweep = ["-m", "model=bomb,demo-smollm2-135m"] if where == "sweep" else ["model=bomb"]
    began = time.monotonic()
    proc = run("cogdistill", [*sweep, f"hydra.searchpath=[file://{folder}]", "engine=dry"], tmp_path, timeout=60,
               COGDISTILL_OUTPUT_DIR=str(tmp_path / "out"), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'db'}")
    took = time.monotonic() - began
    said = lines_of(proc)
    assert proc.returncode == 2, said
    assert took < 30, f"{took:.0f} s"  # about 1 s here; unbounded, the process grew to gigabytes for minutes
    shown = said[-1] if where == "sweep" else "\n".join(said)
    assert len(said) == (2 if where == "sweep" else 1), said  # a sweep: its one-line header, then the job's line
    assert str(bomb) in shown and "aliases" in shown and "Remove the nested aliases" in shown, said


# --- 9. the training command's settings --------------------------------------------------------

@pytest.mark.parametrize("setting, needles", [
    ("steps=-1", ["steps=-1", "at least 1"]),
    ("lora.r=-3", ["lora.r=-3", "0 (full fine-tuning)"]),
    ("lr=1e308", ["lr=1e+308", "at most 1"]),
    ("lr=nan", ["lr is not a finite number"]),
    ("batch_size=0", ["batch_size=0", "at least 1"]),
    ("max_length=0", ["max_length=0", "at least 1"]),
    ("name=../../../tmp/x", ["name=../../../tmp/x", "letters, digits"]),
])
def test_nonsense_training_settings_exit_2_naming_the_field(tmp_path, setting, needles):
    conf = tmp_path / "conf"
    proc = run("cogdistill.train", ["mode=rl", "base=demo-smollm2-135m", f"conf_dir={conf}",
                                    f"output_dir={tmp_path / 'weights'}", "tracking.enabled=false", setting],
               tmp_path, COGDISTILL_CACHE_DIR=str(tmp_path / "cache"))
    said = lines_of(proc)
    assert proc.returncode == 2 and len(said) == 1, said
    assert "training setting" in said[0] and "internal error" not in said[0]
    for needle in needles:
        assert needle in said[0], said
    assert not conf.exists() and not (tmp_path / "weights").exists()  # nothing trained, nothing registered


# --- COGDISTILL_DEBUG ----------------------------------------------------------------------------

@pytest.mark.parametrize("value, traceback", [("no", False), ("1", True), ("yes", True)])
def test_debug_adds_a_traceback_only_when_on_and_keeps_exit_2(tmp_path, value, traceback):
    proc = run("cogdistill", ["engine=dry", "sampling.temperature=-1"], tmp_path, COGDISTILL_DEBUG=value,
               COGDISTILL_OUTPUT_DIR=str(tmp_path / "out"))
    said = lines_of(proc)
    assert proc.returncode == 2, said
    assert ("Traceback (most recent call last)" in proc.stderr) == traceback, said
    errors = [line for line in said if line.startswith("error:")]  # the one line, traceback or not
    assert len(errors) == 1 and "sampling.temperature=-1.0" in errors[0], said
    if not traceback:
        assert said == errors
