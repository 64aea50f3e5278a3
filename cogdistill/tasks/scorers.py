"""Answer scorers: find the final answer in a response and judge it against the target.

Each scorer returns the extracted answer and where it starts in the text; cogdistill.traces.records uses that
position to split "reasoning" from "answer" in responses that carry no </think> tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Scored:
    answer: Optional[str]  # the extracted final answer, None when none was found
    start: Optional[int]  # character offset of the answer in the scored text
    correct: bool


_BOXED = re.compile(r"\\boxed\{\s*(-?[\d,]+)\s*\}")
_MARKED = re.compile(r"(?i)answer\s*(?:is)?\s*[:=]?\s*\**\s*\$?\\?\(?\s*(-?\d[\d,]*)")
_NUMBER = re.compile(r"-?\d[\d,]*")


def _last(pattern: re.Pattern, text: str) -> Optional[re.Match]:
    found = None
    for found in pattern.finditer(text):
        pass
    return found


def score_integer(text: str, target: str) -> Scored:
    """The final integer: \\boxed{N}, else 'answer: N' / 'the answer is N', else the last number."""
    match = _last(_BOXED, text) or _last(_MARKED, text) or _last(_NUMBER, text)
    if match is None:
        return Scored(answer=None, start=None, correct=False)
    group = 1 if match.re is not _NUMBER else 0
    value = match.group(group).replace(",", "")
    try:
        correct = int(value) == int(str(target).strip())
    except ValueError:
        correct = False
    return Scored(answer=value, start=match.start(), correct=correct)


_TRUE_FALSE = re.compile(r"(?i)\b(true|false|yes|no|valid|invalid|correct|incorrect)\b")
_AS_BOOL = {"true": "true", "yes": "true", "valid": "true", "correct": "true",
            "false": "false", "no": "false", "invalid": "false", "incorrect": "false"}


def score_true_false(text: str, target: str) -> Scored:
    """Verification items: the last true/false (or yes/no, valid/invalid) word; target 'true'/'false'."""
    match = _last(_TRUE_FALSE, text)
    if match is None:
        return Scored(answer=None, start=None, correct=False)
    value = _AS_BOOL[match.group(1).lower()]
    return Scored(answer=value, start=match.start(), correct=value == str(target).strip().lower())
