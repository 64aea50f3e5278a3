"""The openai engine against hostile or broken servers, over real sockets on 127.0.0.1 (no mocks):
echoed API keys, slow-loris answers, huge or overlong bodies, broken usage, streaming-only
servers and malformed answers. Every failure must be an EngineError that leaks no key."""

from __future__ import annotations

import json
import os
import logging
import random
import socket
import string
import threading
import time
from typing import Callable, Iterable, List, Optional, Sequence, Union

import pytest

from cogdistill.config.schema import OpenAIEngineConfig, SamplingConfig
from cogdistill.engines.base import EngineError, Generation
from cogdistill.engines.openai_server import OpenAIEngine
from cogdistill.tasks.scorers import score_integer
from cogdistill.traces.records import TRACE_SCHEMA, trace_row, traces_frame
from helpers.models import requests_for
from helpers.openai_server import chat_reply, ok, run

KEY_ENV = "COGDISTILL_HOSTILE_KEY"
_rng = random.Random(164)
KEY = "sk-" + "".join(_rng.choice(string.ascii_letters + string.digits) for _ in range(161))
assert len(KEY) == 164
LOGGER = "cogdistill.engines.openai_server"


def leaked(text: str) -> List[str]:
    """Every 6-character fragment of KEY found in text (none may be)."""
    return sorted({KEY[i:i + 6] for i in range(len(KEY) - 5) if KEY[i:i + 6] in text})


def error_text(err: BaseException) -> str:
    return str(err) + repr(err) + "".join(map(str, err.args)) + str(err.__cause__ or "") + str(err.__context__ or "")


def make_engine(tiny, server, deadline: Optional[float] = None, **settings) -> OpenAIEngine:
    cfg, weights, _ = tiny
    settings.setdefault("backoff_s", 0.01)
    settings.setdefault("backoff_max_s", 0.05)
    settings.setdefault("timeout_s", 10.0)
    settings.setdefault("api_key_env", None)
    config = OpenAIEngineConfig(base_url=server.base_url, **settings)
    if deadline is not None:
        config.request_deadline_s = deadline  # the field OpenAIEngineConfig gains for this (engine reads it by getattr)
    return OpenAIEngine(cfg, weights, config)


def one_request(tiny):
    return requests_for(tiny[2])[:1]


# --------------------------------------------------------------------------- a server that sends anything

Part = Union[bytes, float]  # bytes to send, or seconds to wait


class RawServer:
    """HTTP spoken by hand: `respond(body, index)` yields the exact bytes (and pauses) to send back."""

    def __init__(self, respond: Callable[[dict, int], Iterable[Part]]):
        self.respond = respond
        self.requests: List[dict] = []
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket):
        with conn:
            try:
                conn.settimeout(5)
                body = self._read(conn)
                self.requests.append(body)
                for part in self.respond(body, len(self.requests) - 1):
                    if self.stop.is_set():
                        return
                    if isinstance(part, (int, float)):
                        self.stop.wait(part)
                    else:
                        conn.sendall(part)
            except OSError:  # the client gave up: fine
                pass

    @staticmethod
    def _read(conn: socket.socket) -> dict:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return {}
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            body += conn.recv(65536)
        return json.loads(body or b"{}")

    def close(self):
        self.stop.set()
        self.sock.close()


def http(body: Union[bytes, str, dict, list], status: str = "200 OK", content_type: str = "application/json",
         headers: Sequence[str] = ()) -> bytes:
    data = body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else json.dumps(body).encode()
    head = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}", f"Content-Length: {len(data)}",
            "Connection: close", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


@pytest.fixture
def raw():
    servers: List[RawServer] = []

    def start(respond: Callable[[dict, int], Iterable[Part]]) -> RawServer:
        servers.append(RawServer(respond))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def trickle(data: bytes, every: float) -> Iterable[Part]:
    for i in range(len(data)):
        yield data[i:i + 1]
        yield every


# --------------------------------------------------------------------------- 1. the key in error bodies and logs


def padded(text: str, at: int) -> str:
    """text placed so that it starts at character `at` (what a cut at 120/300 characters would split)."""
    prefix = "Incorrect API key provided: "
    return (prefix + "x" * max(0, at - len(prefix)))[:at] + text + " -- see https://example.invalid/keys"


