"""Model configs for the random-weight tiny model (conftest's tiny_model_dir), and a stand-in vllm."""

from __future__ import annotations

import sys
from typing import List

from cogdistill.config.schema import ModelConfig, Role, WeightsConfig
from cogdistill.engines.base import Request

PROMPTS = ["What is 2 x 3?", "What is 7 x 8? Think first.", "9 x 9", "What is 4 x 5 then 6 x 7?",
           "6 x 6", "What is 3 x 9?"]


def model_cfg(path, **kw) -> ModelConfig:
    """The tiny random model saved at `path`, as a local-weights control model without think tags."""
    return ModelConfig(name="tiny-random", hf_id="local/tiny", role=Role.control, family="test",
                       weights=WeightsConfig(source="local", path=str(path)), think_start=None, think_end=None, **kw)


def requests_for(tok, prompts=PROMPTS) -> List[Request]:
    """One request per prompt, rendered by `tok` (a ModelTokenizer)."""
    return [Request(index=i, prompt=p, rendered=tok.render(p)) for i, p in enumerate(prompts)]


def fake_vllm(monkeypatch, seen=None, max_model_len=None) -> None:
    """A stand-in `vllm` module: VllmEngine runs its own code, vLLM itself is never started."""
    import types

    class LLM:
        def __init__(self, **kwargs):
            if seen is not None:
                seen.append(("LLM", kwargs["trust_remote_code"]))
            self.llm_engine = types.SimpleNamespace(model_config=types.SimpleNamespace(
                max_model_len=max_model_len, hf_config=types.SimpleNamespace(eos_token_id=None)))

    vllm = types.ModuleType("vllm")
    vllm.LLM = LLM
    platforms = types.ModuleType("vllm.platforms")
    platforms.current_platform = types.SimpleNamespace(is_cpu=lambda: True)
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.platforms", platforms)
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # VllmEngine sets these; leave no trace
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "ERROR")
