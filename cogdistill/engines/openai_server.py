"""Any OpenAI-compatible server: your own `vllm serve` or a hosted API, over plain HTTP (httpx).

`api: chat` posts the user prompt (and the model's system prompt) to /chat/completions and
lets the server apply its chat template; `api: completions` posts the exact rendered text to
/completions, so the server sees what the local engines see. A server that splits reasoning
out (`message.reasoning_content` or `message.reasoning`) has that split used as is.

Requests run `concurrency` at a time; each request's results reach on_result (in the calling
thread) as soon as it finishes, so a failure later on loses nothing already generated.
Connection errors, timeouts, 429 and 5xx are retried with capped exponential backoff and
jitter (Retry-After honoured); any other error stops the run with a message saying what to do.

The server is not trusted:
- the API key comes from the environment variable named by `api_key_env` and is sent only in
  the Authorization header; whatever a server sends back (error bodies, answers, exception
  texts) is masked with cogdistill.secrets.mask BEFORE it is cut short, so neither the key
  nor a fragment of it reaches an error, a log record, the generation cache or the traces;
- every request has a total deadline (`request_deadline_s`, default `timeout_s`) enforced on
  each socket operation, so a server that trickles bytes cannot hold a job forever;
- answer bodies are capped in size, and an answer longer than max_tokens allows is refused
  before anything is tokenized;
- every malformed answer is an EngineError that names the request and the fix.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import re
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Dict, FrozenSet, List, NamedTuple, Optional, Sequence, Set, Tuple
from urllib.parse import urlsplit, urlunsplit

from cogdistill.config.schema import MAX_SAMPLES, MAX_TOKENS_LIMIT, ModelConfig, OpenAIEngineConfig, SamplingConfig
from cogdistill.engines.base import EngineError, Generation, OnResult, Request
from cogdistill.engines import http_deadline
from cogdistill.engines.tokenizer import chat_messages, load_tokenizer, stop_token_ids, strip_stop_tokens
from cogdistill.secrets import mask
from cogdistill.engines.weights import ResolvedWeights

log = logging.getLogger(__name__)

_MAX_MESSAGE = 300  # characters of a server's error message quoted in our errors
_ERROR_BODY_BYTES = 64 * 1024  # of an error answer only this much is read: we quote 300 characters of it
# A successful answer is refused above max(8 MiB, 4 KiB per token it may hold). 4 KiB per token
# leaves room for JSON escaping (a character sent as \uXXXX is 6 bytes), token ids and logprobs
# asked for in extra_body; a server sending more ignores max_tokens, or is not an LLM API at all.
_MIN_BODY_BYTES = 8 * 1024 * 1024
_BODY_BYTES_PER_TOKEN = 4096
# No token of a real vocabulary decodes to more characters than its longest entry (see
# _chars_per_token); this floor keeps a mismatched local tokenizer from refusing real answers.
_MIN_CHARS_PER_TOKEN = 32
# One request's usage can count at most sampling.n generations of max_tokens each (both at their limits).
MAX_USAGE_TOKENS = MAX_TOKENS_LIMIT * MAX_SAMPLES
# A 4xx message saying the server only streams ("stream must be true", "streaming is required",
# "only streaming requests are supported", a FastAPI "stream: field required").
_WANTS_STREAMING = re.compile(r"\bstream(ing)?\b.{0,40}\b(true|required|must)\b|\bonly\b.{0,20}\bstream",
                              re.IGNORECASE)


class _Stopped(Exception):
    """A request abandoned because another one failed."""


def display_url(url: str) -> str:
    """base_url without user:password@ or a query string (either could hold a secret)."""
    parts = urlsplit(url.rstrip("/"))
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _truncate(text: str, limit: int = _MAX_MESSAGE) -> str:
    """Whitespace collapsed and cut to limit characters. Only for text already masked."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _retry_after(headers) -> Optional[float]:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        wait_s = float(value)
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
    return max(0.0, wait_s) if math.isfinite(wait_s) else None