@pytest.mark.parametrize("status", [500, 400, 401, 403])
@pytest.mark.parametrize("at", [0, 100, 250])
@pytest.mark.parametrize("shape", ["openai", "fastapi", "text"])
def test_a_key_echoed_in_an_error_body_is_masked_before_it_is_cut(tiny, serve, monkeypatch, caplog,
                                                                   status, at, shape):
    monkeypatch.setenv(KEY_ENV, KEY)
    message = padded(KEY, at)
    payload = {"openai": {"error": {"message": message, "type": "invalid_request_error"}},
               "fastapi": {"detail": message}, "text": message}[shape]
    server = serve(lambda body, _: (status, {}, payload))
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with pytest.raises(EngineError) as err:
        run(make_engine(tiny, server, api_key_env=KEY_ENV, max_retries=1), one_request(tiny))
    assert f"HTTP {status}" in str(err.value) and "***" in str(err.value)
    assert leaked(error_text(err.value)) == []
    assert leaked(caplog.text) == [] and leaked(" ".join(str(r.args) for r in caplog.records)) == []
    if status == 500:
        assert len(server.seen) == 2 and "retry 1/1" in caplog.text  # the retry was logged, masked


@pytest.mark.parametrize("at", [0, 100])
def test_a_key_echoed_in_a_non_json_200_body_is_masked(tiny, serve, monkeypatch, caplog, at):
    monkeypatch.setenv(KEY_ENV, KEY)
    server = serve(lambda body, _: ok("<html>" + padded(KEY, at) + "</html>"))
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with pytest.raises(EngineError, match="not JSON") as err:
        run(make_engine(tiny, server, api_key_env=KEY_ENV), one_request(tiny))
    assert leaked(error_text(err.value)) == [] and leaked(caplog.text) == []


def test_a_key_inside_an_httpx_exception_text_is_masked(tiny, raw, monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, KEY)
    # h11 quotes a malformed status line in its exception: the key reaches the retry log and the error
    server = raw(lambda body, i: [f"HTTP/1.1 abc {'x' * 200}{KEY}\r\n\r\n".encode()])
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with pytest.raises(EngineError, match="RemoteProtocolError") as err:
        run(make_engine(tiny, server, api_key_env=KEY_ENV, max_retries=1), one_request(tiny))
    assert len(server.requests) == 2 and "retry 1/1" in caplog.text
    assert leaked(error_text(err.value)) == [] and leaked(caplog.text) == []


# --------------------------------------------------------------------------- 2. the key in a successful answer


@pytest.mark.parametrize("where", ["content", "reasoning_content", "text"])
def test_a_key_echoed_in_an_answer_never_reaches_the_generation_or_trace(tiny, serve, monkeypatch, where):
    monkeypatch.setenv(KEY_ENV, KEY)
    echo = f"Your key is {KEY[:40]}\n{KEY[40:]}. The answer is 6."
    if where == "text":
        reply = {"choices": [{"index": 0, "text": echo, "finish_reason": "stop"}]}
    elif where == "content":
        reply = chat_reply([echo])
    else:
        reply = chat_reply(["The answer is 6."], [echo])
    server = serve(lambda body, _: ok(reply))
    api = "completions" if where == "text" else "chat"
    (gen,) = run(make_engine(tiny, server, api_key_env=KEY_ENV, api=api), one_request(tiny))[0]
    assert leaked(gen.text + (gen.reasoning_text or "")) == [] and "***" in gen.text + (gen.reasoning_text or "")
    row = trace_row(gen, tokenizer=tiny[2], think_start=None, think_end=None,
                    score=lambda text: score_integer(text, "6"))
    assert leaked(repr(row)) == [] and row["correct"]


def test_token_ids_that_spell_the_key_are_dropped(tiny, serve, monkeypatch):
    _, _, tok = tiny
    monkeypatch.setenv(KEY_ENV, KEY)
    text = f"key {KEY} The answer is 6"
    ids = tok.encode(text)
    server = serve(lambda body, _: ok({"choices": [{"index": 0, "text": text, "token_ids": ids,
                                                    "finish_reason": "stop"}]}))
    (gen,) = run(make_engine(tiny, server, api_key_env=KEY_ENV, api="completions", request_token_ids=True),
                 one_request(tiny), max_tokens=len(ids))[0]
    assert gen.token_ids is None  # the ids decode to the key: traces count the masked text instead
    assert leaked(gen.text) == [] and gen.text.endswith("The answer is 6")


