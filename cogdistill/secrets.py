"""Secrets never reach a file the tool writes: masking known keys, refusing secret-looking settings.

Two jobs, one owner:
- `mask(text, secrets)` removes a known secret (an API key read from the environment) from text,
  in whole or in part: a server that echoes the key and an error cut to a few hundred characters
  must not leave a prefix or a fragment behind. Mask first, truncate after.
- `secret_problem(key, value)` says why a config value looks like a credential, so that the
  config is refused before Hydra saves it under .hydra/ and MLflow logs it as a param.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from typing import Iterable, List, Optional, Sequence, Set

MASK = "***"
# A fragment this long that also occurs in the key is masked; shorter runs are too likely to be
# ordinary text ("Bearer", "sk-") for masking them to say anything.
MIN_FRAGMENT = 6

# Names of settings that hold credentials whatever their value looks like: a whole name, or a
# name ending in one of the compound words ("eos_token" and "auth_mode" are not credentials).
_SECRET_WHOLE = {"token", "auth", "key", "secret", "password", "passwd", "authorization", "credential",
                 "credentials", "apikey", "api_key", "api-key"}
_SECRET_SUFFIX = re.compile(r"(api[_-]?key|secret[_-]?key|client[_-]?secret|password|passwd|private[_-]?key|"
                            r"access[_-]?key|(api|access|auth|bearer|session|refresh|id)[_-]?token|authorization|"
                            r"credentials?)$", re.I)
# Well-known key shapes: OpenAI/Anthropic (sk-...), Hugging Face (hf_...), GitHub, AWS, Slack, JWT.
_KEY_SHAPES = re.compile(
    r"(sk-[A-Za-z0-9_\-]{16,}|hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|"
    r"AKIA[0-9A-Z]{16}|xox[abposr]-[A-Za-z0-9-]{10,}|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]+|"
    r"Bearer\s+\S{8,})")


def mask(text: str, secrets: Iterable[Optional[str]]) -> str:
    """text with every occurrence of each secret, and of every fragment of at least MIN_FRAGMENT
    characters of it (a prefix cut by truncation, a suffix after a line break), replaced by ***."""
    keys = [s for s in secrets if s and len(s) >= 4]
    if not keys or not text:
        return text
    for key in sorted(keys, key=len, reverse=True):
        text = text.replace(key, MASK)
    spans = _fragment_spans(text, keys)
    if not spans:
        return text
    out, last = [], 0
    for start, end in spans:
        out.append(text[last:start])
        out.append(MASK)
        last = end
    out.append(text[last:])
    return "".join(out)


def _fragment_spans(text: str, keys: Sequence[str]) -> List[tuple]:
    """Maximal runs of text made of a substring of a key, at least MIN_FRAGMENT long, merged."""
    spans: List[tuple] = []
    for key in keys:
        width = min(MIN_FRAGMENT, len(key))
        grams: Set[str] = {key[i:i + width] for i in range(len(key) - width + 1)}
        i = 0
        while i <= len(text) - width:
            if text[i:i + width] in grams:
                end = i + width
                while end < len(text) and text[i:end + 1] in key:  # extend while still a substring of the key
                    end += 1
                spans.append((i, end))
                i = end
            else:
                i += 1
    spans.sort()
    merged: List[tuple] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def environment_secrets(names: Iterable[Optional[str]]) -> List[str]:
    """The values of the named environment variables that are set (the keys to mask)."""
    return [os.environ[n] for n in names if n and os.environ.get(n)]


def _entropy_bits_per_char(value: str) -> float:
    counts = Counter(value)
    return -sum(c / len(value) * math.log2(c / len(value)) for c in counts.values())


def looks_like_a_key(value: str) -> bool:
    """A known key shape, or a long random-looking token (letters and digits mixed, no spaces)."""
    if _KEY_SHAPES.search(value):
        return True
    token = value.strip()
    return (len(token) >= 32 and not re.search(r"[\s/\\:]", token) and re.search(r"[0-9]", token) is not None
            and re.search(r"[A-Za-z]", token) is not None and _entropy_bits_per_char(token) >= 4.0)


def secret_problem(key: str, value: object) -> Optional[str]:
    """Why the setting `key: value` looks like a credential, or None. Empty and null values pass:
    `api_key: null` only removes a field."""
    if value is None or isinstance(value, bool) or (isinstance(value, str) and not value.strip()):
        return None
    if is_credential_name(key) and not isinstance(value, float):
        return f"`{key}` names a credential"
    if isinstance(value, str) and looks_like_a_key(value):
        return f"the value of `{key}` looks like an API key or token"
    return None


def is_credential_name(key: str) -> bool:
    leaf = key.rsplit(".", 1)[-1].lower()
    return leaf in _SECRET_WHOLE or _SECRET_SUFFIX.search(leaf) is not None


def find_secrets(node: object, prefix: str = "") -> List[str]:
    """Problems (see secret_problem) anywhere inside a nested dict/list config value."""
    if isinstance(node, dict):
        found: List[str] = []
        for k, v in node.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            nested = isinstance(v, (dict, list))
            problem = (f"`{path}` names a credential" if nested and v and is_credential_name(path)
                       else None if nested else secret_problem(path, v))
            found += [problem] if problem else find_secrets(v, path)
        return found
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in find_secrets(v, f"{prefix}[{i}]")]
    problem = secret_problem(prefix, node)
    return [problem] if problem else []
