"""The openai engine's HTTP side: one POST to an OpenAI-compatible server, retried, bounded, masked.

Connection errors, timeouts, 429 and 5xx are retried with capped exponential backoff and
jitter (Retry-After honoured); any other error is an EngineError saying what to do.

The server is not trusted:
- the API key comes from the environment variable named by `api_key_env` and is sent only in
  the Authorization header; whatever a server sends back (error bodies, answers, exception
  texts) is masked with cogdistill.secrets.mask BEFORE it is cut short, so neither the key
  nor a fragment of it reaches an error or a log record;
- every request has a total deadline (`request_deadline_s`, default `timeout_s`) enforced on
  each socket operation (engines/http_deadline.py), so a server that trickles bytes cannot hold
  a job forever;
- answer bodies are capped in size (`body_cap`), error bodies more tightly.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import threading
import time
from typing import Any, Dict, List, NamedTuple, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

from cogdistill.config.schema import OpenAIEngineConfig
from cogdistill.engines import http_deadline
from cogdistill.engines.base import EngineError, Request
from cogdistill.secrets import mask

# The engine's logger: its retries are part of what `openai engine` tells the user, filtered by that name.
log = logging.getLogger("cogdistill.engines.openai_server")

MAX_MESSAGE = 300  # characters of a server's error message quoted in our errors
_ERROR_BODY_BYTES = 64 * 1024  # of an error answer only this much is read: we quote 300 characters of it
# A successful answer is refused above max(8 MiB, 4 KiB per token it may hold). 4 KiB per token
# leaves room for JSON escaping (a character sent as \uXXXX is 6 bytes), token ids and logprobs
# asked for in extra_body; a server sending more ignores max_tokens, or is not an LLM API at all.
_MIN_BODY_BYTES = 8 * 1024 * 1024
_BODY_BYTES_PER_TOKEN = 4096
# A 4xx message saying the server only streams ("stream must be true", "streaming is required",
# "only streaming requests are supported", a FastAPI "stream: field required").
_WANTS_STREAMING = re.compile(r"\bstream(ing)?\b.{0,40}\b(true|required|must)\b|\bonly\b.{0,20}\bstream",
                              re.IGNORECASE)


class Stopped(Exception):
    """A request abandoned because another one failed."""


def display_url(url: str) -> str:
    """base_url without user:password@ or a query string (either could hold a secret)."""
    parts = urlsplit(url.rstrip("/"))
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def truncate(text: str, limit: int = MAX_MESSAGE) -> str:
    """Whitespace collapsed and cut to limit characters. Only for text already masked."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def body_cap(max_tokens: int, n: int) -> int:
    """The most bytes a successful answer to one request may have (see _MIN_BODY_BYTES)."""
    return max(_MIN_BODY_BYTES, _BODY_BYTES_PER_TOKEN * (max_tokens or 0) * max(1, n))


def _retry_after(headers) -> Optional[float]:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        wait_s = float(value)
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
    return max(0.0, wait_s) if math.isfinite(wait_s) else None


class _Answer(NamedTuple):
    status: int
    headers: Any  # httpx.Headers
    body: bytes  # an error answer's body may be cut at _ERROR_BODY_BYTES
    reason: str


