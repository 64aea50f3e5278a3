"""The model's own tokenizer: renders prompts through its chat template and counts tokens.

Every engine sees the same rendered text and every trace is counted with the same tokenizer,
which is what makes token costs comparable across transformers, vLLM, a server and replay.
Loading a tokenizer is cheap, so a fully cached job never loads the model itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

from cogdistill.config.schema import ModelConfig
from cogdistill.errors import CogdistillError
from cogdistill.engines.weights import ResolvedWeights


class PromptError(CogdistillError):
    pass


def chat_messages(model: ModelConfig, prompt: str) -> List[Dict[str, str]]:
    """The chat a model is given for one prompt (shared with servers that template it themselves)."""
    msgs = [{"role": "user", "content": prompt}]
    if model.system_prompt:
        msgs.insert(0, {"role": "system", "content": model.system_prompt})
    return msgs


def _load(model: ModelConfig, weights: ResolvedWeights):
    # A folder with tokenizer.json loads through PreTrainedTokenizerFast, which skips importing
    # torch and every model class (about 1 s instead of 8): a fully cached job needs nothing more.
    if not model.trust_remote_code and (Path(weights.path) / "tokenizer.json").is_file():
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast.from_pretrained(weights.path)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(weights.path, revision=weights.revision,
                                             trust_remote_code=model.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise PromptError(
            f"model '{model.name}': cannot load the tokenizer of {weights.path}"
            f"{'@' + weights.revision if weights.revision else ''} ({type(exc).__name__}: {str(exc)[:300]}). "
            "Without access to the Hugging Face hub, download the model beforehand (`hf download "
            f"{model.hf_id}`) and keep HF_HOME pointing at that cache, or set `weights.source: local` and "
            f"`weights.path` in conf/model/{model.name}.yaml."
        ) from exc


class ModelTokenizer:
    def __init__(self, model: ModelConfig, weights: ResolvedWeights):
        self._model = model
        self.hf = _load(model, weights)
        if model.chat and not self.hf.chat_template:
            raise PromptError(
                f"model '{model.name}' ({weights.path}) has no chat template; set `chat: false` in "
                f"conf/model/{model.name}.yaml to prompt it as a completion model."
            )

    def render(self, prompt: str) -> str:
        """The exact text the model sees."""
        if not self._model.chat:
            return prompt
        return self.hf.apply_chat_template(chat_messages(self._model, prompt), tokenize=False, add_generation_prompt=True)

    def encode(self, text: str, add_special_tokens: bool = False) -> List[int]:
        return self.hf.encode(text, add_special_tokens=add_special_tokens)

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens)
