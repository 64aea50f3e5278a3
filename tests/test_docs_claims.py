"""The docs cannot drift from the code: counted claims, the inventory tables, and the docs citations
in the code.

Counted claims. Every number of tasks, task kinds, engines, protocols, models, scorers or log formats
in README.md and docs/ carries an HTML comment (invisible once rendered) right before it, naming what
it counts:

    the <!-- count: tasks -->12 tasks            conf/task/*.yaml
    both demo models: <!-- count: demo.models -->both demo models   what experiments/demo.yaml sweeps
    <!-- count: none -->200 models               counts nothing here (a simulated study, a page layout)

The counters are COUNTERS below and `<study>.tasks` / `<study>.models` for every experiments/<study>.yaml.
docs/measurements.md is left out: it records what was measured then, on the study as it was.

Citations. Code, configs and the Makefile cite the docs as `(docs: <nav title>[, "<heading>"])` or
`docs/<page>.md[#anchor][, "<heading>"]`; each must name a page of mkdocs.yml's nav (or a file) and,
where it quotes a heading or an anchor, one that page has.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest
import yaml
from helpers.docs_pages import DOCS, ROOT, headings, lines, nav_titles, pages, rel

from cogdistill import registry

CONF = ROOT / "conf"


def _stems(folder: str, pattern: str = "*") -> List[str]:
    return sorted(p.stem for p in (CONF / folder).glob(f"{pattern}.yaml"))


COUNTERS: Dict[str, Callable[[], int]] = {
    "tasks": lambda: len(_stems("task")),
    "task-kinds": lambda: len(registry.TASK_KINDS),
    "engines": lambda: len(registry.ENGINES),
    "protocols": lambda: len(registry.PROTOCOLS),
    "log-formats": lambda: len(registry.LOG_FORMATS),
    "scorers": lambda: len(registry.SCORERS),
    "models": lambda: len(_stems("model")),
}


def _study_count(study: str, what: str) -> int:
    """How many tasks or models experiments/<study>.yaml runs (its task defaults; its sweep's model= value)."""
    cfg = yaml.safe_load((ROOT / "experiments" / f"{study}.yaml").read_text())
    if what == "tasks":
        (tasks,) = [entry["override /task"] for entry in cfg["defaults"]
                    if isinstance(entry, dict) and "override /task" in entry]
        return len(tasks)
    value = str(cfg["hydra"]["sweeper"]["params"]["model"]).strip()
    glob = re.fullmatch(r"glob\(\[?(.*?)\]?\)", value)
    if not glob:
        return len(value.split(","))
    patterns = glob.group(1).split(",")
    return sum(any(fnmatch.fnmatch(stem, p.strip()) for p in patterns) for stem in _stems("model"))


def count_of(name: str) -> int:
    if name in COUNTERS:
        return COUNTERS[name]()
    study, _, what = name.partition(".")
    if what in ("tasks", "models") and (ROOT / "experiments" / f"{study}.yaml").is_file():
        return _study_count(study, what)
    raise KeyError(name)


WORDS = {w: n for n, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                    "fourteen fifteen sixteen seventeen eighteen nineteen twenty".split())}
WORDS["both"] = 2
NUMBER = r"(?:\d[\d,]*|both|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|" \
         r"fifteen|sixteen|seventeen|eighteen|nineteen|twenty)"
MARKER = re.compile(r"<!-- count: (?P<name>[\w.-]+) -->(?P<number>" + NUMBER + r")\b", re.I)
# "12 tasks", "both demo models", "21 models": a number, at most one word, a thing the registries count
CLAIM = re.compile(r"\b(?P<number>" + NUMBER + r")\s+(?:[\w'-]+\s+)?"
                   r"(?P<noun>tasks|task kinds|engines|protocols|models|scorers|log formats)\b", re.I)
CLAIM_PAGES = [p for p in pages() if p != DOCS / "measurements.md"]


def _number(text: str) -> int:
    return WORDS[text.lower()] if text.lower() in WORDS else int(text.replace(",", ""))


def _prose(page: Path):
    return [(n, line) for n, line, lang in lines(page) if lang is None]


@pytest.mark.parametrize("page", CLAIM_PAGES, ids=rel)
def test_every_counted_claim_is_marked(page):
    """A count of tasks, engines, models... with no marker before it would drift unseen."""
    unmarked = []
    for n, line in _prose(page):
        marked = re.sub(r"<!-- count: [\w.-]+ -->", "\0", line)  # a marker: one character before its number
        unmarked += [f"{rel(page)}:{n}: '{m.group(0)}'" for m in CLAIM.finditer(marked)
                     if m.start() == 0 or marked[m.start() - 1] != "\0"]
    assert not unmarked, ("a counted claim without `<!-- count: NAME -->` before its number (NAME: one of "
                          f"{sorted(COUNTERS)}, <study>.tasks, <study>.models, or none): {unmarked}")