class Transport:
    """POSTs to one endpoint (`path` under engine.base_url) of a server serving the model `served`."""

    def __init__(self, settings: OpenAIEngineConfig, path: str, served: str):
        import httpx

        # Read with getattr: a config written before the setting existed has no such field.
        deadline = getattr(settings, "request_deadline_s", None)
        if deadline is not None and (isinstance(deadline, bool) or not isinstance(deadline, (int, float))
                                     or not 0 < deadline < math.inf):
            raise EngineError(f"engine.request_deadline_s={deadline!r}: give the seconds a whole request may "
                              "take (a positive number), or null to use engine.timeout_s.")
        self._deadline_s = float(deadline if deadline is not None else settings.timeout_s)
        self._deadline_label = (f"engine.request_deadline_s={self._deadline_s:g}s" if deadline is not None else
                                f"engine.request_deadline_s (unset: engine.timeout_s={self._deadline_s:g}s)")
        self._httpx = httpx
        self._settings = settings
        self._served = served
        self._url = settings.base_url.rstrip("/") + path
        self.shown = display_url(settings.base_url)
        self.where = self.shown + path  # the endpoint as errors name it (no credentials)
        self._key: Optional[str] = None
        headers = {"Accept": "application/json"}
        if settings.api_key_env and os.environ.get(settings.api_key_env):
            self._key = os.environ[settings.api_key_env]
            headers["Authorization"] = f"Bearer {self._key}"
        workers = max(1, settings.concurrency)
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(settings.timeout_s, connect=min(settings.timeout_s, 30.0)),
            limits=httpx.Limits(max_connections=workers, max_keepalive_connections=workers),
        )
        if not http_deadline.install(self._client):
            log.warning("openai engine: this httpx version cannot bound connects and header reads by "
                        "engine.request_deadline_s; only the answer's body is checked against it.")

    def close(self) -> None:
        self._client.close()

    # ---------------------------------------------------------------- server text: mask, then cut

    def mask(self, text: str) -> str:
        return mask(text, [self._key])

    def quote(self, text: Any, limit: int = MAX_MESSAGE) -> str:
        """Server-controlled text as our messages may show it: masked first, then cut (cutting
        first could leave a prefix of the key that exact masking no longer recognizes)."""
        return truncate(self.mask(str(text)), limit)

    def fail(self, message: str) -> EngineError:
        return EngineError(self.mask(message))  # every piece is masked already; this is the last guard

    def _server_message(self, ans: _Answer) -> str:
        """The error message a server put in its body (OpenAI, vLLM and FastAPI shapes), else the raw text."""
        text = ans.body.decode("utf-8", errors="replace")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            return self.quote(text or ans.reason or "")
        if isinstance(data, dict):
            err = data.get("error")
            if isinstance(err, dict) and err.get("message"):
                return self.quote(err["message"])
            for key in ("error", "message", "detail"):
                if isinstance(data.get(key), str):
                    return self.quote(data[key])
        return self.quote(text)

    # ---------------------------------------------------------------- one POST, retried

    def post(self, body: Dict[str, Any], req: Request, stop: threading.Event, cap: int) -> Tuple[Any, float]:
        """The JSON a server answered to body, and the seconds the successful attempt took."""
        httpx = self._httpx
        s = self._settings
        attempts = max(0, s.max_retries) + 1
        last = ""  # masked: it reaches the log below and the final error
        unreachable = False
        for attempt in range(attempts):
            if stop.is_set():
                raise Stopped()
            wait_s: Optional[float] = None
            began = time.perf_counter()
            deadline = time.monotonic() + self._deadline_s
            try:
                ans = self._exchange(body, cap, deadline, req)
            except httpx.TimeoutException as exc:
                last = self._timeout_text(exc, deadline)
                unreachable = isinstance(exc, httpx.ConnectTimeout)
            except httpx.RequestError as exc:  # refused, reset, cut mid-body, protocol or decoding errors
                last = f"{type(exc).__name__}: {self.quote(exc)}"
                unreachable = isinstance(exc, httpx.ConnectError)
            else:
                latency = time.perf_counter() - began
                code = ans.status
                if 200 <= code < 300:
                    return self._json(ans, req), latency
                if code in (401, 403):
                    raise self._refused(ans, req)
                if code == 429 or code >= 500:
                    last = f"HTTP {code}: {self._server_message(ans)}"
                    unreachable = False
                    wait_s = _retry_after(ans.headers)
                else:
                    raise self._rejected(ans, req)
            if attempt + 1 == attempts:
                break
            delay = min(s.backoff_max_s, s.backoff_s * 2 ** attempt)
            delay = random.uniform(delay / 2, delay) if wait_s is None else min(s.backoff_max_s, wait_s)
            log.warning("openai engine: request %d failed (%s); retry %d/%d in %.1fs",
                        req.index, last, attempt + 1, attempts - 1, delay)
            if stop.wait(delay):
                raise Stopped()
        if unreachable:
            raise self.fail(
                f"could not reach the server at {self.shown} after {attempts} attempt(s) "
                f"(last error: {last}). Start the server (e.g. `vllm serve <model> --port 8000`) "
                "or fix engine.base_url.")
        raise self.fail(
            f"request {req.index} to {self.where} failed after {attempts} attempt(s) (last error: {last}). "
            "The server is failing or overloaded: check its logs, lower engine.concurrency, or raise "
            "engine.max_retries / engine.backoff_max_s / engine.timeout_s / engine.request_deadline_s.")

    def _exchange(self, body: Dict[str, Any], cap: int, deadline: float, req: Request) -> _Answer:
        """One POST, its body read in chunks: at most `cap` bytes of a success (more is an
        EngineError), _ERROR_BODY_BYTES of an error, all before the deadline."""
        httpx = self._httpx
        http_deadline.current.at = deadline
        try:
            with self._client.stream("POST", self._url, json=body) as resp:
                ok = 200 <= resp.status_code < 300
                limit = cap if ok else _ERROR_BODY_BYTES
                declared = resp.headers.get("content-length", "")
                if ok and declared.isdigit() and int(declared) > cap:
                    raise self._too_big(req, f"announces {int(declared):,} bytes", cap)
                chunks: List[bytes] = []
                size = 0
                for chunk in resp.iter_bytes():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > limit:
                        if ok:
                            raise self._too_big(req, f"sent more than {cap:,} bytes", cap)
                        break  # an error: what we have is plenty to quote
                    if time.monotonic() > deadline:  # only matters if http_deadline.install could not
                        raise httpx.ReadTimeout("the request's total deadline passed")
                return _Answer(resp.status_code, resp.headers, b"".join(chunks)[:limit], resp.reason_phrase)
        finally:
            http_deadline.current.at = None

    def _too_big(self, req: Request, what: str, cap: int) -> EngineError:
        return self.fail(
            f"{self.where} {what} in answer to request {req.index}, more than the {cap / 2 ** 20:.0f} MiB "
            "allowed for this request's max_tokens and sampling.n: the server ignores max_tokens or is not "
            "an OpenAI-compatible API. Check engine.base_url and the server.")

    def _timeout_text(self, exc: Exception, deadline: float) -> str:
        if time.monotonic() >= deadline - 0.05:
            return (f"not finished within {self._deadline_label}, the limit on the whole request (connect, "
                    "send and every read): the server is too slow or trickles its answer")
        return f"no answer within engine.timeout_s={self._settings.timeout_s}s ({type(exc).__name__})"

    # ---------------------------------------------------------------- answers that end the request

    def _refused(self, ans: _Answer, req: Request) -> EngineError:
        env = self._settings.api_key_env
        how = (f"set the environment variable {env} to a valid API key" if env and not self._key
               else f"check the API key in the environment variable {env}" if env
               else "set engine.api_key_env to the name of an environment variable holding the key")
        return self.fail(f"{self.where} refused request {req.index} with HTTP {ans.status} "
                         f"({self._server_message(ans)}): {how}.")

    def _rejected(self, ans: _Answer, req: Request) -> EngineError:
        message = self._server_message(ans)
        hint = ""
        if ans.status == 404:
            hint = (f" Is engine.served_model (now {self._served!r}) the name the server lists at "
                    f"{self.shown}/models?")
        elif _WANTS_STREAMING.search(message):
            hint = " The server seems to accept only streaming requests. " + self._stream_fix()
        return self.fail(f"{self.where} rejected request {req.index} with HTTP {ans.status}: {message}.{hint}")

    def _stream_fix(self) -> str:
        fix = ("cogdistill sends non-streaming requests (no `stream: true`) and needs one JSON answer: check "
               "engine.base_url and the server's settings")
        if (self._settings.extra_body or {}).get("stream"):
            fix += ", and remove `stream` from engine.extra_body"
        return fix + "."

    def _json(self, ans: _Answer, req: Request) -> Any:
        """The JSON of a successful answer; a stream, bad UTF-8 or non-JSON is an EngineError."""
        what = f"{self.where} answered request {req.index} with HTTP {ans.status}"
        content_type = ans.headers.get("content-type", "")
        if content_type.startswith("text/event-stream") or ans.body.lstrip().startswith((b"data:", b"event:")):
            raise self.fail(f"{what} as a stream of server-sent events ({self.quote(content_type, 60)}), "
                            f"not one JSON object. {self._stream_fix()}")
        try:
            text = ans.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(f"{what} but a body that is not valid UTF-8 (byte {exc.start} of {len(ans.body)}); "
                            "JSON answers must be UTF-8. Is engine.base_url an OpenAI-compatible API?") from None
        try:
            return json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
            raise self.fail(
                f"{what} but a body that is not JSON ({self.quote(text, 120)!r}). Is engine.base_url an "
                "OpenAI-compatible API (it usually ends in /v1)?") from None
