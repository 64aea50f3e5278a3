"""A trained model becomes one more model config: role `student` (SFT, linked to its teacher and
base) or `rl` (linked to its base), `weights: {source: local, path: <trained folder>}`, and the
training run's id in `training_run`, so the normal sweep evaluates it like any other model."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

from omegaconf import OmegaConf

from cogdistill.config.schema import ModelConfig

ROLES = {"sft": "student", "rl": "rl"}


def model_yaml(name: str, mode: str, base: ModelConfig, teacher: Optional[ModelConfig], path: Path,
               run_id: Optional[str], split: Dict[str, str]) -> dict:
    # SFT students answer in the teacher's format (its think tags); RL keeps the base's.
    tags_from = teacher if mode == "sft" and teacher is not None else base
    how = f"SFT on {teacher.name}'s traces" if mode == "sft" and teacher else "GRPO with a correctness reward"
    return {
        "name": name, "hf_id": f"local/{name}", "role": ROLES[mode], "family": base.family,
        "teacher": teacher.name if mode == "sft" and teacher else None, "base": base.name, "engine": base.engine,
        "weights": {"source": "local", "path": str(path),
                    "provenance": f"cogdistill.train mode={mode} from {base.name} (MLflow run {run_id})"},
        "chat": base.chat, "system_prompt": base.system_prompt,
        "think_start": tags_from.think_start, "think_end": tags_from.think_end,
        "max_tokens": base.max_tokens, "dtype": base.dtype, "trust_remote_code": base.trust_remote_code,
        "engine_kwargs": dict(base.engine_kwargs), "license": base.license,
        "notes": f"{how}, from {base.name}. Training items: " + "; ".join(f"{t}: {s}" for t, s in split.items()),
        "training_run": run_id,
    }


def register(conf_dir: Path, data: dict) -> Path:
    """Writes <conf_dir>/model/<name>.yaml (replacing an earlier registration of that name)."""
    out = conf_dir / "model" / f"{data['name']}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# Written by `python -m cogdistill.train` (MLflow run {data['training_run']}); "
              "re-training under this name replaces it.\n")
    out.write_text(header + OmegaConf.to_yaml(OmegaConf.create(data)))
    return out
