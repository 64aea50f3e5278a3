"""Get a task's source file: from the data mirror or the pinned origin URL, sha256-checked.

A mirror copy is checked against the same sha256 as a download, so a mirror can never feed a
different file into a study. Downloads land atomically in the cache: a killed download leaves
no partial file that a later run could trust, and a file that fails its check is deleted.
`mirror_path` comes from a config, so it must stay inside the mirror (no '..', no leading '/').
Likewise a `file://` url may read only the project folder, a data mirror, the cache and the temp
folder unless the user opts in (COGDISTILL_ALLOW_FILE_SOURCES=1): a task config from elsewhere must
not make a run read, cache and log any file of this machine.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import List
from urllib.parse import urlsplit

from cogdistill.config.schema import REPO_ROOT, SourceConfig, is_sha256, stays_inside
from cogdistill.errors import CogdistillError


class DataSourceError(CogdistillError):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check(path: Path, expected: str, origin: str, shown: str | None = None) -> Path:
    actual = sha256_of(path)
    if actual != expected.lower():
        raise DataSourceError(
            f"{shown or path}: sha256 {actual} does not match the pinned {expected} ({origin}). "
            "The file changed or is corrupt: restore the original, or update `sha256:` in the "
            "task config only if you deliberately switched to a new version of the data."
        )
    return path


ALLOW_FILE_SOURCES = "COGDISTILL_ALLOW_FILE_SOURCES"


def _file_url_roots(cache: Path) -> List[Path]:
    """Where a file:// source may point without the opt-in: the project, the data mirrors and the
    cache (written by this tool)."""
    roots = [REPO_ROOT, REPO_ROOT.parent / "shared" / "reference-data", cache]
    if os.environ.get("COGDISTILL_DATA_MIRROR"):
        roots.append(Path(os.environ["COGDISTILL_DATA_MIRROR"]))
    return [root.expanduser().resolve() for root in roots]


def _check_file_url(source: SourceConfig, cache: Path, task: str) -> None:
    """Refuse a file:// url outside _file_url_roots unless COGDISTILL_ALLOW_FILE_SOURCES=1."""
    parts = urlsplit(source.url)
    if parts.scheme != "file" or os.environ.get(ALLOW_FILE_SOURCES, "").lower() in ("1", "true", "yes"):
        return
    # urllib also reads file://<this host's name>/path locally: only the path counts, resolved
    # through '..' and symbolic links
    path = Path(urllib.request.url2pathname(parts.path)).resolve()
    if not any(path.is_relative_to(root) for root in _file_url_roots(cache)):
        raise DataSourceError(
            f"task '{task}': `url: {source.url}` reads a local file outside the project folder and the data "
            "mirror; a task config may not read any file of this machine unasked. If you trust this config, "
            f"set {ALLOW_FILE_SOURCES}=1, or put the file into a data mirror folder (data.mirror=<dir>, "
            f"with the file at {source.mirror_path} inside it)."
        )


def fetch(source: SourceConfig, *, mirror: str | None, cache: Path, timeout_s: float, task: str) -> Path:
    """Return a local, verified path to `source`."""
    if not stays_inside(source.mirror_path):
        raise DataSourceError(
            f"task '{task}': `mirror_path: {source.mirror_path}` must be a relative path inside the data "
            "mirror (no leading '/', no '..'); write it as the file's path below the mirror folder, "
            "e.g. soh-multiplication/consolidated_mult_data.csv."
        )
    if not is_sha256(source.sha256):
        raise DataSourceError(
            f"task '{task}': `sha256: {source.sha256}` is not a sha256 (64 hex digits); "
            f"set it to the output of `sha256sum {Path(source.mirror_path).name}`."
        )
    if mirror:
        candidate = Path(mirror).expanduser() / source.mirror_path
        if not candidate.is_file():
            raise DataSourceError(
                f"task '{task}': the data mirror {mirror} has no {source.mirror_path}. "
                "Point COGDISTILL_DATA_MIRROR (or data.mirror=) at a folder that holds it, or unset "
                f"it to download {source.url}."
            )
        return _check(candidate, source.sha256, f"mirror copy for task '{task}'")

    _check_file_url(source, cache, task)
    target = cache / "data" / source.sha256[:16] / Path(source.mirror_path).name
    if target.is_file():
        try:
            return _check(target, source.sha256, f"cached download of {source.url}")
        except DataSourceError:
            target.unlink()  # a corrupt cache entry is never trusted nor kept: download it again
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(source.url, timeout=timeout_s) as resp:
            while block := resp.read(1 << 20):
                out.write(block)
        _check(Path(tmp), source.sha256, "the file was deleted, not cached", shown=source.url)
        os.replace(tmp, target)
    except ValueError as exc:  # urllib's answer to a malformed URL or an unknown scheme
        raise DataSourceError(
            f"task '{task}': `url: {source.url}` is not a URL urllib can fetch ({exc}); use https://... pinned "
            "to a version, or file:///absolute/path, or set a data mirror (data.mirror=<dir>)."
        ) from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise DataSourceError(
            f"task '{task}': could not download {source.url} ({exc}). Without network access, set "
            f"COGDISTILL_DATA_MIRROR=<dir> (or data.mirror=<dir>) to a folder holding "
            f"{source.mirror_path}; ../shared/reference-data is such a mirror."
        ) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