def _token_count(value: Any) -> Optional[int]:
    """A usage value as a count: a non-negative int (or integral float) no larger than any real
    request's (MAX_USAGE_TOKENS), else None (broken): 10**30 would overflow the trace table."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return value if 0 <= value <= MAX_USAGE_TOKENS else None
    return None


class _Answer(NamedTuple):
    status: int
    headers: Any  # httpx.Headers
    body: bytes  # an error answer's body may be cut at _ERROR_BODY_BYTES
    reason: str


class _Output(NamedTuple):
    """One choice of an answer, read but not yet tokenized."""
    text: str
    reasoning: Optional[str]
    finish: str
    token_ids: Any  # the server's raw `token_ids`, checked later


class OpenAIEngine:
    name = "openai"

    def __init__(self, model: ModelConfig, weights: ResolvedWeights, settings: OpenAIEngineConfig):
        import httpx

        if settings.api not in ("chat", "completions"):
            raise EngineError(f"engine.api={settings.api!r}: use 'chat' (/chat/completions with messages) "
                              "or 'completions' (/completions with the rendered prompt).")
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
        self._model = model
        self._weights = weights
        self._settings = settings
        self._base = settings.base_url.rstrip("/")
        self._shown = display_url(settings.base_url)
        self.version = f"openai-api@{self._shown}"
        self._served = settings.served_model or model.hf_id
        self._path = "/chat/completions" if settings.api == "chat" else "/completions"
        self._where = self._shown + self._path  # the endpoint as errors name it (no credentials)
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
        self._tok = None  # loaded on first need: prompt counts without usage, EOS ids to strip
        self._stop_ids: FrozenSet[int] = frozenset()
        self._tok_lock = threading.Lock()
        self._longest_token: Optional[int] = None
        self._warned: Set[str] = set()

    # ---------------------------------------------------------------- public

    def generate(self, requests: Sequence[Request], sampling: SamplingConfig, max_tokens: int,
                 on_result: OnResult) -> None:
        if not requests:
            return
        if self._settings.request_token_ids:
            self._tokenizer()  # load once here, not in n racing threads
        stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=max(1, min(self._settings.concurrency, len(requests))),
                                  thread_name_prefix="openai-engine")
        futures: Dict[Future, Request] = {pool.submit(self._one, r, sampling, max_tokens, stop): r
                                          for r in requests}
        pending = set(futures)
        failures: List[BaseException] = []
        delivered = 0
        limit = self._settings.job_deadline_s
        ends = time.monotonic() + limit if limit else None
        try:
            while pending:
                if ends is not None and time.monotonic() > ends and not stop.is_set():
                    # running requests end by their own deadline; queued ones never start
                    failures.append(EngineError(
                        f"engine.job_deadline_s={limit:g}s passed with {len(pending)} request(s) unfinished. Raise "
                        "it (or set it to null for no limit), or lower engine.max_tokens' cost; rerunning continues."))
                    stop.set()
                    for other in pending:
                        other.cancel()
                done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for fut in done:
                    if fut.cancelled():
                        continue
                    err = fut.exception()
                    if err is None:
                        on_result(futures[fut].index, fut.result())
                        delivered += 1
                    elif not isinstance(err, _Stopped):
                        failures.append(err)
                        if not stop.is_set():  # no new requests or retries; running ones may still finish
                            stop.set()
                            for other in pending:
                                other.cancel()
        except BaseException:  # Ctrl-C, or on_result itself failed: leave without waiting
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        if failures:
            first = failures[0]
            if not isinstance(first, EngineError):
                raise first  # a bug: keep its traceback
            note = (f" ({len(failures) - 1} other request(s) failed too.)" if len(failures) > 1 else "")
            raise EngineError(f"{first}{note} {delivered} of {len(requests)} request(s) finished and were "
                              "kept; rerunning the job generates only the rest.") from None

    def close(self) -> None:
        self._client.close()

    # ---------------------------------------------------------------- one request

    def _body(self, req: Request, sampling: SamplingConfig, max_tokens: int) -> Dict[str, Any]:
        greedy = sampling.temperature == 0.0
        body: Dict[str, Any] = {"model": self._served}
        if self._settings.api == "chat":
            body["messages"] = chat_messages(self._model, req.prompt)
        else:
            body["prompt"] = req.rendered
        body.update(temperature=sampling.temperature, top_p=1.0 if greedy else sampling.top_p,
                    max_tokens=max_tokens, n=sampling.n)
        if not greedy:
            body["seed"] = sampling.seed
        if self._settings.request_token_ids:
            body["return_token_ids"] = True
        for key, value in dict(self._settings.extra_body or {}).items():
            if value is None:
                body.pop(key, None)  # extra_body `key: null` removes a field the server rejects
            else:
                body[key] = value
        return body

    def _one(self, req: Request, sampling: SamplingConfig, max_tokens: int,
             stop: threading.Event) -> List[Generation]:
        body = self._body(req, sampling, max_tokens)
        cap = max(_MIN_BODY_BYTES, _BODY_BYTES_PER_TOKEN * (max_tokens or 0) * max(1, sampling.n))
        data, latency = self._post(body, req, stop, cap)
        return self._parse(data, req, sampling.n, max_tokens, latency)

    # ---------------------------------------------------------------- server text: mask, then cut

    def _mask(self, text: str) -> str:
        return mask(text, [self._key])

    def _quote(self, text: Any, limit: int = _MAX_MESSAGE) -> str:
        """Server-controlled text as our messages may show it: masked first, then cut (cutting
        first could leave a prefix of the key that exact masking no longer recognizes)."""
        return _truncate(self._mask(str(text)), limit)

    def _fail(self, message: str) -> EngineError:
        return EngineError(self._mask(message))  # every piece is masked already; this is the last guard

    def _warn_once(self, what: str, message: str, *args: Any) -> None:
        if what not in self._warned:  # a race at worst repeats one warning
            self._warned.add(what)
            log.warning(message, *args)

    def _server_message(self, ans: _Answer) -> str:
        """The error message a server put in its body (OpenAI, vLLM and FastAPI shapes), else the raw text."""
        text = ans.body.decode("utf-8", errors="replace")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            return self._quote(text or ans.reason or "")
        if isinstance(data, dict):
            err = data.get("error")
            if isinstance(err, dict) and err.get("message"):
                return self._quote(err["message"])
            for key in ("error", "message", "detail"):
                if isinstance(data.get(key), str):
                    return self._quote(data[key])
        return self._quote(text)

    # ---------------------------------------------------------------- HTTP

    def _exchange(self, url: str, body: Dict[str, Any], cap: int, deadline: float, req: Request) -> _Answer:
        """One POST, its body read in chunks: at most `cap` bytes of a success (more is an
        EngineError), _ERROR_BODY_BYTES of an error, all before the deadline."""
        httpx = self._httpx
        http_deadline.current.at = deadline
        try:
            with self._client.stream("POST", url, json=body) as resp:
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
        return self._fail(
            f"{self._where} {what} in answer to request {req.index}, more than the {cap / 2 ** 20:.0f} MiB "
            "allowed for this request's max_tokens and sampling.n: the server ignores max_tokens or is not "
            "an OpenAI-compatible API. Check engine.base_url and the server.")

    def _timeout_text(self, exc: Exception, deadline: float) -> str:
        if time.monotonic() >= deadline - 0.05:
            return (f"not finished within {self._deadline_label}, the limit on the whole request (connect, "
                    "send and every read): the server is too slow or trickles its answer")
        return f"no answer within engine.timeout_s={self._settings.timeout_s}s ({type(exc).__name__})"

    def _post(self, body: Dict[str, Any], req: Request, stop: threading.Event, cap: int) -> Tuple[Any, float]:
        httpx = self._httpx
        s = self._settings
        url = self._base + self._path
        attempts = max(0, s.max_retries) + 1
        last = ""  # masked: it reaches the log below and the final error
        unreachable = False
        for attempt in range(attempts):
            if stop.is_set():
                raise _Stopped()
            wait_s: Optional[float] = None
            began = time.perf_counter()
            deadline = time.monotonic() + self._deadline_s
            try:
                ans = self._exchange(url, body, cap, deadline, req)
            except httpx.TimeoutException as exc:
                last = self._timeout_text(exc, deadline)
                unreachable = isinstance(exc, httpx.ConnectTimeout)
            except httpx.RequestError as exc:  # refused, reset, cut mid-body, protocol or decoding errors
                last = f"{type(exc).__name__}: {self._quote(exc)}"
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
                raise _Stopped()
        if unreachable:
            raise self._fail(
                f"could not reach the server at {self._shown} after {attempts} attempt(s) "
                f"(last error: {last}). Start the server (e.g. `vllm serve <model> --port 8000`) "
                "or fix engine.base_url.")
        raise self._fail(
            f"request {req.index} to {self._where} failed after {attempts} attempt(s) (last error: {last}). "
            "The server is failing or overloaded: check its logs, lower engine.concurrency, or raise "
            "engine.max_retries / engine.backoff_max_s / engine.timeout_s / engine.request_deadline_s.")

    def _refused(self, ans: _Answer, req: Request) -> EngineError:
        env = self._settings.api_key_env
        how = (f"set the environment variable {env} to a valid API key" if env and not self._key
               else f"check the API key in the environment variable {env}" if env
               else "set engine.api_key_env to the name of an environment variable holding the key")
        return self._fail(f"{self._where} refused request {req.index} with HTTP {ans.status} "
                          f"({self._server_message(ans)}): {how}.")

    def _rejected(self, ans: _Answer, req: Request) -> EngineError:
        message = self._server_message(ans)
        hint = ""
        if ans.status == 404:
            hint = (f" Is engine.served_model (now {self._served!r}) the name the server lists at "
                    f"{self._shown}/models?")
        elif _WANTS_STREAMING.search(message):
            hint = " The server seems to accept only streaming requests. " + self._stream_fix()
        return self._fail(f"{self._where} rejected request {req.index} with HTTP {ans.status}: {message}.{hint}")

    def _stream_fix(self) -> str:
        fix = ("cogdistill sends non-streaming requests (no `stream: true`) and needs one JSON answer: check "
               "engine.base_url and the server's settings")
        if (self._settings.extra_body or {}).get("stream"):
            fix += ", and remove `stream` from engine.extra_body"
        return fix + "."

    def _json(self, ans: _Answer, req: Request) -> Any:
        """The JSON of a successful answer; a stream, bad UTF-8 or non-JSON is an EngineError."""
        what = f"{self._where} answered request {req.index} with HTTP {ans.status}"
        content_type = ans.headers.get("content-type", "")
        if content_type.startswith("text/event-stream") or ans.body.lstrip().startswith((b"data:", b"event:")):
            raise self._fail(f"{what} as a stream of server-sent events ({self._quote(content_type, 60)}), "
                             f"not one JSON object. {self._stream_fix()}")
        try:
            text = ans.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self._fail(f"{what} but a body that is not valid UTF-8 (byte {exc.start} of {len(ans.body)}); "
                             "JSON answers must be UTF-8. Is engine.base_url an OpenAI-compatible API?") from None
        try:
            return json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
            raise self._fail(
                f"{what} but a body that is not JSON ({self._quote(text, 120)!r}). Is engine.base_url an "
                "OpenAI-compatible API (it usually ends in /v1)?") from None

    # ---------------------------------------------------------------- responses

    def _parse(self, data: Any, req: Request, n: int, max_tokens: int, latency: float) -> List[Generation]:
        def bad(what: str) -> EngineError:
            return self._fail(f"{self._where} gave an unusable answer to request {req.index} "
                              f"(prompt {_truncate(req.prompt, 60)!r}): {what}. Is engine.api={self._settings.api!r} "
                              "right for this server?")

        if not isinstance(data, dict):
            raise bad(f"expected a JSON object, got {type(data).__name__}")
        choices = data.get("choices")
        if not isinstance(choices, list):
            err = data.get("error")  # some servers report errors with HTTP 200
            said = err.get("message") if isinstance(err, dict) else err
            raise bad("the field `choices` is missing" + (f"; the server says: {self._quote(said)}" if said else ""))
        if not choices:
            raise bad("`choices` is empty: the server generated nothing for this request")
        if len(choices) != n:
            hint = " (does the server support sampling.n > 1?)" if n > 1 else ""
            raise bad(f"{len(choices)} choices for n={n}{hint}")
        if not all(isinstance(c, dict) for c in choices):
            raise bad("`choices` holds something other than objects")
        if all(isinstance(c.get("index"), int) for c in choices):
            choices = sorted(choices, key=lambda c: c["index"])
        outputs = [self._output(choice, i, bad) for i, choice in enumerate(choices)]
        usage = self._usage(data.get("usage"))
        self._check_budget(req, usage, outputs, n, max_tokens)  # before tokenizing anything
        prompt_tokens = usage.get("prompt_tokens")
        if prompt_tokens is None:
            prompt_tokens = self._count(req.rendered)
        if n > 1 and "completion_tokens" in usage:
            # The server counts all n choices together; one generation's share is unknown.
            usage = {("request_" + k if k in ("completion_tokens", "total_tokens", "reasoning_tokens") else k): v
                     for k, v in usage.items()}
        gens: List[Generation] = []
        for out in outputs:
            text = out.text
            token_ids = self._token_ids(out.token_ids, bad)
            if token_ids is not None and out.reasoning is None:
                # The text must be what these ids decode to (traces.records splits by decoding id prefixes);
                # a server's own detokenizer can differ, e.g. it holds back a trailing partial UTF-8 byte.
                text = self._decode(token_ids)
            gens.append(self._masked(req, Generation(
                text=text, token_ids=token_ids, prompt_tokens=int(prompt_tokens), finish_reason=out.finish,
                latency_s=latency, reasoning_text=out.reasoning, usage=dict(usage) or None)))
        return gens

    def _output(self, choice: Dict[str, Any], i: int, bad) -> _Output:
        finish = "length" if choice.get("finish_reason") == "length" else "stop"
        if self._settings.api != "chat":
            text = choice.get("text")
            if not isinstance(text, str):
                raise bad(f"the field `choices[{i}].text` is missing or not text "
                          f"({self._quote(repr(text), 60)})")
            return _Output(text, None, finish, choice.get("token_ids"))
        msg = choice.get("message")
        if not isinstance(msg, dict):
            raise bad(f"the field `choices[{i}].message` is missing")
        reasoning = next((msg[f] for f in ("reasoning_content", "reasoning") if isinstance(msg.get(f), str)), None)
        if "content" not in msg:
            raise bad(f"the field `choices[{i}].message.content` is missing")
        text = msg["content"]
        if text is None and (reasoning is not None or finish == "length"):
            text = ""  # cut (or ended) inside the reasoning: no answer
        if not isinstance(text, str):
            raise bad(f"`choices[{i}].message.content` is {self._quote(repr(text), 60)}, not text")
        return _Output(text, reasoning, finish, choice.get("token_ids"))

    def _usage(self, raw: Any) -> Dict[str, int]:
        """The server's token accounting. A value that is no count (NaN, Infinity, negative, text,
        more than MAX_USAGE_TOKENS)
        means the server's accounting is broken: all of it is ignored (our own counts are used
        instead), and a warning says so once."""
        if not isinstance(raw, dict):
            return {}
        values = {k: raw.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
        details = raw.get("completion_tokens_details")
        if isinstance(details, dict):
            values["reasoning_tokens"] = details.get("reasoning_tokens")
        usage = {k: _token_count(v) for k, v in values.items() if v is not None}
        broken = [f"{k}={self._quote(repr(values[k]), 40)}" for k, v in usage.items() if v is None]
        if broken:
            self._warn_once("usage", "openai engine: %s sent token usage that is not a count (%s); its usage is "
                            "ignored and cogdistill counts tokens itself.", self._shown, ", ".join(broken))
            return {}
        return usage  # type: ignore[return-value]

    def _check_budget(self, req: Request, usage: Dict[str, int], outputs: List[_Output], n: int,
                      max_tokens: int) -> None:
        """Refuse an answer longer than max_tokens allows: the server ignores max_tokens, and its
        output must not become a huge 'complete' cost. Judged on lengths alone, before anything
        is tokenized (tokenizing millions of characters would take minutes).

        A server count above max_tokens with a text that can fit is only warned about: some APIs
        count reasoning outside max_tokens, and a count may simply be wrong; the generation is
        kept with the server's usage, and traces.trace_row compares both counts (and censors a
        generation we count over max_tokens as "overlong")."""
        if not max_tokens:
            return
        fix = ("the server ignores max_tokens: check that it honours `max_tokens` (an API that wants "
               "`max_completion_tokens` can get it through engine.extra_body) and that engine.base_url is "
               "the server you meant")
        for i, out in enumerate(outputs):
            ids = out.token_ids
            if isinstance(ids, list) and len(ids) > max_tokens + 1:  # + 1: the stop token a server may keep
                raise self._fail(f"{self._where} answered request {req.index} with {len(ids)} token ids in "
                                 f"choice {i}, more than max_tokens={max_tokens}; {fix}.")
            chars = len(out.text) + len(out.reasoning or "")
            if chars > max_tokens * _MIN_CHARS_PER_TOKEN and chars > max_tokens * self._chars_per_token():
                raise self._fail(
                    f"{self._where} answered request {req.index} with {chars:,} characters in choice {i} "
                    f"(the server counted {usage.get('completion_tokens', 'no')} completion tokens), more than "
                    f"max_tokens={max_tokens} tokens can hold (at most {self._chars_per_token()} characters "
                    f"each with this model's tokenizer); {fix}.")
        counted = usage.get("completion_tokens")
        if counted is not None and counted > max_tokens * n:
            self._warn_once("usage-over-budget", "openai engine: %s counted %d completion tokens for request %d "
                            "with max_tokens=%d (%d sample(s)); kept, and its traces compare that count with "
                            "cogdistill's (token_count_mismatch, finish_reason 'overlong').",
                            self._shown, counted, req.index, max_tokens, n)

    def _masked(self, req: Request, gen: Generation) -> Generation:
        """gen without the API key in its texts (an echoing server must not put it in the cache or
        the traces). Its token ids encode the key too: they are dropped, and traces count the
        masked text instead (the counts become approximate; the key never stored)."""
        text, reasoning = self._mask(gen.text), None if gen.reasoning_text is None else self._mask(gen.reasoning_text)
        if text == gen.text and reasoning == gen.reasoning_text:
            return gen
        self._warn_once("key-in-answer", "openai engine: the answer to request %d held the API key (or part of "
                        "it); it is masked in the stored text (further answers are masked silently).", req.index)
        return dataclasses.replace(gen, text=text, reasoning_text=reasoning, token_ids=None)

    def _token_ids(self, raw: Any, bad) -> Optional[Tuple[int, ...]]:
        if not self._settings.request_token_ids or not isinstance(raw, list) \
                or not all(isinstance(t, int) and not isinstance(t, bool) for t in raw):
            return None  # not asked for, or the server ignores return_token_ids: traces re-tokenize the text
        ids = list(raw)
        tok = self._tokenizer()
        vocab = len(tok)
        outside = next((t for t in ids if not 0 <= t < vocab), None)
        if outside is not None:
            raise bad(f"token id {self._quote(outside, 40)} is outside the tokenizer's vocabulary (size {vocab}): "
                      f"does engine.served_model ({self._served!r}) serve this model config's weights?")
        return tuple(strip_stop_tokens(ids, self._stop_ids))  # the server keeps the EOS it stopped on

    def _chars_per_token(self) -> int:
        """The most characters one token can decode to: its longest vocabulary entry (byte-level
        and SentencePiece entries are at least as long as the text they decode to), plus one for
        a decoder that joins tokens with a space; never below _MIN_CHARS_PER_TOKEN."""
        if self._longest_token is None:
            tok = self._tokenizer()
            with self._tok_lock:
                self._longest_token = max(map(len, tok.get_vocab()), default=0) + 1
        return max(_MIN_CHARS_PER_TOKEN, self._longest_token)

    def _count(self, text: str) -> int:
        tok = self._tokenizer()
        with self._tok_lock:  # one thread at a time inside the Rust tokenizer
            return len(tok.encode(text, add_special_tokens=False))

    def _decode(self, ids: Sequence[int]) -> str:
        tok = self._tokenizer()
        with self._tok_lock:
            return tok.decode(list(ids), skip_special_tokens=True)

    def _tokenizer(self):
        with self._tok_lock:
            if self._tok is None:
                tok = load_tokenizer(self._model, self._weights)
                self._stop_ids = stop_token_ids(tok, self._weights)
                self._tok = tok
            return self._tok
