"""Secrets never reach a file the tool writes: masking known keys, refusing secret-looking settings.

Three jobs, one owner:
- `mask(text, secrets)` removes a known secret (an API key read from the environment) from text,
  in whole or in part: a server that echoes the key and an error cut to a few hundred characters
  must not leave a prefix or a fragment behind. Mask first, truncate after.
- `secret_problem(key, value)` says why a config value looks like a credential, so that the
  config is refused before Hydra saves it under .hydra/ and MLflow logs it as a param.
- `mask_uri(uri)` is a store or server address as it may be shown or written (messages, the sweep
  folder, report sources): userinfo and credential-named parameters masked; `uri_secrets(uri)` the
  credentials it holds, to mask in any other text (a driver's error quoting the host).
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from typing import Iterable, List, Optional, Sequence, Set, Tuple

MASK = "***"
# A fragment this long that also occurs in the key is masked; shorter runs are too likely to be
# ordinary text ("Bearer", "sk-") for masking them to say anything.
MIN_FRAGMENT = 6

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
    if isinstance(value, str) and _SCHEME.match(value.strip()) and uri_secrets(value):
        return f"the value of `{key}` is an address holding a password or token"
    return None


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


# ------------------------------------------------------------------ credential names
# A name is split into its words (snake, kebab, dotted, camelCase), then judged by its last word,
# so `hf_token`, `x-token` and `xToken` are credentials while `max_tokens` (a count) and
# `token_ids` are not. Words that name a credential wherever they stand:
_ANYWHERE = ("secret", "password", "passwd")  # also inside a word: client_secret, sslpassword
_CRED_WORDS = {"pwd", "passphrase", "authorization", "cookie", "cookies", "credential", "credentials", "bearer"}
# `<word>_token` is a vocabulary token, not a credential, after these words (tokenizers' special
# tokens) or a count of tokens (`max_token`, a typo of max_tokens, is an unknown key, not a secret):
_VOCAB_TOKEN = {"eos", "bos", "pad", "unk", "sep", "cls", "mask", "stop", "start", "end", "begin", "think",
                "thinking", "reasoning", "answer", "special", "image", "audio", "video", "eot", "eom", "boi",
                "eoi", "tool", "placeholder", "separator", "newline", "delimiter", "max", "min", "num", "total",
                "prompt", "completion", "input", "output", "generated", "new", "first", "last", "next", "page"}
# `<word>_tokens` (plural) counts or lists vocabulary tokens unless the word says whose credential:
_CRED_TOKENS = {"api", "access", "auth", "bearer", "refresh", "session", "id", "hf", "github", "oauth"}
# `<word>_key` is a lookup key, not a credential, after these words:
_LOOKUP_KEY = {"sort", "cache", "join", "group", "grouping", "primary", "foreign", "partition", "hash", "lookup",
               "index", "dict", "item", "job", "sweep", "task", "level", "generation", "seed", "column", "row",
               "map", "order", "dedup", "split", "shard", "routing", "cell", "model", "metric", "config", "record",
               "unique", "composite", "search", "match", "label", "dataset", "prompt", "run"}
# compounds written as one word: apikey, accesstoken, hftoken, basicauth, oauth
_COMPOUND = re.compile(r"(api|secret|access|private|auth|client|master|signing|sign|encryption|license|subscription|"
                       r"session|account|service|ssl|tls|app|consumer|hmac|admin|deploy|bearer|refresh|id|hf|x|"
                       r"basic|http|proxy|o)(token|key|keys|auth)$")


def _words(key: str) -> List[str]:
    leaf = re.sub(r"(\[[^\]]*\])+$", "", str(key)).rsplit(".", 1)[-1]  # engine.extra_body.hf_token[0]
    leaf = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", leaf)  # xToken, apiKey
    leaf = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", leaf)  # HFToken
    return re.findall(r"[a-z0-9]+", leaf.lower())


def is_credential_name(key: str) -> bool:
    """Whether the setting (or header, or query parameter) named `key` holds a credential; the last
    dotted part is judged. `*_token`, `*-token`, `*key`, `*secret*`, `*password*`, `authorization`,
    `cookie` are; counts and vocabulary (`max_tokens`, `eos_token`, `tokenizer`) and lookup keys
    (`sort_key`, `key_column`) are not, nor `*_env` (names a variable: engine.api_key_env)."""
    words = _words(key)
    if not words or (words[-1] == "env" and len(words) > 1):
        return False
    if any(part in "".join(words) for part in _ANYWHERE) or _CRED_WORDS.intersection(words):  # PassWord too
        return True
    last, before = words[-1], words[-2] if len(words) > 1 else ""
    if last in ("sig", "signature") or words == ["pass"]:  # ?pass=, signed URLs' ?sig=, X-Amz-Signature
        return True
    if last == "token":
        return before not in _VOCAB_TOKEN
    if last == "tokens":
        return before in _CRED_TOKENS
    if last in ("key", "keys"):  # `keys` alone is rather a list of lookup keys
        return before not in _LOOKUP_KEY and (last == "key" or before != "")
    if last == "auth":
        return True
    return _COMPOUND.search(last) is not None


# ------------------------------------------------------------------ addresses
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://)(.*)$", re.S)
# name=value pairs after ?, &, ;, # (query, matrix parameters, fragment) or, outside a URI, after
# whitespace (libpq's "host=h password=p")
_PARAM_IN_URI = re.compile(r"(?<=[?&;#])([^=&;#?\s]+)=([^&;#]*)")
_PARAM_IN_TEXT = re.compile(r"(?:(?<=[\s?&;#])|^)([^=&;#?\s]+)=(\S*?)(?=[\s&;#]|$)")


def _userinfo(rest: str) -> Tuple[str, str]:
    """(userinfo, the rest after its '@') of what follows `scheme://`; ('', rest) when there is none.
    A password may hold '@', '/' or '?' unencoded (user:SECRET@PASSX@host), where a parser splitting
    at the first '@' (SQLAlchemy's) shows the tail as the host and one splitting at the first '/'
    (urllib's) misses the password: the userinfo runs to the last '@' that ends a `user:...` or a
    plain name. An '@' in a query after a password masks too much of the address, never too little."""
    if rest.startswith("/"):  # sqlite:////path, file:///path: no authority
        return "", rest
    for at in reversed([m.start() for m in re.finditer("@", rest)]):
        candidate = rest[:at]
        if re.match(r"[^/?#:]*:", candidate) or not re.search(r"[/?#]", candidate):
            return candidate, rest[at + 1:]
    return "", rest  # https://host/a@b: an '@' in the path


def _named_credential(name: str) -> bool:
    from urllib.parse import unquote_plus

    return is_credential_name(unquote_plus(name))  # ?x%2Dtoken= is ?x-token=


def _unquoted(values: Iterable[str]) -> List[str]:
    from urllib.parse import unquote, unquote_plus

    out: List[str] = []
    for value in values:
        for form in (value, unquote(value), unquote_plus(value)):
            if form and form not in out:
                out.append(form)
    return out


def uri_secrets(uri: str) -> List[str]:
    """The credentials an address holds, in every form it may appear in (as written, decoded, and,
    for a password holding '@', each piece, which other parsers show as user or host). Outside a
    URI, the values of credential-named `name=value` pairs (libpq's "host=h password=p")."""
    if not isinstance(uri, str) or not uri:
        return []
    whole: List[str] = []
    pieces: List[str] = []
    m = _SCHEME.match(uri.strip())
    rest = m.group(2) if m else uri
    if m:
        info, rest = _userinfo(rest)
        user, _, password = info.partition(":")
        if password:
            whole.append(password)
            pieces += password.split("@")
        if looks_like_a_key(user):  # https://TOKEN@host
            whole.append(user)
    pattern = _PARAM_IN_URI if m else _PARAM_IN_TEXT
    whole += [value for name, value in pattern.findall(rest) if value and _named_credential(name)]
    found = _unquoted(whole)
    return found + [p for p in _unquoted(pieces) if len(p) >= 4 and p not in found]


def mask_uri(uri: Optional[str]) -> Optional[str]:
    """The address with its password (and a key-like user name) and every credential-named parameter
    replaced by ***: `postgresql://user:***@host/db?sslmode=require&password=***`."""
    if not uri:
        return uri
    m = _SCHEME.match(uri)

    def param(match: "re.Match") -> str:
        return f"{match.group(1)}={MASK}" if match.group(2) and _named_credential(match.group(1)) else match.group(0)

    if not m:
        return mask(_PARAM_IN_TEXT.sub(param, uri), uri_secrets(uri))
    scheme, rest = m.groups()
    info, after = _userinfo(rest)
    if info:
        user, colon, _ = info.partition(":")
        shown_user = MASK if looks_like_a_key(user) else user
        info = f"{shown_user}:{MASK}" if colon else shown_user
        rest = f"{info}@{after}"
    # the guard: any piece the parsing above left (a form it did not foresee) is masked as text
    return mask(scheme + _PARAM_IN_URI.sub(param, rest), uri_secrets(uri))