# --------------------------------------------------------------------------- 3. slow servers and huge bodies


def test_a_slow_loris_body_is_cut_at_the_request_deadline(tiny, raw):
    answer = json.dumps(chat_reply(["The answer is 6."])).encode()
    head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(answer)}\r\n"
            "Connection: close\r\n\r\n").encode()
    server = raw(lambda body, i: [head, *trickle(answer, 0.5)])  # one byte every 0.5 s: each read is quick
    began = time.monotonic()
    with pytest.raises(EngineError) as err:
        run(make_engine(tiny, server, deadline=2.0, timeout_s=3.0, max_retries=1), one_request(tiny))
    elapsed = time.monotonic() - began
    assert 3.5 < elapsed < 10.0, elapsed  # two attempts of 2 s each, not minutes
    msg = str(err.value)
    assert "engine.request_deadline_s=2s" in msg and "2 attempt(s)" in msg and len(server.requests) == 2


def test_a_slow_loris_header_is_cut_too_and_the_default_deadline_is_timeout_s(tiny, raw):
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Padding: " + b"x" * 1000
    server = raw(lambda body, i: trickle(head, 0.25))
    began = time.monotonic()
    with pytest.raises(EngineError) as err:
        run(make_engine(tiny, server, timeout_s=1.5, max_retries=0), one_request(tiny))
    assert time.monotonic() - began < 5.0
    assert "engine.request_deadline_s (unset: engine.timeout_s=1.5s)" in str(err.value)


def test_a_bad_deadline_setting_is_refused(tiny, serve):
    server = serve(lambda body, _: ok(chat_reply(["x"])))
    for bad in (0, -1.0, float("inf"), float("nan"), True, "soon"):
        with pytest.raises(EngineError, match="engine.request_deadline_s"):
            make_engine(tiny, server, deadline=bad)


def test_an_announced_huge_body_is_refused_without_reading_it(tiny, raw):
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n"
            b"Connection: close\r\n\r\n{")
    server = raw(lambda body, i: [head, 5.0])
    began = time.monotonic()
    with pytest.raises(EngineError) as err:
        run(make_engine(tiny, server, max_retries=3), one_request(tiny))
    assert time.monotonic() - began < 3.0 and len(server.requests) == 1  # not retried
    msg = str(err.value)
    assert "10,000,000,000 bytes" in msg and "127.0.0.1" in msg and "max_tokens" in msg


def test_an_endless_body_is_cut_at_the_size_cap(tiny, raw):
    def endless(body, i):
        yield b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"choices\": [\""
        for _ in range(64):  # 64 MiB, unless the client stops reading first
            yield b"a" * 2 ** 20

    server = raw(endless)
    with pytest.raises(EngineError) as err:
        run(make_engine(tiny, server), one_request(tiny), max_tokens=16)
    assert "more than 8,388,608 bytes" in str(err.value) and "8 MiB" in str(err.value)


# --------------------------------------------------------------------------- 4. overlong answers


def test_an_answer_longer_than_max_tokens_allows_is_refused_before_tokenizing(tiny, serve):
    huge = "a " * 2_097_155  # 4,194,310 tokens of the kind a lying server sent, with usage saying 5
    server = serve(lambda body, _: ok(chat_reply([huge], usage={"prompt_tokens": 7, "completion_tokens": 5})))
    began = time.monotonic()
    with pytest.raises(EngineError) as err:
        run(make_engine(tiny, server), one_request(tiny), max_tokens=32)
    assert time.monotonic() - began < 10.0
    msg = str(err.value)
    assert "request 0" in msg and "4,194,310 characters" in msg and "counted 5 completion tokens" in msg
    assert "max_tokens=32" in msg and "honours `max_tokens`" in msg


def test_more_token_ids_than_max_tokens_are_refused(tiny, serve):
    _, _, tok = tiny
    ids = tok.encode("2 x 3 = 6. " * 20)
    server = serve(lambda body, _: ok({"choices": [{"index": 0, "text": "x", "token_ids": ids,
                                                    "finish_reason": "stop"}]}))
    with pytest.raises(EngineError, match=f"{len(ids)} token ids.*max_tokens=8"):
        run(make_engine(tiny, server, api="completions", request_token_ids=True), one_request(tiny), max_tokens=8)


