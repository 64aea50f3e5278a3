"""The lock files (requirements/lock-*.txt, issue 24): `make setup` installs exactly what the lock names,
and the lock still covers what pyproject.toml and requirements/lock-*.in ask for."""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
REQS = ROOT / "requirements"
PLATFORMS = ("cpu", "cuda")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def lock_pins(text: str) -> dict[str, str]:
    """name -> version of every `name==version` entry in a uv/pip-compile lock."""
    pins = {}
    for line in text.splitlines():
        if m := _PIN.match(line):
            pins[canonicalize_name(m[1])] = m[2]
    return pins


def freeze_pins(text: str) -> dict[str, str]:
    """name -> version from `pip freeze` (a `name @ url` line keeps its url, which never equals a pin)."""
    pins = {}
    for line in text.splitlines():
        if m := _PIN.match(line):
            pins[canonicalize_name(m[1])] = m[2]
        elif " @ " in line:
            name, url = line.split(" @ ", 1)
            pins[canonicalize_name(name)] = "@ " + url.strip()
    return pins


def drift(locked: dict[str, str], installed: dict[str, str]) -> list[str]:
    """Every way the installed set differs from the lock, one line each (empty: identical)."""
    out = [f"missing: {n}=={v}" for n, v in sorted(locked.items()) if n not in installed]
    out += [f"{n}: installed {installed[n]}, lock {v}" for n, v in sorted(locked.items())
            if n in installed and installed[n] != v]
    out += [f"not in the lock: {n}=={v}" for n, v in sorted(installed.items()) if n not in locked]
    return out


def inputs(platform: str) -> list[Requirement]:
    """What `make lock` resolves for one platform: pyproject's dependencies and [dev,train] extras, and
    requirements/lock-<platform>.in with the files it includes."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + project["optional-dependencies"]["dev"] + \
        project["optional-dependencies"]["train"]
    pending = [REQS / f"lock-{platform}.in"]
    while pending:
        for line in pending.pop().read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("-r "):
                pending.append(REQS / line[3:].strip())
            elif line:
                lines.append(line)
    return [Requirement(x) for x in lines]


def excluded(platform: str) -> set[str]:
    files = [REQS / "lock-exclude.txt"] + ([REQS / "lock-exclude-cpu.txt"] if platform == "cpu" else [])
    return {canonicalize_name(x.split("#", 1)[0].strip()) for f in files
            for x in f.read_text().splitlines() if x.split("#", 1)[0].strip()}


@pytest.mark.parametrize("platform", PLATFORMS)
def test_lock_is_current_with_its_inputs(platform):
    """Fails when pyproject.toml or a lock-*.in asks for something the lock lacks or does not satisfy
    (run `make lock`), when an excluded package crept in, or when an entry has no hash."""
    text = (REQS / f"lock-{platform}.txt").read_text()
    pins = lock_pins(text)
    stale = []
    for req in inputs(platform):
        name = canonicalize_name(req.name)
        if name not in pins:
            stale.append(f"{req} is not in the lock")
        elif not req.specifier.contains(Version(pins[name]), prereleases=True):
            stale.append(f"{req}: the lock has {pins[name]}")
    assert not stale, f"requirements/lock-{platform}.txt is stale (run `make lock`): " + "; ".join(stale)
    assert not excluded(platform) & pins.keys()
    # every entry is followed by its hashes: an entry without one would fail `pip install --require-hashes`
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    unhashed = [e.split()[0] for e in entries if _PIN.match(e) and "--hash=sha256:" not in e]
    assert not unhashed and len(entries) == len(pins)


def test_drift_is_seen():
    """The comparison below finds each kind of drift against the real CPU lock."""
    locked = lock_pins((REQS / "lock-cpu.txt").read_text())
    assert drift(locked, dict(locked)) == []
    name, version = sorted(locked.items())[0]
    changed = {**locked, name: version + ".post1"}
    extra = {**locked, "no-such-package": "1.0"}
    gone = {n: v for n, v in locked.items() if n != name}
    assert drift(locked, changed) == [f"{name}: installed {version}.post1, lock {version}"]
    assert drift(locked, extra) == ["not in the lock: no-such-package==1.0"]
    assert drift(locked, gone) == [f"missing: {name}=={version}"]


def test_venv_is_exactly_the_lock():
    """The running venv, if `make setup` made it from a lock, holds exactly that lock's versions."""
    marker = Path(sys.prefix) / ".installed"
    if sys.prefix == sys.base_prefix or not marker.is_file():
        pytest.skip("not running in a venv made by `make setup`")
    lock = marker.read_text().strip()
    if not lock.startswith("requirements/lock-"):
        pytest.skip("this venv was set up unlocked (TORCH= or VLLM= given to make setup), or before the lock files")
    freeze = subprocess.run([sys.executable, "-m", "pip", "freeze", "--all", "--exclude-editable"],
                            capture_output=True, text=True, check=True).stdout
    differences = drift(lock_pins((ROOT / lock).read_text()), freeze_pins(freeze))
    assert not differences, f"{sys.prefix} has drifted from {lock} (re-run `make setup`): " + \
        "; ".join(differences)
