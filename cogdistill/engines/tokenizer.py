"""The model's own tokenizer: renders prompts through its chat template and counts tokens.

Every engine sees the same rendered text and every trace is counted with the same tokenizer,
which is what makes token costs comparable across transformers, vLLM, a server and replay.
Loading a tokenizer is cheap, so a fully cached job never loads the model itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Sequence

from cogdistill.config.schema import ModelConfig
from cogdistill.errors import CogdistillError
from cogdistill.engines.protocols import EffortPlan, protocol_for
from cogdistill.engines.weights import ResolvedWeights


class PromptError(CogdistillError):
    pass


def chat_messages(model: ModelConfig, prompt: str) -> List[Dict[str, str]]:
    """The chat a model is given for one prompt (shared with servers that template it themselves)."""
    msgs = [{"role": "user", "content": prompt}]
    if model.system_prompt:
        msgs.insert(0, {"role": "system", "content": model.system_prompt})
    return msgs


def load_tokenizer(model: ModelConfig, weights: ResolvedWeights):
    """The Hugging Face tokenizer of the model's weights: the one loader every engine and the trace
    counter use, so they all see the same vocabulary and special tokens. It is refused when the
    model's reasoning protocol cannot be read in its output (check_protocol_tokens)."""
    # A folder with tokenizer.json loads through PreTrainedTokenizerFast, which skips importing
    # torch and every model class (about 1 s instead of 8): a fully cached job needs nothing more.
    if not model.trust_remote_code and (Path(weights.path) / "tokenizer.json").is_file():
        from transformers import PreTrainedTokenizerFast

        return check_protocol_tokens(model, weights, PreTrainedTokenizerFast.from_pretrained(weights.path))
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(weights.path, revision=weights.revision,
                                            trust_remote_code=model.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise PromptError(
            f"model '{model.name}': cannot load the tokenizer of {weights.path}"
            f"{'@' + weights.revision if weights.revision else ''} ({type(exc).__name__}: {str(exc)[:300]}). "
            "Without access to the Hugging Face hub, download the model beforehand (`hf download "
            f"{model.hf_id}`) and keep HF_HOME pointing at that cache, or set `weights.source: local` and "
            f"`weights.path` in conf/model/{model.name}.yaml."
        ) from exc
    return check_protocol_tokens(model, weights, tok)


def check_protocol_tokens(model: ModelConfig, weights: ResolvedWeights, tok: Any) -> Any:
    """tok, when the model's protocol markers exist in it (each protocol says what that takes:
    Plain.check_tokenizer). Otherwise every count would be silently zero or wrong, so the job is
    refused before any request (ProtocolError)."""
    protocol_for(model).check_tokenizer(tok, str(weights.path))
    return tok


class ModelTokenizer:
    """Renders a model's prompts the way its reasoning protocol and effort plan prescribe, and counts
    with its vocabulary (or the protocol's own: harmony's o200k_harmony encoding, through openai-harmony)."""

    def __init__(self, model: ModelConfig, weights: ResolvedWeights, plan: Optional[EffortPlan] = None):
        self._model, self.plan = model, plan or EffortPlan()
        self.protocol = protocol_for(model)
        own = self.protocol.tokenizer()
        if own is not None:  # the protocol counts with its own vocabulary (harmony's encoding)
            self.hf = own
            if Path(weights.path).is_dir():  # local weights: their tokenizer must be the protocol's (no download)
                load_tokenizer(model, weights)
            return
        self.hf = load_tokenizer(model, weights)
        if model.chat and not self.hf.chat_template:
            raise PromptError(
                f"model '{model.name}' ({weights.path}) has no chat template; set `chat: false` in "
                f"conf/model/{model.name}.yaml to prompt it as a completion model."
            )

    def render(self, prompt: str) -> str:
        """The exact text the model sees."""
        own = self.protocol.render(prompt, self.plan)
        if own is not None:  # the protocol renders its own prompt (harmony)
            return own
        if not self._model.chat:
            return prompt + (self._model.response_prefix or "")
        return self.hf.apply_chat_template(chat_messages(self._model, prompt), tokenize=False, add_generation_prompt=True,
                                           **self.plan.template_kwargs) + (self._model.response_prefix or "")

    def encode(self, text: str, add_special_tokens: bool = False) -> List[int]:
        return self.hf.encode(text, add_special_tokens=add_special_tokens)

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens)


def eos_ids(value: Any) -> List[int]:
    """An eos_token_id setting (None, one id, or a list of ids) as a list."""
    return list(value) if isinstance(value, (list, tuple)) else [] if value is None else [value]


def stop_token_ids(tokenizer: Any, weights: ResolvedWeights, also: Iterable[Optional[int]] = ()) -> FrozenSet[int]:
    """The ids a generation may stop on: the tokenizer's EOS, the generation config's (one id or a
    list, e.g. Llama 3's <|eot_id|> beside <|end_of_text|>), and any the engine reports itself."""
    stops = set(eos_ids(tokenizer.eos_token_id)) | {i for i in also if i is not None}
    try:
        from transformers import GenerationConfig

        stops |= set(eos_ids(GenerationConfig.from_pretrained(weights.path, revision=weights.revision).eos_token_id))
    except (OSError, ValueError):  # no generation_config.json: the tokenizer's EOS is all there is
        pass
    return frozenset(stops)


def strip_stop_tokens(ids: Sequence[int], stops: FrozenSet[int]) -> List[int]:
    """The generated ids without the stop token(s) an engine kept at the end: we count without them."""
    ids = list(ids)
    while ids and ids[-1] in stops:
        ids.pop()
    return ids


def cut_at_stop_token(ids: Sequence[int], stops: FrozenSet[int]) -> Optional[List[int]]:
    """The ids before the first stop token (what follows is batch padding), or None without one."""
    for pos, tok in enumerate(ids):
        if tok in stops:
            return list(ids[:pos])
    return None
