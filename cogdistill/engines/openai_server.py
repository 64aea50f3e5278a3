"""Any OpenAI-compatible server: your own `vllm serve` or a hosted API, over plain HTTP (httpx).

`api: chat` posts the user prompt (and the model's system prompt) to /chat/completions and
lets the server apply its chat template; `api: completions` posts the exact rendered text to
/completions, so the server sees what the local engines see. A server that splits reasoning
out (`message.reasoning_content` or `message.reasoning`) has that split used as is.

Requests run `concurrency` at a time; each request's results reach on_result (in the calling
thread) as soon as it finishes, so a failure later on loses nothing already generated.

This module is the engine: a request body from a prompt, the answer checked against the
request's budget, Generations counted with the model's tokenizer. The HTTP side (retries,
deadlines, body caps, the API key masked in all a server sends back) is
engines/openai_transport.py; reading an answer's choices and usage, engines/openai_response.py.
The server is not trusted here either: an answer longer than max_tokens allows is refused before
anything is tokenized, the API key is masked out of the texts that reach the generation cache and
the traces, and every malformed answer is an EngineError that names the request and the fix.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Set, Tuple

from cogdistill.config.schema import ModelConfig, OpenAIEngineConfig, SamplingConfig
from cogdistill.engines import openai_response as response
from cogdistill.engines.base import EngineError, Generation, OnResult, Request
from cogdistill.engines.openai_response import Output
from cogdistill.engines.openai_transport import Stopped, Transport, body_cap, truncate
from cogdistill.engines.tokenizer import chat_messages, load_tokenizer, stop_token_ids, strip_stop_tokens
from cogdistill.engines.weights import ResolvedWeights

log = logging.getLogger(__name__)

# No token of a real vocabulary decodes to more characters than its longest entry (see
# _chars_per_token); this floor keeps a mismatched local tokenizer from refusing real answers.
_MIN_CHARS_PER_TOKEN = 32


class OpenAIEngine:
    name = "openai"

    def __init__(self, model: ModelConfig, weights: ResolvedWeights, settings: OpenAIEngineConfig):
        if settings.api not in ("chat", "completions"):
            raise EngineError(f"engine.api={settings.api!r}: use 'chat' (/chat/completions with messages) "
                              "or 'completions' (/completions with the rendered prompt).")
        self._model = model
        self._weights = weights
        self._settings = settings
        self._served = settings.served_model or model.hf_id
        self._http = Transport(settings, "/chat/completions" if settings.api == "chat" else "/completions",
                               self._served)
        self._shown = self._http.shown
        self._where = self._http.where
        self.version = f"openai-api@{self._shown}"
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
                    elif not isinstance(err, Stopped):
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
        self._http.close()

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
        data, latency = self._http.post(body, req, stop, body_cap(max_tokens, sampling.n))
        return self._parse(data, req, sampling.n, max_tokens, latency)

    def _warn_once(self, what: str, message: str, *args: Any) -> None:
        if what not in self._warned:  # a race at worst repeats one warning
            self._warned.add(what)
            log.warning(message, *args)

    # ---------------------------------------------------------------- responses

    def _parse(self, data: Any, req: Request, n: int, max_tokens: int, latency: float) -> List[Generation]:
        def bad(what: str) -> EngineError:
            return self._http.fail(f"{self._where} gave an unusable answer to request {req.index} "
                                   f"(prompt {truncate(req.prompt, 60)!r}): {what}. Is engine.api="
                                   f"{self._settings.api!r} right for this server?")

        outputs = response.outputs(data, n, self._settings.api == "chat", bad, self._http.quote)
        usage, broken = response.usage(data.get("usage"), self._http.quote)
        if broken:
            self._warn_once("usage", "openai engine: %s sent token usage that is not a count (%s); its usage is "
                            "ignored and cogdistill counts tokens itself.", self._shown, ", ".join(broken))
        self._check_budget(req, usage, outputs, n, max_tokens)  # before tokenizing anything
        prompt_tokens = usage.get("prompt_tokens")
        if prompt_tokens is None:
            prompt_tokens = self._count(req.rendered)
        usage = response.per_generation(usage, n)
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

    def _check_budget(self, req: Request, usage: Dict[str, int], outputs: List[Output], n: int,
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
                raise self._http.fail(f"{self._where} answered request {req.index} with {len(ids)} token ids in "
                                      f"choice {i}, more than max_tokens={max_tokens}; {fix}.")
            chars = len(out.text) + len(out.reasoning or "")
            if chars > max_tokens * _MIN_CHARS_PER_TOKEN and chars > max_tokens * self._chars_per_token():
                raise self._http.fail(
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
        mask = self._http.mask
        text, reasoning = mask(gen.text), None if gen.reasoning_text is None else mask(gen.reasoning_text)
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
            raise bad(f"token id {self._http.quote(outside, 40)} is outside the tokenizer's vocabulary (size {vocab}): "
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