def test_a_server_count_over_max_tokens_is_kept_warned_and_compared(tiny, serve, caplog):
    _, _, tok = tiny
    usage = {"prompt_tokens": 7, "completion_tokens": 40, "completion_tokens_details": {"reasoning_tokens": 30}}
    server = serve(lambda body, _: ok(chat_reply(["The answer is 6."], usage=usage)))
    caplog.set_level(logging.WARNING, logger=LOGGER)
    (gen,) = run(make_engine(tiny, server), one_request(tiny), max_tokens=16)[0]
    assert gen.usage == {"prompt_tokens": 7, "completion_tokens": 40, "reasoning_tokens": 30}
    assert "counted 40 completion tokens" in caplog.text
    row = trace_row(gen, tokenizer=tok, think_start=None, think_end=None, max_tokens=16,
                    score=lambda text: score_integer(text, "6"))
    assert row["usage_completion_tokens"] == 40 and row["usage_reasoning_tokens"] == 30
    assert row["token_count_mismatch"] is True and row["finish_reason"] == "stop" and not row["censored"]


class CharTokenizer:
    def encode(self, text: str, add_special_tokens: bool = False) -> List[int]:
        return [ord(c) for c in text]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(i) for i in ids)


def char_row(n_chars: int, *, usage=None, max_tokens=None, finish="stop") -> dict:
    text = "x" * (n_chars - 1) + "6"
    gen = Generation(text=text, token_ids=None, prompt_tokens=5, finish_reason=finish, latency_s=0.1, usage=usage)
    return trace_row(gen, tokenizer=CharTokenizer(), think_start=None, think_end=None, max_tokens=max_tokens,
                     score=lambda t: score_integer(t, "6"))


@pytest.mark.parametrize("n_chars, max_tokens, overlong", [
    (32, 32, False), (35, 32, False), (36, 32, True),  # tolerance max(3, 5%) = 3
    (1050, 1000, False), (1051, 1000, True),  # 5% of 1000 = 50
    (5000, None, False),  # no budget given: the old behaviour
])
def test_trace_rows_over_max_tokens_are_censored_as_overlong(n_chars, max_tokens, overlong):
    row = char_row(n_chars, max_tokens=max_tokens)
    assert row["total_tokens"] == n_chars
    assert row["censored"] is overlong and (row["finish_reason"] == "overlong") is overlong


@pytest.mark.parametrize("usage, mismatch", [
    (None, None),
    ({"prompt_tokens": 5}, None),
    ({"request_completion_tokens": 300}, None),  # n > 1: the server counts all samples together
    ({"completion_tokens": 100}, False),
    # ours is 100; the tolerance is max(3, 5% of the server's count)
    ({"completion_tokens": 96}, False), ({"completion_tokens": 95}, True),  # 5% of 95, 96: 4
    ({"completion_tokens": 105}, False), ({"completion_tokens": 106}, True),  # 5% of 105, 106: 5
    ({"completion_tokens": 1000}, True), ({"completion_tokens": 0}, True),
])
def test_token_count_mismatch_compares_our_count_with_the_servers(usage, mismatch):
    row = char_row(100, usage=usage)
    assert row["token_count_mismatch"] is mismatch


def test_new_trace_columns_are_in_the_schema():
    row = char_row(10, usage={"completion_tokens": 10, "reasoning_tokens": 4}, max_tokens=4)
    frame = traces_frame([{"model": "m", "task": "t", "item_id": "1", "sample_idx": 0, "prompt": "p",
                           "target": "6", "engine": "openai", **row}])
    assert dict(frame.schema) == TRACE_SCHEMA
    assert frame["usage_reasoning_tokens"].to_list() == [4] and frame["token_count_mismatch"].to_list() == [False]
    assert frame["finish_reason"].to_list() == ["overlong"] and frame["censored"].to_list() == [True]


