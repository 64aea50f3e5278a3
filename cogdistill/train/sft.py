"""Supervised fine-tuning of the base on the teacher's traces (TRL SFTTrainer, LoRA optional)."""

from __future__ import annotations

from pathlib import Path
from typing import List

import polars as pl

from cogdistill.train.settings import TrainConfig
from cogdistill.train.model import common_args, load_base, peft_config


def train_sft(cfg: TrainConfig, weights, frame: pl.DataFrame, work: Path, callbacks: List):
    """Loss on the completion only (prompt-completion data); returns (trainer, tokenizer)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = load_base(weights)
    data = Dataset.from_dict({"prompt": frame["prompt"].to_list(), "completion": frame["completion"].to_list()})
    args = SFTConfig(**common_args(cfg, work), max_length=cfg.max_length, completion_only_loss=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                         peft_config=peft_config(cfg), callbacks=callbacks)
    trainer.train()
    return trainer, tokenizer
