"""transformers generate(), batched with left padding, greedy or sampled."""

from __future__ import annotations

import time
from typing import List, Sequence

from cogdistill.config.schema import ModelConfig, SamplingConfig, TransformersEngineConfig
from cogdistill.engines.base import Generation, OnResult, Request, check_context
from cogdistill.engines.versions import version_of
from cogdistill.engines.tokenizer import eos_ids, cut_at_stop_token, load_tokenizer, stop_token_ids
from cogdistill.engines.weights import ResolvedWeights


class TransformersEngine:
    name = "transformers"

    def __init__(self, model: ModelConfig, weights: ResolvedWeights, settings: TransformersEngineConfig):
        import torch
        import transformers
        from transformers import AutoModelForCausalLM

        transformers.utils.logging.disable_progress_bar()
        self.version = version_of(self.name)
        self._torch = torch
        self._settings = settings
        if settings.threads:
            torch.set_num_threads(settings.threads)
        self._tok = load_tokenizer(model, weights)
        self._tok.padding_side = "left"  # decoder-only batching: pad on the left
        if self._tok.pad_token_id is None:
            self._tok.pad_token = self._tok.eos_token
        self._model = AutoModelForCausalLM.from_pretrained(
            weights.path, revision=weights.revision, dtype=getattr(torch, settings.dtype or model.dtype),
            trust_remote_code=model.trust_remote_code,
        ).to(settings.device).eval()
        self._stop_ids = stop_token_ids(self._tok, weights, eos_ids(self._model.generation_config.eos_token_id))

    def generate(self, requests: Sequence[Request], sampling: SamplingConfig, max_tokens: int,
                 on_result: OnResult) -> None:
        torch = self._torch
        lengths = {r.index: len(self._tok(r.rendered, add_special_tokens=False).input_ids) for r in requests}
        check_context(requests, lengths, getattr(self._model.config, "max_position_embeddings", None),
                      "max_position_embeddings in its config.json")
        # Similar lengths in one batch waste less padding.
        ordered = sorted(requests, key=lambda r: lengths[r.index])
        greedy = sampling.temperature == 0.0
        bs = max(1, self._settings.batch_size)
        for start in range(0, len(ordered), bs):
            batch_reqs = ordered[start:start + bs]
            batch = self._tok([r.rendered for r in batch_reqs], return_tensors="pt", padding=True,
                              add_special_tokens=False).to(self._settings.device)
            results: List[List[Generation]] = [[] for _ in batch_reqs]
            for sample in range(sampling.n):
                if not greedy:
                    torch.manual_seed(sampling.seed + sample)
                began = time.perf_counter()
                with torch.inference_mode():
                    out = self._model.generate(
                        **batch, max_new_tokens=max_tokens, do_sample=not greedy,
                        temperature=None if greedy else sampling.temperature,
                        top_p=None if greedy else sampling.top_p, top_k=None,
                        pad_token_id=self._tok.pad_token_id,
                    )
                latency = (time.perf_counter() - began) / len(batch_reqs)
                new = out[:, batch.input_ids.shape[1]:].tolist()
                for row, req in enumerate(batch_reqs):
                    results[row].append(self._finish(new[row], lengths[req.index], max_tokens, latency))
            for req, gens in zip(batch_reqs, results):
                on_result(req.index, gens)

    def _finish(self, ids: List[int], prompt_tokens: int, max_tokens: int, latency: float) -> Generation:
        before_stop = cut_at_stop_token(ids, self._stop_ids)
        if before_stop is not None:
            ids, reason = before_stop, "stop"
        else:
            reason = "length" if len(ids) >= max_tokens else "stop"
        text = self._tok.decode(ids, skip_special_tokens=True)
        return Generation(text=text, token_ids=tuple(ids), prompt_tokens=prompt_tokens,
                          finish_reason=reason, latency_s=latency)

    def close(self) -> None:
        import gc

        del self._model
        gc.collect()
