"""What SFT and RL share: loading the base, the LoRA adapter, TRL's common arguments, and saving
the result as a plain Hugging Face folder (adapters merged) that every engine loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from cogdistill.train.settings import TrainConfig
from cogdistill.engines.weights import ResolvedWeights


def load_base(weights: ResolvedWeights):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(weights.path, revision=weights.revision)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(weights.path, revision=weights.revision, dtype="auto")
    return model, tokenizer


def peft_config(cfg: TrainConfig):
    if cfg.lora.r <= 0:
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM")


def common_args(cfg: TrainConfig, output_dir: Path) -> Dict[str, Any]:
    """TRL/transformers arguments both trainers take. Logging goes to our MLflow run through the
    callback (report_to none: the trainer's own MLflow integration would open a second run)."""
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    bf16 = cfg.bf16 if cfg.bf16 is not None else bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return dict(output_dir=str(output_dir), max_steps=cfg.steps, learning_rate=cfg.lr,
                per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
                seed=cfg.seed, bf16=bf16, gradient_checkpointing=cfg.gradient_checkpointing,
                logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True)


def save_trained(trainer, tokenizer, out: Path, adapter_dir: Optional[Path]) -> None:
    """The adapter (when LoRA) to adapter_dir, then the merged full model + tokenizer to out."""
    model = trainer.model
    if hasattr(model, "merge_and_unload"):  # a PeftModel
        if adapter_dir is not None:
            model.save_pretrained(adapter_dir)
        model = model.merge_and_unload()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