def _markers():
    for page in pages():
        for n, line in _prose(page):
            for m in MARKER.finditer(line):
                yield pytest.param(m.group("name"), m.group("number"), line, m.start(), id=f"{rel(page)}:{n}")


@pytest.mark.parametrize("name,number,line,start", list(_markers()))
def test_marked_count_is_true(name, number, line, start):
    assert line[:start].strip(), ("a marker at the start of a line opens an HTML block and splits the "
                                  "paragraph when rendered: move a word of the previous line before it")
    if name == "none":
        return
    try:
        expected = count_of(name)
    except KeyError:
        pytest.fail(f"`<!-- count: {name} -->` names no counter: {sorted(COUNTERS)}, <study>.tasks|models, none")
    assert _number(number) == expected, f"'{number}' {name}, but there are {expected}: write {expected}"


def test_markers_are_found():
    """The claims above are checked at all: the README's task count is one of them."""
    names = [values[0] for values in (p.values for p in _markers())]
    assert "tasks" in names and "paper.models" in names


# --- the inventory tables list exactly what the registries hold --------------------------------

def _first_column(page: Path, header: str) -> List[str]:
    """The first cell (code span) of each row of the table whose header row starts with `header`."""
    rows, inside = [], False
    for _, line, lang in lines(page):
        if lang is not None:
            continue
        if line.startswith(f"| {header} |"):
            inside = True
        elif inside and not line.startswith("|"):
            break
        elif inside and not line.startswith("| ---"):
            rows.append(re.match(r"\|\s*`([^`]+)`", line).group(1))
    assert rows, f"{rel(page)}: no table headed `| {header} |`"
    return sorted(rows)


@pytest.mark.parametrize("page,header,expected", [
    ("tasks.md", "task", lambda: _stems("task")),
    ("models-and-engines.md", "engine", lambda: registry.ENGINES.names()),
    ("protocols.md", "`protocol`", lambda: registry.PROTOCOLS.names()),
], ids=["tasks", "engines", "protocols"])
def test_inventory_tables(page, header, expected):
    assert _first_column(DOCS / page, header) == sorted(expected())


# --- docs citations in code, configs and the Makefile --------------------------------------------

SOURCES = sorted({*ROOT.glob("cogdistill/**/*.py"), *ROOT.glob("hydra_plugins/**/*.py"),
                  *ROOT.glob("benchmarks/*.py"), *ROOT.glob("conf/**/*.yaml"), *ROOT.glob("experiments/*.yaml"),
                  ROOT / "Makefile", ROOT / "pyproject.toml"})
QUOTED = r"""(?:,\s*(?P<q>["'])(?P<section>[^"'\n]+)(?P=q))?"""
BY_TITLE = re.compile(r"\(docs:\s+(?P<page>[^,;()]+?)\s*" + QUOTED + r"\s*[,;)]")
BY_PATH = re.compile(r"\bdocs/(?P<page>[\w/-]+\.md)(?:#(?P<anchor>[\w-]+))?" + QUOTED)
# in modules another part of issue 26 is rewriting now (the report's catalogue): fix them there to
# `(docs: The comparison report[, "<heading>"])`, then empty this set (the last test insists)
def _flat(text: str) -> str:
    """Comments and docstrings rejoined: a citation may wrap onto the next comment line."""
    return re.sub(r"\s*\n\s*(?:#\s*)?", " ", text)


def _citations():
    for source in SOURCES:
        text = _flat(source.read_text())
        for m in [*BY_TITLE.finditer(text), *BY_PATH.finditer(text)]:
            yield rel(source), m.group(0), m


def _problem(m: re.Match) -> Optional[str]:
    titles = nav_titles()
    page = titles.get(m.group("page")) or (DOCS / m.group("page"))
    if not page.is_file():
        return f"no page {m.group('page')!r}: a nav title of mkdocs.yml ({sorted(titles)}) or a file under docs/"
    found = headings(page)
    anchor = m.groupdict().get("anchor")
    if anchor and anchor not in found.values():
        return f"{rel(page)} has no anchor #{anchor}: {sorted(found.values())}"
    if m.group("section") and m.group("section") not in found:
        return f"{rel(page)} has no heading {m.group('section')!r}: {sorted(found)}"
    return None


def test_docs_citations_resolve():
    problems = [f"{where}: {cited} -> {why}" for where, cited, m in _citations() if (why := _problem(m))]
    assert not problems, problems


def test_citations_are_found():
    cited = list(_citations())
    assert len(cited) > 20, "the citation patterns no longer match the code's citations"