# --------------------------------------------------------------------------- 5. broken usage


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "-3", '"5"', "1e400", "2.5", "true"])
def test_broken_usage_is_ignored_and_counted_ourselves(tiny, serve, caplog, value):
    _, _, tok = tiny
    body = ('{"choices": [{"index": 0, "message": {"role": "assistant", "content": "The answer is 6."}, '
            '"finish_reason": "stop"}], "usage": {"prompt_tokens": 7, "completion_tokens": ' + value + "}}")
    server = serve(lambda _, __: ok(body))
    caplog.set_level(logging.WARNING, logger=LOGGER)
    reqs = requests_for(tok)[:2]
    out = run(make_engine(tiny, server), reqs)
    for req in reqs:
        (gen,) = out[req.index]
        assert gen.usage is None and gen.prompt_tokens == len(tok.encode(req.rendered))  # ours, not the server's 7
    assert caplog.text.count("not a count") == 1  # said once per engine, not per request


def test_integral_float_usage_is_accepted(tiny, serve):
    server = serve(lambda _, __: ok(chat_reply(["6"], usage={"prompt_tokens": 7.0, "completion_tokens": 2.0})))
    (gen,) = run(make_engine(tiny, server), one_request(tiny))[0]
    assert gen.usage == {"prompt_tokens": 7, "completion_tokens": 2} and gen.prompt_tokens == 7


# --------------------------------------------------------------------------- 6. streaming-only servers


@pytest.mark.parametrize("content_type", ["text/event-stream; charset=utf-8", "application/json"])
def test_a_server_that_answers_with_a_stream_is_named(tiny, raw, content_type):
    chunk = {"choices": [{"index": 0, "delta": {"content": "6"}}]}
    events = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n"
    server = raw(lambda body, i: [http(events, content_type=content_type)])
    with pytest.raises(EngineError) as err:
        run(make_engine(tiny, server, max_retries=2), one_request(tiny))
    msg = str(err.value)
    assert "server-sent events" in msg and "non-streaming" in msg and "engine.base_url" in msg
    assert len(server.requests) == 1 and server.requests[0].get("stream") in (None, False)


@pytest.mark.parametrize("message", ["stream must be true for this endpoint", "Streaming is required",
                                     "This server only supports streaming responses"])
def test_a_server_that_requires_streaming_is_named(tiny, serve, message):
    server = serve(lambda body, _: (400, {}, {"error": {"message": message}}))
    with pytest.raises(EngineError) as err:
        run(make_engine(tiny, server, extra_body={"stream": True}), one_request(tiny))
    msg = str(err.value)
    assert "HTTP 400" in msg and "only streaming requests" in msg and "non-streaming" in msg
    assert "remove `stream` from engine.extra_body" in msg


def test_a_400_that_merely_mentions_streams_gets_no_streaming_hint(tiny, serve):
    server = serve(lambda body, _: (400, {}, {"error": {"message": "stream_options is not supported"}}))
    with pytest.raises(EngineError) as err:
        run(make_engine(tiny, server), one_request(tiny))
    assert "stream_options is not supported" in str(err.value) and "only streaming" not in str(err.value)


# --------------------------------------------------------------------------- 7. broken answers are EngineErrors


def test_a_connection_closed_mid_body_is_retried_then_an_engine_error(tiny, raw):
    answer = http(chat_reply(["The answer is 6."]))
    server = raw(lambda body, i: [answer[:len(answer) - 20]])  # then the server hangs up
    with pytest.raises(EngineError) as err:
        run(make_engine(tiny, server, max_retries=1), one_request(tiny))
    assert "RemoteProtocolError" in str(err.value) and "2 attempt(s)" in str(err.value)


def test_invalid_utf8_is_an_engine_error(tiny, raw):
    server = raw(lambda body, i: [http(b'{"choices": [{"index": 0, "message": {"content": "\xff\xfe 6"}}]}')])
    with pytest.raises(EngineError, match="not valid UTF-8"):
        run(make_engine(tiny, server), one_request(tiny))


def test_bad_gzip_is_an_engine_error(tiny, raw):
    server = raw(lambda body, i: [http(b"this is not gzip", headers=["Content-Encoding: gzip"])])
    with pytest.raises(EngineError, match="DecodingError"):
        run(make_engine(tiny, server, max_retries=0), one_request(tiny))


