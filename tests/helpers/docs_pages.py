"""The documentation as the tests read it: the pages (README.md and docs/), their prose lines outside
code fences, their headings and anchors, their ```bash command lines, and mkdocs.yml's nav titles."""

from __future__ import annotations

import re
import shlex
import unicodedata
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^\s*(```|~~~)(\w*)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
ATTR_ID = re.compile(r"\s*\{[^}]*#([\w-]+)[^}]*\}\s*$")  # attr_list: `## Title {#custom-id}`


def pages() -> List[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def lines(page: Path) -> Iterator[Tuple[int, str, str]]:
    """(line number, line, fence language or None for prose), fence lines themselves left out."""
    lang = None
    for number, line in enumerate(page.read_text().splitlines(), 1):
        fence = FENCE.match(line)
        if fence:
            lang = (fence.group(2) or "text") if lang is None else None
            continue
        yield number, line, lang


def slug(title: str) -> str:
    """Python-Markdown's toc slugify (mkdocs' default): what `#anchor` a heading gets."""
    text = re.sub(r"<[^>]+>", "", title.replace("`", ""))
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", text).strip().lower())


def headings(page: Path) -> Dict[str, str]:
    """The page's headings as they read (code spans' backticks dropped) -> their anchors."""
    found: Dict[str, str] = {}
    for _, line, lang in lines(page):
        match = HEADING.match(line) if lang is None else None
        if match:
            title = match.group(2)
            custom = ATTR_ID.search(title)
            title = ATTR_ID.sub("", title)
            found[title.replace("`", "")] = custom.group(1) if custom else slug(title)
    return found


class _IgnoreTags(yaml.SafeLoader):
    """mkdocs.yml names Python objects (`!!python/name:...`); only its nav matters here."""


_IgnoreTags.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)


def nav_titles() -> Dict[str, Path]:
    """mkdocs.yml's nav: each page's title -> its file (a section's index page under the section's name)."""
    nav = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_IgnoreTags)["nav"]
    titles: Dict[str, Path] = {}

    def walk(entries, section=None):
        for entry in entries:
            if isinstance(entry, str):  # a section's index page
                titles[section] = DOCS / entry
                continue
            (title, target), = entry.items()
            if isinstance(target, list):
                walk(target, title)
            else:
                titles[title] = DOCS / target
    walk(nav)
    return titles


def command_lines(page: Path) -> Iterator[Tuple[int, List[str]]]:
    """Each command of the page's ```bash blocks as shell words (continuations joined, comments dropped)."""
    pending, start = "", 0
    for number, line, lang in lines(page):
        if lang not in ("bash", "sh", "shell"):
            continue
        text = line.strip()
        start = start or number
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        words = shlex.split(pending + text, comments=True)
        if words:
            yield start, words
        pending, start = "", 0
