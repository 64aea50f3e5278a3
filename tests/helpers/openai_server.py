"""A scripted OpenAI-compatible server on 127.0.0.1 (FakeServer) and the openai engine's helpers:
an engine pointed at a server, a run that collects generations."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple

from cogdistill.config.schema import OpenAIEngineConfig, SamplingConfig
from cogdistill.engines.base import Generation
from cogdistill.engines.openai_server import OpenAIEngine
from cogdistill.engines.tokenizer import ModelTokenizer
from cogdistill.engines.weights import resolve_weights

from helpers.models import model_cfg

# --------------------------------------------------------------------------- fake server

Reply = Tuple[int, Dict[str, str], Any]  # status, headers, JSON-able payload or raw str/bytes


class FakeServer:
    """An OpenAI-compatible server whose answers come from `script(body, seen_before) -> Reply`."""

    def __init__(self, script: Callable[[dict, int], Reply]):
        self.script = script
        self.seen: List[Tuple[str, dict, Dict[str, str]]] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw or b"{}")
                with fake._lock:
                    earlier = sum(1 for _, b, _ in fake.seen if b.get("prompt", b.get("messages")) ==
                                  body.get("prompt", body.get("messages")))
                    fake.seen.append((self.path, body, dict(self.headers)))
                status, headers, payload = fake.script(body, earlier)
                data = payload if isinstance(payload, bytes) else \
                    payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def user_prompt(body: dict) -> str:
    return body["messages"][-1]["content"] if "messages" in body else body["prompt"]


def chat_reply(contents: List[str], reasoning: Optional[List[str]] = None, field: str = "reasoning_content",
               finish: str = "stop", usage: Optional[dict] = None) -> dict:
    choices = []
    for i, text in enumerate(contents):
        msg: Dict[str, Any] = {"role": "assistant", "content": text}
        if reasoning is not None:
            msg[field] = reasoning[i]
        choices.append({"index": i, "message": msg, "finish_reason": finish})
    out: Dict[str, Any] = {"id": "x", "object": "chat.completion", "choices": choices}
    if usage is not None:
        out["usage"] = usage
    return out


def ok(payload) -> Reply:
    return 200, {}, payload


# --------------------------------------------------------------------------- the openai engine


def engine_for(tiny, server_or_url, **settings) -> OpenAIEngine:
    cfg, weights, _ = tiny
    url = server_or_url if isinstance(server_or_url, str) else server_or_url.base_url
    settings.setdefault("backoff_s", 0.01)
    settings.setdefault("backoff_max_s", 0.05)
    settings.setdefault("timeout_s", 10.0)
    settings.setdefault("api_key_env", None)
    return OpenAIEngine(cfg, weights, OpenAIEngineConfig(base_url=url, **settings))


def run(engine, requests, sampling=None, max_tokens=16) -> Dict[int, List[Generation]]:
    out: Dict[int, List[Generation]] = {}
    try:
        engine.generate(requests, sampling or SamplingConfig(), max_tokens, lambda i, g: out.__setitem__(i, g))
    finally:
        engine.close()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resolved_tiny(tiny_model_dir, cache):
    """(config, resolved weights, tokenizer) of the tiny random model: what the openai engine is built from."""
    cfg = model_cfg(tiny_model_dir)
    weights = resolve_weights(cfg, cache)
    return cfg, weights, ModelTokenizer(cfg, weights)
