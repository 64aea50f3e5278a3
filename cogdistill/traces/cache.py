"""Generation cache: one small JSON file per (prompt, sample), written atomically.

The key holds everything that changes a generation: the weights' fingerprint (sha256 or
hub id@revision), the engine and its version, the exact prompt text after the chat template,
and the sampling parameters including seed and sample index. Sampled generations never
collapse into one entry (lm-evaluation-harness issue #3046).

Each entry is written to a temporary file and renamed into place, so a kill at any moment
leaves either the whole entry or none (at most a stray `.tmp-*.part` file, which is never
read); an unreadable entry counts as a miss and is rewritten. Several processes may share one
cache: they only ever add whole files. A cache that cannot be written (disk full, read-only)
stops the job with a CacheError that says where and what to do; entries already written stay.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Dict, Optional

from cogdistill.engines.base import Generation
from cogdistill.errors import CogdistillError

FORMAT = 1  # bump when the entry layout changes; old entries then miss instead of misleading


def generation_key(*, weights: str, engine: str, engine_version: str, prompt: str, temperature: float,
                   top_p: float, seed: int, max_tokens: int, sample_idx: int, effort: Optional[str] = None) -> str:
    # Greedy decoding ignores seed and top_p: leave them out so a greedy re-run with another seed hits.
    greedy = temperature == 0.0
    fields = {
        "format": FORMAT, "weights": weights, "engine": engine, "engine_version": engine_version,
        "prompt": prompt, "temperature": temperature, "top_p": None if greedy else top_p,
        "seed": None if greedy else seed, "max_tokens": max_tokens, "sample_idx": sample_idx,
    }
    if effort is not None:  # an effort level beside the prompt (reasoning_effort); absent: the keys of before
        fields["effort"] = effort
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


class CacheError(CogdistillError):
    pass


class GenerationCache:
    def __init__(self, root: Path):
        self.root = root / "generations"
        self.hits = 0
        self.misses = 0
        self.corrupt = 0

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def has(self, key: str) -> bool:
        """Whether an entry exists (read by nobody: a damaged one shows when it is read)."""
        return self._path(key).is_file()

    def get(self, key: str) -> Optional[Generation]:
        path = self._path(key)
        try:
            data = json.loads(path.read_text())
            gen = Generation(**{**data, "token_ids": tuple(data["token_ids"]) if data["token_ids"] is not None else None})
        except FileNotFoundError:
            self.misses += 1
            return None
        except (ValueError, TypeError, KeyError, OSError):
            self.corrupt += 1  # rewritten by the next put()
            self.misses += 1
            return None
        self.hits += 1
        return gen

    def drop(self, key: str) -> None:
        """Forget an entry (a generation that could not be scored or counted is never kept as good)."""
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise CacheError(f"cannot remove the generation cache entry {self._path(key)} ({exc.strerror or exc}); "
                             "delete it by hand, or set COGDISTILL_CACHE_DIR to a writable folder.") from None

    def put(self, key: str, gen: Generation) -> None:
        path = self._path(key)
        data: Dict = asdict(gen)
        data["token_ids"] = list(gen.token_ids) if gen.token_ids is not None else None
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # not *.json: a temporary file left by a kill is never taken for an entry
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException as exc:
            if tmp and os.path.exists(tmp):
                os.unlink(tmp)
            if isinstance(exc, OSError):  # disk full, quota, read-only, permissions: the user's to fix
                raise CacheError(
                    f"cannot write the generation cache at {self.root} ({exc.strerror or exc}). Free space "
                    "there, or set COGDISTILL_CACHE_DIR to a writable folder with room (the cache then starts "
                    "empty). Generations cached so far are kept: re-running generates only the rest."
                ) from None
            raise
