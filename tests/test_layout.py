"""The package's structure as contracts: one lazy registry, layers with no upward import and no
import circle (import-linter and its graph library grimp, public tools), one censoring rule for
generated and replayed traces."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cogdistill.config.schema import CONF_DIR, REPO_ROOT
from cogdistill.engines.base import Generation
from cogdistill.registry import ENGINES, MEASURES, SCORERS, TASK_KINDS, WEIGHT_SOURCES, Registry, UnknownName
from cogdistill.traces.records import TRACE_SCHEMA, censoring, trace_row
from helpers.config import compose


def test_layers_are_kept():
    """.importlinter's layer contract: nothing imports from a layer above its own."""
    out = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--config", str(REPO_ROOT / ".importlinter")],
                         capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "KEPT" in out.stdout and "BROKEN" not in out.stdout


def strongly_connected(graph):
    """Tarjan's strongly connected components of {module: imported modules}, those of 2 or more."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circle():
    import grimp

    g = grimp.build_graph("cogdistill", include_external_packages=False)
    graph = {m: {x for x in g.find_modules_directly_imported_by(m)} for m in g.modules}
    assert len(graph) > 50  # the whole package was read, not an empty graph
    assert strongly_connected(graph) == []
    # the check itself finds a circle when there is one
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_validating_imports_no_implementation():
    """Validation asks the registry whether a name exists; it imports no task kind, scorer or engine."""
    code = """
import json, sys
sys.path.insert(0, "tests")
from helpers.config import compose
from cogdistill.config.validate import validate
validate(compose(["task=[relational-3ps,syllogisms-ragni2016]", "engine=vllm"]))
mods = [m for m in sys.modules if m.startswith(("cogdistill.tasks.relational", "cogdistill.tasks.syllogisms",
        "cogdistill.engines.vllm_engine", "cogdistill.engines.hf_transformers", "vllm", "torch"))]
print(json.dumps(mods))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_every_registered_name_loads():
    for registry in (TASK_KINDS, SCORERS, WEIGHT_SOURCES):
        for name in registry:
            assert callable(registry.load(name)), (registry.kind, name)
    for name, spec in ENGINES.items():
        if spec.source == "generate" and spec.installed():
            assert callable(ENGINES.load(name))
    assert {name for name in MEASURES} == {"mean_rt", "median_rt", "mean_log_rt", "error_rate"}


def test_engine_configs_and_registry_agree():
    """Every conf/engine/<name>.yaml but `auto` is a registered engine, and every engine has one."""
    files = {p.stem for p in (CONF_DIR / "engine").glob("*.yaml")} - {"auto"}
    assert files == set(ENGINES)
    for name in files:
        job = compose([f"engine={name}"])
        assert job.engine.name == name


def test_registry_names_and_errors():
    things: Registry[int] = Registry("thing")
    things.add("json_loads", "json:loads", spec=1)
    assert "json_loads" in things and things.names() == ["json_loads"] and things.spec("json_loads") == 1
    assert things.load("json_loads") is json.loads
    with pytest.raises(UnknownName, match=r"'json_load' is not a registered thing; known: \['json_loads'\]\. "
                                          r"Did you mean 'json_loads'\?"):
        things.load("json_load")
    with pytest.raises(ValueError, match="registered twice"):
        things.add("json_loads", "json:dumps")
    with pytest.raises(ValueError, match="not 'module:object'"):
        things.add("bad", "json.loads")


@pytest.mark.parametrize("finish", ["stop", "length", "overlong"])
@pytest.mark.parametrize("think_end", [None, "</think>"])
@pytest.mark.parametrize("closed", [False, True])
def test_one_censoring_rule(finish, think_end, closed):
    """Replayed records (cogdistill.traces.replay) and generated traces (trace_row) are censored
    by the same rule: here the rule is spelled out once more, by hand, and compared with both."""
    expected = finish == "overlong" or (finish == "length" and (not closed if think_end else True))
    assert censoring(finish, closed=closed, think_end=think_end) == (finish, expected)

    class Chars:  # one token per character: counts are lengths
        def encode(self, text, add_special_tokens=False):
            return list(range(len(text)))

        def decode(self, ids, skip_special_tokens=True):
            return "x" * len(ids)

    answer = "The answer is 42" if closed else ""
    gen = Generation(text=answer, token_ids=None, prompt_tokens=3, finish_reason=finish, latency_s=0.1,
                     reasoning_text="let me think")
    row = trace_row(gen, tokenizer=Chars(), think_start=None, think_end=think_end,
                    score=lambda text: SCORERS.load("integer")(text, "42"))
    assert row["censored"] == (finish == "overlong" or (finish == "length" and (not closed if think_end else True)))
    assert set(row) <= set(TRACE_SCHEMA)
