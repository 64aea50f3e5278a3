"""What the Hugging Face hub and its local cache say about a model: the commit a revision names.

A job pins its weights by resolving `revision` (main, a tag) to a commit sha before it generates
(cogdistill.engines.weights.from_hub), and the sweep's pre-flight asks once whether the hub answers
(cogdistill.sweep.feasibility). Both ask with one request and a short deadline, never huggingface_hub's
five retries with back-off: on a machine without the hub, the answer "no" must come in seconds.
"""

from __future__ import annotations

import json
import os
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

HUB_PROBE_S = 3.0  # one request, never retries
SHA = re.compile(r"[0-9a-f]{40}")


def hub_cache() -> Path:
    """huggingface_hub's cache folder, computed as it does (HF_HUB_CACHE, else HF_HOME/hub, else
    $XDG_CACHE_HOME/huggingface/hub), but from the environment of now: huggingface_hub reads it once, at import."""
    env = os.environ
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    folder = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return Path(os.path.expanduser(folder))


def _repo_dir(hf_id: str) -> Path:
    return hub_cache() / ("models--" + hf_id.replace("/", "--"))


def cached_sha(hf_id: str, revision: Optional[str]) -> Optional[str]:
    """The commit sha the HF cache holds for hf_id@revision, or None when it holds no snapshot."""
    repo = _repo_dir(hf_id)
    rev = revision or "main"
    if SHA.fullmatch(rev):
        return rev if (repo / "snapshots" / rev).is_dir() else None
    ref = repo / "refs" / rev
    try:
        sha = ref.read_text().strip()
    except OSError:
        return None
    return sha if SHA.fullmatch(sha) and (repo / "snapshots" / sha).is_dir() else None


def cached_config(hf_id: str, revision: Optional[str]) -> Optional[dict]:
    sha = cached_sha(hf_id, revision)
    if sha is None:
        return None
    try:
        return json.loads((_repo_dir(hf_id) / "snapshots" / sha / "config.json").read_text())
    except (OSError, ValueError):
        return None


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def call_with_deadline(fn, deadline_s: float):
    """fn() or None when it takes longer than deadline_s (a DNS lookup ignores socket timeouts)."""
    box: Dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except Exception as exc:  # noqa: BLE001 - the caller only needs "no answer"
            box["error"] = exc

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(deadline_s)
    return box.get("value")


class _SameHostAuth(urllib.request.HTTPRedirectHandler):
    """Follows a redirect (a renamed repository) but sends the token only to the host it was meant for."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


def hub_revision_info(hf_id: str, revision: Optional[str],
                      deadline_s: float = HUB_PROBE_S) -> Tuple[bool, Optional[str]]:
    """(the hub answered, the commit sha of hf_id@revision) from the model-info API, one request,
    no retries. The token (HF_TOKEN) is sent, never logged."""
    if hub_offline():
        return False, None
    rev = urllib.parse.quote(revision or "main", safe="")
    url = f"{hub_endpoint()}/api/models/{hf_id}/revision/{rev}"
    headers = {"User-Agent": "cogdistill"}
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"

    def ask() -> Tuple[bool, Optional[str]]:
        try:
            opener = urllib.request.build_opener(_SameHostAuth())
            with opener.open(urllib.request.Request(url, headers=headers), timeout=deadline_s) as resp:
                sha = json.loads(resp.read(1 << 20)).get("sha")
                return True, sha if isinstance(sha, str) and SHA.fullmatch(sha) else None
        except urllib.error.HTTPError:
            return True, None  # it answered: gated, missing or unauthorised is not "unreachable"
        except (urllib.error.URLError, OSError, ValueError):
            return False, None

    return call_with_deadline(ask, deadline_s) or (False, None)


def resolve_revision(hf_id: str, revision: Optional[str], deadline_s: float = HUB_PROBE_S) -> Tuple[Optional[str], str]:
    """(commit sha, where it came from: "pinned" | "cache" | "hub" | "") for hf_id@revision."""
    rev = revision or "main"
    if SHA.fullmatch(rev):
        return rev, "pinned"
    # online, transformers loads what the hub's ref names now, so the hub wins over a stale cached ref
    _, sha = hub_revision_info(hf_id, rev, deadline_s)
    if sha:
        return sha, "hub"
    sha = cached_sha(hf_id, rev)
    return (sha, "cache") if sha else (None, "")


