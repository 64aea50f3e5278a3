"""gpt-oss's BPE vocabulary (o200k_base.tiktoken) for openai_harmony, without openaipublic.blob.core.windows.net.

openai_harmony reads `$TIKTOKEN_ENCODINGS_BASE/o200k_base.tiktoken` (and checks its sha256) when that is set;
otherwise upstream openai-harmony downloads it from a host that is often unreachable. js-tiktoken's npm tarball
ships the same ranks: the file is rebuilt from that pinned tarball and must hash to the value tiktoken pins.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
import urllib.request
from pathlib import Path

from cogdistill.errors import CogdistillError

NPM_PACKAGE = "js-tiktoken"
NPM_VERSION = "1.0.21"
TARBALL_URL = f"https://registry.npmjs.org/{NPM_PACKAGE}/-/{NPM_PACKAGE}-{NPM_VERSION}.tgz"
# `npm view js-tiktoken@1.0.21 dist.integrity`
TARBALL_INTEGRITY = "sha512-biOj/6M5qdgx5TKjDnFT1ymSpM5tbd3ylwDtrQvFQSu0Z7bBYko2dF+W/aUkXUPuk6IVpRxk/3Q2sHOzGlS36g=="
TARBALL_MEMBER = "package/dist/ranks/o200k_base.js"
VOCAB_FILE = "o200k_base.tiktoken"
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"  # as tiktoken and harmony pin it
ENV_VAR = "TIKTOKEN_ENCODINGS_BASE"
HINT = "run `make harmony-vocab` (or `python -m cogdistill.engines.harmony_vocab`)"


class HarmonyVocabError(CogdistillError):
    pass


def vocab_dir(cache_root: Path | None = None) -> Path:
    root = cache_root or Path(os.environ.get("COGDISTILL_CACHE_DIR") or "~/.cache/cogdistill").expanduser()
    return Path(root) / "harmony"


def _verified(path: Path) -> bool:
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == O200K_SHA256


def _download(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            return response.read()
    except OSError as exc:
        raise HarmonyVocabError(f"could not download {url}: {exc}") from exc


def _vocab_from_tarball(tarball: bytes) -> bytes:
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    if integrity != TARBALL_INTEGRITY:
        raise HarmonyVocabError(f"{TARBALL_URL} has the wrong hash: expected {TARBALL_INTEGRITY}, got {integrity}")
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        js = tar.extractfile(TARBALL_MEMBER).read().decode()
    # an ES module, `export default {...};`, whose bpe_ranks holds lines "<name> <first rank> <b64 token>..."
    ranks = json.loads(js[js.index("{"):js.rindex("}") + 1])["bpe_ranks"]
    pairs = []
    for line in filter(None, ranks.split("\n")):
        _, first, *tokens = line.split(" ")
        pairs += [(int(first) + i, token) for i, token in enumerate(tokens)]
    return "".join(f"{token} {rank}\n" for rank, token in sorted(pairs)).encode()


def ensure_vocab(download: bool = True, cache_root: Path | None = None) -> Path:
    folder = vocab_dir(cache_root)
    target = folder / VOCAB_FILE
    if _verified(target):
        return folder
    if not download:
        raise HarmonyVocabError(f"no verified {target}: {HINT}")
    vocab = _vocab_from_tarball(_download(TARBALL_URL))
    if (got := hashlib.sha256(vocab).hexdigest()) != O200K_SHA256:
        raise HarmonyVocabError(f"the {VOCAB_FILE} rebuilt from {TARBALL_URL} has the wrong sha256: "
                                f"expected {O200K_SHA256}, got {got}")
    folder.mkdir(parents=True, exist_ok=True)
    # temp file + rename: a concurrent reader sees the whole verified file or none
    tmp = folder / f".{VOCAB_FILE}.{os.getpid()}"
    try:
        tmp.write_bytes(vocab)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return folder


def configure_env(cache_root: Path | None = None) -> bool:
    """Point openai_harmony at the verified vocab, if built; True when the variable is set."""
    folder = vocab_dir(cache_root)
    if not _verified(folder / VOCAB_FILE):
        return ENV_VAR in os.environ
    # os.environ, not an argument: vLLM's own harmony calls and its worker processes read it too;
    # a value the user set wins (harmony checks the hash either way)
    os.environ.setdefault(ENV_VAR, str(folder))
    return True


def load_encoding():
    from openai_harmony import HarmonyEncodingName, load_harmony_encoding
    configure_env()
    try:
        return load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    except Exception as exc:
        # oss-harmony bundles the vocab, upstream openai-harmony downloads it: only a failure is an error
        if not _verified(vocab_dir() / VOCAB_FILE):
            why = " ".join(str(exc).split())
            raise HarmonyVocabError(f"openai_harmony could not load gpt-oss's vocabulary ({why}): {HINT}") from exc
        raise


if __name__ == "__main__":
    try:
        print(ensure_vocab())
    except CogdistillError as exc:
        raise SystemExit(f"harmony-vocab: {exc}") from None
