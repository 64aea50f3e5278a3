"""GRPO from the base with a verifiable reward: 1 when the task's own scorer marks the completion
correct, else 0 (TRL GRPOTrainer, LoRA optional)."""

from __future__ import annotations

from pathlib import Path
from typing import List

import polars as pl

from cogdistill.registry import SCORERS
from cogdistill.train.settings import TrainConfig
from cogdistill.train.model import common_args, load_base, peft_config


def correctness_reward(completions, target, scorer, **_) -> List[float]:
    """TRL passes the dataset's extra columns (`target`, `scorer`) per completion."""
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [1.0 if SCORERS.load(s)(text, t).correct else 0.0 for text, t, s in zip(texts, target, scorer)]


def train_rl(cfg: TrainConfig, weights, frame: pl.DataFrame, work: Path, callbacks: List,
             max_completion_length: int):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    model, tokenizer = load_base(weights)
    data = Dataset.from_dict({c: frame[c].to_list() for c in ("prompt", "target", "scorer")})
    args = GRPOConfig(**common_args(cfg, work), num_generations=cfg.num_generations,
                      max_completion_length=max_completion_length, temperature=cfg.temperature, beta=cfg.beta,
                      use_vllm=cfg.use_vllm, shuffle_dataset=True)
    trainer = GRPOTrainer(model=model, reward_funcs=correctness_reward, args=args, train_dataset=data,
                          processing_class=tokenizer, peft_config=peft_config(cfg), callbacks=callbacks)
    trainer.train()
    return trainer, tokenizer
