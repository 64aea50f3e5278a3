"""The transformers engine on a random-weight tiny model (no network, seconds)."""

import importlib.util
from typing import Dict, List

import pytest

from cogdistill.config.schema import SamplingConfig, TransformersEngineConfig
from cogdistill.engines.base import Generation, Request
from cogdistill.engines.factory import create_engine, resolve_engine_name
from cogdistill.engines.tokenizer import ModelTokenizer, PromptError
from cogdistill.engines.weights import resolve_weights
from helpers.models import model_cfg

PROMPTS = ["What is 2 x 3?", "What is 7 x 8? Think first.", "9 x 9", "What is 4 x 5 then 6 x 7?"]


def requests_for(tokenizer: ModelTokenizer, prompts=PROMPTS) -> List[Request]:
    return [Request(index=i, prompt=p, rendered=tokenizer.render(p)) for i, p in enumerate(prompts)]


def run(engine, requests, sampling, max_tokens) -> Dict[int, List[Generation]]:
    out: Dict[int, List[Generation]] = {}
    engine.generate(requests, sampling, max_tokens, lambda i, gens: out.__setitem__(i, gens))
    return out


@pytest.fixture(scope="module")
def tiny_engine(tiny_model_dir):
    """(engine, tokenizer, config, weights): one transformers engine for the module."""
    cfg = model_cfg(tiny_model_dir)
    weights = resolve_weights(cfg, tiny_model_dir)
    eng = create_engine("transformers", cfg, weights, TransformersEngineConfig(batch_size=4))
    yield eng, ModelTokenizer(cfg, weights), cfg, weights
    eng.close()


def test_greedy_generation_shapes_and_limits(tiny_engine):
    engine, tok, _, _ = tiny_engine
    out = run(engine, requests_for(tok), SamplingConfig(), 10)
    assert sorted(out) == list(range(len(PROMPTS))) and all(len(g) == 1 for g in out.values())
    for i, (gen,) in out.items():
        assert len(gen.token_ids) <= 10
        assert gen.finish_reason == ("length" if len(gen.token_ids) == 10 else "stop")
        assert gen.prompt_tokens == len(tok.encode(tok.render(PROMPTS[i])))
        assert gen.text == tok.decode(gen.token_ids)


def test_batching_does_not_change_greedy_outputs(tiny_engine):
    engine, tok, cfg, weights = tiny_engine
    batched = run(engine, requests_for(tok), SamplingConfig(), 10)
    single = create_engine("transformers", cfg, weights, TransformersEngineConfig(batch_size=1))
    one_by_one = run(single, requests_for(tok), SamplingConfig(), 10)
    single.close()
    assert {i: g[0].token_ids for i, g in batched.items()} == {i: g[0].token_ids for i, g in one_by_one.items()}


def test_sampling_n_returns_n_generations_and_is_seeded(tiny_engine):
    engine, tok, _, _ = tiny_engine
    sampling = SamplingConfig(temperature=1.0, n=3, seed=11)
    first = run(engine, requests_for(tok, PROMPTS[:2]), sampling, 8)
    again = run(engine, requests_for(tok, PROMPTS[:2]), sampling, 8)
    assert all(len(g) == 3 for g in first.values())
    assert {i: [x.token_ids for x in g] for i, g in first.items()} == \
        {i: [x.token_ids for x in g] for i, g in again.items()}
    assert len({x.token_ids for x in first[0]}) > 1  # random weights at T=1: samples differ


def test_chat_template_is_applied_and_completion_mode_is_raw(tiny_engine, tiny_model_dir):
    _, tok, _, weights = tiny_engine
    assert tok.render("hi") == "<|user|>hi<|end|><|assistant|>"
    assert ModelTokenizer(model_cfg(tiny_model_dir, chat=False), weights).render("hi") == "hi"
    sys_tok = ModelTokenizer(model_cfg(tiny_model_dir, system_prompt="Be brief."), weights)
    assert sys_tok.render("hi") == "<|system|>Be brief.<|end|><|user|>hi<|end|><|assistant|>"


def test_missing_chat_template_is_a_clear_error(tmp_path, tiny_model_dir):
    import json
    import shutil

    copy = tmp_path / "no-template"
    shutil.copytree(tiny_model_dir, copy)
    (copy / "chat_template.jinja").unlink(missing_ok=True)
    tc = copy / "tokenizer_config.json"
    data = json.loads(tc.read_text())
    data.pop("chat_template", None)
    tc.write_text(json.dumps(data))
    cfg = model_cfg(copy)
    with pytest.raises(PromptError, match="no chat template; set `chat: false`"):
        ModelTokenizer(cfg, resolve_weights(cfg, copy))


@pytest.mark.slow  # 8-16 s: a second engine, loaded in its own process
def test_isolated_engine_matches_in_process_engine(tiny_engine):
    engine, tok, cfg, weights = tiny_engine
    here = run(engine, requests_for(tok), SamplingConfig(), 6)
    child = create_engine("transformers", cfg, weights, TransformersEngineConfig(batch_size=2), isolate=True)
    try:
        there = run(child, requests_for(tok), SamplingConfig(), 6)
        assert child.version == engine.version
    finally:
        child.close()
    assert {i: g[0].token_ids for i, g in here.items()} == {i: g[0].token_ids for i, g in there.items()}
    assert not child._proc.is_alive()  # the model's process is gone when the job ends


def test_auto_engine_resolution(tiny_model_dir):
    assert resolve_engine_name("auto", model_cfg(tiny_model_dir, engine="transformers")) == "transformers"
    assert resolve_engine_name("transformers", model_cfg(tiny_model_dir)) == "transformers"
    # no engine in the model file: vllm where it is installed, else transformers
    expected = "vllm" if importlib.util.find_spec("vllm") is not None else "transformers"
    assert resolve_engine_name("auto", model_cfg(tiny_model_dir)) == expected
