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
