"""Run an engine in a fresh child process, streaming results back as they finish.

vLLM keeps memory after `del llm`, so each job's model lives and dies in its own process.
The child is spawned (not forked: a forked child would inherit the parent's threads and
CUDA/torch state). A child that dies without a word is reported with its exit code, and
everything it finished before dying has already reached the parent, and its cache.

The child never outlives the job: it ignores SIGINT (a Ctrl-C reaches the whole process group;
the parent decides), it is killed when the parent's job is interrupted (SIGINT/SIGTERM reach the
parent as exceptions, see cogdistill/exits.py), and Linux kills it when the parent dies in any
way, SIGKILL included (PR_SET_PDEATHSIG). A model of several GB must not linger as an orphan.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import traceback
from typing import Any, Sequence

from cogdistill.config.schema import ModelConfig, SamplingConfig
from cogdistill.engines.base import EngineError, OnResult, Request
from cogdistill.errors import CogdistillError
from cogdistill.engines.weights import ResolvedWeights

_POLL_S = 1.0


def _failure(exc: BaseException) -> str:
    """What the parent reports: a user-facing error's message (no traceback), else the traceback of a bug."""
    return str(exc) if isinstance(exc, CogdistillError) else traceback.format_exc()


def _worker(name, model, weights, settings, jobs, results) -> None:
    import signal

    from cogdistill.console import quiet_third_party
    from cogdistill.registry import ENGINES
    from cogdistill.exits import die_with_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(signal.SIGKILL)  # nothing here needs cleaning up: the parent holds every result
    quiet_third_party()
    try:
        engine = ENGINES.load(name)(model, weights, settings)  # the parent checked it is installed
        results.put(("ready", engine.version))
    except BaseException as exc:
        results.put(("error", _failure(exc)))
        return
    while True:
        job = jobs.get()
        if job is None:
            break
        requests, sampling, max_tokens = job
        try:
            engine.generate(requests, sampling, max_tokens, lambda i, gens: results.put(("result", (i, gens))))
            results.put(("done", None))
        except BaseException as exc:
            results.put(("error", _failure(exc)))
    engine.close()


class IsolatedEngine:
    def __init__(self, name: str, model: ModelConfig, weights: ResolvedWeights, settings: Any):
        self.name = name
        ctx = mp.get_context("spawn")
        self._jobs = ctx.Queue()
        self._results = ctx.Queue()
        self._proc = ctx.Process(target=_worker, args=(name, model, weights, settings, self._jobs, self._results),
                                 daemon=True, name=f"cogdistill-{name}")
        self._proc.start()
        try:
            kind, payload = self._next("starting")
        except BaseException:
            self.kill()
            raise
        if kind == "error":
            self._proc.join(timeout=10)
            raise EngineError(f"engine '{name}' failed to start for model '{model.name}':\n{payload}")
        self.version = payload

    def _next(self, doing: str):
        while True:
            try:
                return self._results.get(timeout=_POLL_S)
            except queue.Empty:
                if not self._proc.is_alive():
                    raise EngineError(
                        f"engine '{self.name}' process died while {doing} (exit code {self._proc.exitcode}); "
                        "results it finished before are kept. Out of memory is the usual cause: lower "
                        "the batch or KV-cache size, or max_model_len."
                    ) from None

    def generate(self, requests: Sequence[Request], sampling: SamplingConfig, max_tokens: int,
                 on_result: OnResult) -> None:
        self._jobs.put((list(requests), sampling, max_tokens))
        try:
            while True:
                kind, payload = self._next("generating")
                if kind == "result":
                    on_result(*payload)
                elif kind == "done":
                    return
                else:
                    raise EngineError(f"engine '{self.name}' failed while generating:\n{payload}")
        except BaseException:  # a signal or an error: the child may be mid-batch, so don't wait for it
            self.kill()
            raise

    def kill(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()
        self._proc.join(timeout=30)

    def close(self) -> None:
        if self._proc.is_alive():
            self._jobs.put(None)
            self._proc.join(timeout=60)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