@pytest.mark.parametrize("reply, problem", [
    ([{"choices": []}], "expected a JSON object, got list"),
    ({"choices": [{"index": 0, "message": {"content": 5}, "finish_reason": "stop"}]}, "content` is 5, not text"),
    ({"choices": [{"index": 0, "message": {"content": {"a": ["x" * 5000]}}}]}, "content` is {'a': ['xxx"),
    ({"choices": "nope"}, "`choices` is missing"),
    ({"error": {"message": "model overloaded"}}, "`choices` is missing; the server says: model overloaded"),
    ({"choices": [5]}, "something other than objects"),
    ("[" * 100_000 + "]" * 100_000, "not JSON"),  # nested past Python's recursion limit
    ('{"choices": [{"index": 0, "message": {"content": "' + "9" * 5000 + '"}}], "usage": {"prompt_tokens": '
     + "9" * 5000 + "}}", "not JSON"),  # an integer past Python's int() digit limit
])
def test_malformed_answers_are_engine_errors(tiny, serve, reply, problem):
    server = serve(lambda body, _: ok(reply))
    with pytest.raises(EngineError) as err:
        run(make_engine(tiny, server), one_request(tiny))
    assert problem in str(err.value) and len(str(err.value)) < 1000


def test_token_ids_outside_the_vocabulary_are_an_engine_error(tiny, serve):
    server = serve(lambda body, _: ok({"choices": [{"index": 0, "text": "6", "token_ids": [3, 10 ** 30],
                                                    "finish_reason": "stop"}]}))
    with pytest.raises(EngineError, match="outside the tokenizer's vocabulary"):
        run(make_engine(tiny, server, api="completions", request_token_ids=True), one_request(tiny))


def test_a_non_finite_retry_after_falls_back_to_our_backoff(tiny, serve):
    def script(body, earlier):
        if earlier == 0:
            return 429, {"Retry-After": "nan"}, {"error": {"message": "slow down"}}
        return ok(chat_reply(["6"]))

    server = serve(script)
    out = run(make_engine(tiny, server, max_retries=1), one_request(tiny))
    assert out[0][0].text == "6" and len(server.seen) == 2


def test_the_url_in_errors_carries_no_credentials(tiny, serve):
    server = serve(lambda body, _: (400, {}, {"error": {"message": "bad"}}))
    cfg, weights, _ = tiny
    host = server.base_url.split("//", 1)[1]
    engine = OpenAIEngine(cfg, weights, OpenAIEngineConfig(base_url=f"http://user:hunter2pass@{host}",
                                                           api_key_env=None))
    with pytest.raises(EngineError) as err:
        run(engine, one_request(tiny))
    assert "hunter2pass" not in str(err.value) and "HTTP 400" in str(err.value)


def test_generations_come_back_whole_from_a_fine_server(tiny, serve):
    """The hardening leaves a well-behaved answer as it was."""
    usage = {"prompt_tokens": 7, "completion_tokens": 6}
    server = serve(lambda body, _: ok(chat_reply(["The answer is 6."], usage=usage)))
    (gen,) = run(make_engine(tiny, server, deadline=5.0), one_request(tiny), SamplingConfig())[0]
    assert gen.text == "The answer is 6." and gen.usage == usage and gen.finish_reason == "stop"


def test_a_job_flags_counts_that_disagree_with_the_server_in_its_summary_and_metrics(isolated_env, tiny_conf,
                                                                                     mult_mirror, capsys):
    """The server claims 50 completion tokens for a 5-token answer: every trace is flagged, the job's
    summary says so, and the job run logs how many traces disagree."""
    from mlflow import MlflowClient

    from cogdistill.job.run import run_job
    from helpers.config import compose, job_overrides
    from helpers.openai_server import FakeServer

    usage = {"prompt_tokens": 7, "completion_tokens": 50}
    server = FakeServer(lambda body, _seen: (200, {}, chat_reply(["The answer is 6"], usage=usage)))
    try:
        mirror, sha = mult_mirror
        run_job(compose(job_overrides(tiny_conf, mirror, sha) + [
            "engine=openai", f"engine.base_url={server.base_url}", "engine.api_key_env=null"]))
    finally:
        server.close()
    out = capsys.readouterr().out
    assert "6 of 6 trace(s) disagree with the server's own token count" in " ".join(out.split())
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs([client.get_experiment_by_name("demo").experiment_id])
    assert run.data.metrics["token_count_mismatch/multiplication"] == 6
    assert run.data.metrics["overlong_traces/multiplication"] == 0
