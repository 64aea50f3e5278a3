"""The settings of one training run (`python -m cogdistill.train key=value ...`).

Keys named here configure training; every other `key=value` is an override of the main config
(conf/config.yaml) that the base model's evaluation would take: `study=`, `data.mirror=`,
`sampling.max_tokens=`, `task.<name>.max_items=`, `task.<name>.split_k=`, `hydra.searchpath=`...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from omegaconf import MISSING


@dataclass
class LoraSettings:
    r: int = 16  # 0: full fine-tuning, no adapter
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str = "all-linear"


@dataclass
class TrainConfig:
    mode: str = MISSING  # sft | rl
    base: str = MISSING  # a model config (conf/model/<base>.yaml): the weights trained
    teacher: Optional[str] = None  # sft: the model whose traces are imitated
    tasks: List[str] = field(default_factory=lambda: ["multiplication"])
    name: Optional[str] = None  # the registered model; None: "<mode>-<base>"
    conf_dir: str = "conf"  # the model config is written to <conf_dir>/model/<name>.yaml
    output_dir: Optional[str] = None  # None: <cache_dir>/trained; the folder is <name>-<run id>
    correct_only: bool = True  # sft: imitate only the teacher's correct, uncensored traces
    steps: int = 20  # optimizer steps
    lr: float = 2e-4
    batch_size: int = 4  # per device; rl: completions per step (a multiple of num_generations)
    grad_accum: int = 1
    max_length: int = 1024  # sft: tokens of prompt + completion
    seed: int = 0
    bf16: Optional[bool] = None  # None: on where CUDA supports it, float32 elsewhere
    gradient_checkpointing: bool = False
    threads: Optional[int] = None  # torch CPU threads; None: torch's default. 1 on a shared CPU: spinning
    # threads that wait for each other ran GRPO 10x slower here on 2 busy cores
    lora: LoraSettings = field(default_factory=LoraSettings)
    # rl (GRPO)
    num_generations: int = 4  # completions per prompt (the group)
    max_completion_length: Optional[int] = None  # None: the evaluation budget (sampling.max_tokens or the base's)
    temperature: float = 1.0
    beta: float = 0.0  # KL weight; 0 needs no reference model
    use_vllm: bool = False  # GPU recipe: generate GRPO rollouts with vLLM (colocate)


def _bounds() -> dict:
    from cogdistill.config.schema import MAX_TOKENS_LIMIT
    from cogdistill.config.validate import AT_LEAST_1, NOT_NEGATIVE, Bound

    tokens = Bound(1, MAX_TOKENS_LIMIT, text=f"must be at least 1 token (and at most {MAX_TOKENS_LIMIT:,})")
    return {
        TrainConfig: {
            "steps": Bound(1, text="must be at least 1 optimizer step"),
            "lr": Bound(0, 1, low_open=True, text="must be more than 0 and at most 1 (LoRA runs use about 1e-4 "
                                                  "to 1e-3, full fine-tuning about 1e-5)"),
            "batch_size": AT_LEAST_1, "grad_accum": AT_LEAST_1, "max_length": tokens,
            "seed": Bound(0, 2**32 - 1, text="must be 0 or more and below 2**32 (numpy's seed range)"),
            "threads": AT_LEAST_1,
            "num_generations": Bound(2, text="must be at least 2 (GRPO compares the completions of a group)"),
            "max_completion_length": tokens,
            "temperature": Bound(0, low_open=True, text="must be more than 0 (GRPO samples its completions)"),
            "beta": NOT_NEGATIVE,
        },
        LoraSettings: {
            "r": Bound(0, 4096, text="must be 0 (full fine-tuning) or an adapter rank up to 4096"),
            "alpha": Bound(0, low_open=True, text="must be more than 0 (the adapter's scale is alpha / r)"),
            "dropout": Bound(0, 1, high_open=True, text="must be 0 or more and below 1"),
        },
    }


def check_settings(cfg: TrainConfig) -> None:
    """The training settings' ranges and names, as the job's are checked (cogdistill.config.validate):
    ConfigError naming the setting, its allowed range and its default."""
    import re
    from dataclasses import asdict

    from cogdistill.config.schema import ConfigError
    from cogdistill.config.validate import NAME_PATTERN, check_bounds, non_finite

    bad = non_finite(asdict(cfg), "")
    if bad:
        raise ConfigError(f"training setting {bad} is not a finite number (NaN or infinity); give a number, "
                          "e.g. the default (see cogdistill/train/settings.py).")
    table = _bounds()
    check_bounds(vars(cfg), TrainConfig, "training setting ", table)
    check_bounds(vars(cfg.lora), LoraSettings, "training setting lora.", table)
    # these name files: the registered model's config and weights folder, conf/model/<base>.yaml, conf/task/...
    names = {"name": "the registered model's conf/model/<name>.yaml and weights folder, e.g. name=sft-my-model",
             "base": "conf/model/<base>.yaml", "teacher": "conf/model/<teacher>.yaml"}
    for key, value in [("name", cfg.name), ("base", cfg.base), ("teacher", cfg.teacher),
                       *((f"tasks[{i}]", t) for i, t in enumerate(cfg.tasks))]:
        if value is not None and not re.fullmatch(NAME_PATTERN, str(value)):
            raise ConfigError(f"training setting {key}={value}: use letters, digits and . _ + - only; it names a "
                              f"file: {names.get(key, 'conf/task/<task>.yaml')}.")
