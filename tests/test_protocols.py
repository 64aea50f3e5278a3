"""Reasoning protocols and effort (cogdistill.engines.protocols): the split and the counts of each
protocol on scripted text, effort plans, and budget forcing through a trace source, on exact numbers."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from cogdistill.config.schema import (Config, ConfigError, EffortConfig, ModelConfig, OpenAIEngineConfig, Role,
                                      SamplingConfig, TrackingConfig)
from cogdistill.engines.base import Generation
from cogdistill.engines.protocols import EffortPlan, protocol_for
from cogdistill.tasks.scorers import score_integer
from cogdistill.traces.records import trace_row
from helpers.scripted import ScriptedEngine, ScriptedTokenizer
from helpers.traces import CharTokenizer

TOK = CharTokenizer()


def model(protocol, **kw) -> ModelConfig:
    tags = {} if protocol in ("think_tags", "qwen3") else {"think_start": None, "think_end": None}
    return ModelConfig(name=f"m-{protocol}", hf_id="local/m", role=Role.control, family="t", protocol=protocol,
                       **{**tags, **kw})


def effort(name: str) -> EffortConfig:
    if name.startswith("budget="):
        return EffortConfig(name=name, budget=int(name.split("=")[1]))
    return EffortConfig(name=name, level=None if name == "default" else name)


def row(protocol, text, *, finish="stop", plan=None, ids=None, tokenizer=TOK, target="56", **kw):
    gen = Generation(text=text, token_ids=tuple(ids if ids is not None else tokenizer.encode(text)), prompt_tokens=3,
                     finish_reason=finish, latency_s=0.0, **kw)
    return trace_row(gen, tokenizer=tokenizer, protocol=protocol_for(model(protocol)), plan=plan or EffortPlan(),
                     score=lambda t: score_integer(t, target))


# ---- the split, per protocol ---------------------------------------------------------------------

@pytest.mark.parametrize("text", ["<think>7 x 8 is 56</think>The answer is 56.",  # model-opened (QwQ, Qwen3)
                                  "7 x 8 is 56</think>The answer is 56.",  # template-opened (R1-distill)
                                  "\n<think>7 x 8 is 56</think>The answer is 56."])
def test_think_tags_count_the_content_whoever_opened_the_block(text):
    r = row("think_tags", text)
    assert (r["reasoning_text"], r["answer_text"]) == ("7 x 8 is 56", "The answer is 56.")
    assert (r["reasoning_tokens"], r["answer_tokens"], r["total_tokens"]) == (11, 17, len(text))
    assert r["correct"] and not r["censored"] and r["cost_source"] == "counted"


def test_qwen3_thinking_off_is_all_answer_and_an_empty_block_costs_nothing():
    off = EffortPlan(effort="none", thinking=False)
    r = row("qwen3", "The answer is 56.", plan=off)
    assert (r["reasoning_tokens"], r["answer_tokens"], r["total_tokens"]) == (0, 17, 17) and r["correct"]
    empty = row("qwen3", "<think>\n\n</think>\n\nThe answer is 56.")  # a block the model closed at once
    assert empty["reasoning_tokens"] == 0 and empty["answer_text"].strip() == "The answer is 56."
    assert empty["total_tokens"] == len("<think>\n\n</think>\n\nThe answer is 56.")
    cut = row("qwen3", "<think>let me see, 7 x 8", finish="length")  # thinking on, cut: censored, no answer
    assert cut["censored"] and cut["answer_tokens"] == 0 and cut["reasoning_tokens"] == len("let me see, 7 x 8")
    cut_off = row("qwen3", "The answer is", finish="length", plan=off)  # thinking off: the response is the cost
    assert cut_off["censored"]


def test_server_reasoning_count_is_the_cost_and_is_marked_as_the_servers():
    r = row("server_count", "The answer is 56.", usage={"reasoning_tokens": 412, "completion_tokens": 429})
    assert (r["reasoning_tokens"], r["answer_tokens"], r["cost_source"]) == (412, 17, "server")
    assert r["usage_reasoning_tokens"] == 412 and r["correct"] and not r["token_count_mismatch"]
    with pytest.raises(Exception, match="no usage.completion_tokens_details.reasoning_tokens"):
        row("server_count", "The answer is 56.")


def test_a_server_split_is_used_as_given():
    r = row("think_tags", "The answer is 56.", ids=None, reasoning_text="7 x 8 is 56")
    assert (r["reasoning_tokens"], r["answer_tokens"]) == (11, 17)


# ---- harmony (gpt-oss), with the real encoding ----------------------------------------------------

@pytest.fixture(scope="module")
def harmony():
    from cogdistill.engines.protocols import harmony_encoding
    try:
        return harmony_encoding()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"gpt-oss's encoding cannot load ({exc}): make harmony-vocab")


def test_harmony_effort_goes_into_the_system_message(harmony):
    proto = protocol_for(model("harmony"))
    low = proto.render("What is 7 x 8?", proto.plan(effort("low")))
    high = proto.render("What is 7 x 8?", proto.plan(effort("high")))
    assert "Reasoning: low" in low and "Reasoning: high" in high
    assert low.endswith("<|start|>assistant") and "What is 7 x 8?" in low


def test_harmony_counts_channel_contents_not_headers(harmony):
    from cogdistill.engines.protocols import HarmonyTokenizer as _HarmonyTokenizer

    tok = _HarmonyTokenizer()
    reasoning, answer = "Seven eights are fifty-six.", "The answer is 56."
    out = (f"<|channel|>analysis<|message|>{reasoning}<|end|><|start|>assistant<|channel|>final<|message|>{answer}"
           "<|return|>")
    ids = harmony.encode(out, allowed_special="all")
    r = row("harmony", tok.decode(ids), ids=ids, tokenizer=tok)
    assert (r["reasoning_text"], r["answer_text"]) == (reasoning, answer)
    assert r["reasoning_tokens"] == len(harmony.encode(reasoning)) and r["answer_tokens"] == len(harmony.encode(answer))
    markup = len(ids) - r["reasoning_tokens"] - r["answer_tokens"]
    assert r["total_tokens"] == len(ids) and markup == 10  # 3 + 1 headers/ends + 6 for the final's header
    assert r["correct"] and not r["censored"]
    cut = harmony.encode(f"<|channel|>analysis<|message|>{reasoning}", allowed_special="all")
    c = row("harmony", tok.decode(cut), ids=cut, tokenizer=tok, finish="length")
    assert c["censored"] and c["answer_tokens"] == 0 and c["reasoning_tokens"] == len(harmony.encode(reasoning))


def test_harmony_text_without_ids_is_refused_with_the_fix(harmony):
    with pytest.raises(Exception, match="reasoning-parser openai_gptoss"):
        trace_row(Generation(text="The answer is 56.", token_ids=None, prompt_tokens=1, finish_reason="stop",
                             latency_s=0.0), tokenizer=TOK, protocol=protocol_for(model("harmony")),
                  score=lambda t: score_integer(t, "56"))


# ---- effort plans ---------------------------------------------------------------------------------

def test_each_protocol_maps_effort_as_it_can():
    qwen3 = protocol_for(model("qwen3"))
    assert qwen3.plan(effort("none")).template_kwargs == {"enable_thinking": False}
    assert qwen3.plan(effort("none")).request_fields == {"chat_template_kwargs": {"enable_thinking": False}}
    assert qwen3.plan(effort("budget=64")).budget == 64
    harmony = protocol_for(model("harmony"))
    assert harmony.plan(effort("medium")).prompt_level == "medium"
    assert harmony.plan(effort("medium")).request_fields == {"reasoning_effort": "medium"}
    assert protocol_for(model("server_count")).plan(effort("high")).request_fields == {"reasoning_effort": "high"}
    assert protocol_for(model("think_tags")).plan(effort("none")).budget == 0  # NoThinking: closed at once


@pytest.mark.parametrize("protocol,level,fix", [
    ("think_tags", "low", "effort=budget=<N>"), ("qwen3", "high", "effort=none"), ("harmony", "none", "always reasons"),
    ("plain", "budget=32", "effort=default"), ("server_count", "budget=32", "reasoning_effort")])
def test_an_effort_a_protocol_cannot_apply_is_refused_with_the_fix(protocol, level, fix):
    with pytest.raises(ConfigError, match=re.escape(fix)):
        protocol_for(model(protocol)).plan(effort(level))


def test_budget_overrides_become_hydra_options():
    from cogdistill.config.overrides import effort_budgets

    assert effort_budgets(["effort=budget=32,budget=64", "model=x"]) == (["effort=budget_32,budget_64", "model=x"],
                                                                          [32, 64])
    assert effort_budgets(["effort=low,budget=0"]) == (["effort=low,budget_0"], [0])
    with pytest.raises(ConfigError, match="whole number of thinking tokens"):
        effort_budgets(["effort=budget=abc"])


def test_bad_budget_on_the_command_line_exits_2_with_one_line():
    out = subprocess.run([sys.executable, "-m", "cogdistill", "effort=budget=lots", "engine=dry"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "whole number of thinking tokens" in out.stderr + out.stdout
    assert "Traceback" not in out.stderr


# ---- budget forcing (s1) through a trace source ----------------------------------------------------

SCRIPTS = {"2x3": 5, "3x4": 8, "4x6": 20, "6x7": 30, "7x8": 40, "8x9": 60}  # thinking characters per item


def script_of(prompt: str) -> str:
    a, b = map(int, re.findall(r"\d+", prompt))
    return "<think>" + "a" * SCRIPTS[f"{a}x{b}"] + "</think>" + answer_of(prompt)


def answer_of(prompt: str) -> str:
    a, b = map(int, re.findall(r"\d+", prompt))
    return f"The answer is {a * b}."


def forced_traces(monkeypatch, tmp_path, task, effort_name, n=1, max_tokens=200):
    from cogdistill.traces import source

    engine = ScriptedEngine(script_of, answer_of)
    monkeypatch.setattr(source, "ModelTokenizer", ScriptedTokenizer)
    monkeypatch.setattr(source, "create_engine", lambda *a, **k: engine)
    m = model("think_tags")
    job = Config(model=m, engine=OpenAIEngineConfig(api="completions"), sampling=SamplingConfig(n=n),
                 tracking=TrackingConfig(enabled=False))
    plan = protocol_for(m).plan(effort(effort_name))
    weights = type("W", (), {"fingerprint": "w", "path": "-", "revision": None})()
    src = source.GeneratedTraces("scripted", "1", job, weights, None, max_tokens, tmp_path / "cache", plan, "m@x")
    from rich.progress import Progress

    with Progress(disable=True) as progress:
        return src.traces(task, progress), engine


def test_budget_forcing_cuts_thinking_at_the_budget_and_answers_after_the_close(monkeypatch, tmp_path, task):
    frame, engine = forced_traces(monkeypatch, tmp_path, task, "budget=20")
    got = {r["item_id"]: r for r in frame.iter_rows(named=True)}
    for item, think in SCRIPTS.items():
        r = got[item]
        # 20 tokens of budget: "<think>" (7) is markup, 13 are reasoning; a thought whose "</think>" (8)
        # does not fit is cut (a cut inside the tag completes the tag); 5 + 7 + 8 = 20 fits exactly
        assert r["reasoning_tokens"] == min(think, 13), item
        assert r["budget_hit"] is (think > 5), item
        assert r["correct"] and not r["censored"] and r["effort"] == "budget=20" and r["model"] == "m@x"
    assert engine.calls[0] == (20, 6)  # the thinking pass: every item, at the budget
    assert engine.calls[1] == (180, 6)  # the answers, in the rest of max_tokens (2x3's was cut by the budget)


def test_budget_zero_closes_the_block_at_once_and_effort_none_is_that(monkeypatch, tmp_path, task):
    frame, engine = forced_traces(monkeypatch, tmp_path, task, "none")
    assert frame["reasoning_tokens"].to_list() == [0] * 6 and frame["correct"].all()
    assert frame["budget_hit"].all() and engine.calls == [(200, 6)]  # no thinking pass at all


def test_budget_forcing_is_cached_per_pass(monkeypatch, tmp_path, task):
    first, _ = forced_traces(monkeypatch, tmp_path, task, "budget=20")
    again, engine = forced_traces(monkeypatch, tmp_path, task, "budget=20")
    assert engine.calls == [] and again.drop("latency_s").equals(first.drop("latency_s"))


# ---- an effort study through the real pipeline ------------------------------------------------------

@pytest.mark.slow  # three replayed jobs and the report: ~40 s
def test_a_replayed_effort_sweep_recovers_the_simulated_truth(tmp_path):
    import json
    from pathlib import Path

    from mlflow import MlflowClient

    from cogdistill.report.synthetic import EffortTruth, simulate_effort
    from helpers.report import replay_effort_sweep

    truth = EffortTruth(levels=("low", "medium", "high"), rho=(0.5, 0.5, 0.5), scale=(1.0, 2.0, 4.0))
    study = simulate_effort(n_items=200, seed=5, truth=truth, config="sim-oss")
    env, _ = replay_effort_sweep(tmp_path, study, "effort-sim", ["low", "medium", "high"])
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("effort-sim")
    jobs = client.search_runs([exp.experiment_id], "tags.`cogdistill.kind` = 'job'")
    assert sorted(r.data.tags["model"] for r in jobs) == ["sim-oss:high", "sim-oss:low", "sim-oss:medium"]
    assert {r.data.tags["effort"] for r in jobs} == {"low", "medium", "high"}
    assert {r.data.tags["config"] for r in jobs} == {"sim-oss"} and {r.info.run_name for r in jobs} == {
        "sim-oss:low", "sim-oss:medium", "sim-oss:high"}
    (parent,) = client.search_runs([exp.experiment_id], "tags.`cogdistill.kind` = 'sweep'")
    report = json.loads(Path(client.download_artifacts(parent.info.run_id, "report/report.json")).read_text())
    cell = report["effort_levels"]["sim-oss"]["task-0"]
    assert [lv["level"] for lv in cell["levels"]] == ["low", "medium", "high"]
    assert all(abs(lv["r"] - 0.5) < 0.15 for lv in cell["levels"]), cell["levels"]
    assert cell["bf01"] > 1 and "ceiling" in cell["ceiling_or_dial"]["verdict"]
    assert abs(cell["ceiling_or_dial"]["mean_delta"] - truth.expected_delta()) < 0.1
    metrics = client.get_run(parent.info.run_id).data.metrics
    assert metrics["report/effort/sim-oss/task-0/bf01"] == pytest.approx(cell["bf01"])
    assert "report/effort.png" in {a.path for a in client.list_artifacts(parent.info.run_id, "report/figures")} or \
        any(a.path.endswith("effort.png") for a in client.list_artifacts(parent.info.run_id, "report/figures"))


# ---- harmony: the in-suite split against vLLM's own harmony parser (what `vllm serve` returns for gpt-oss)

HARMONY_CASES = {
    "analysis, then final": "<|channel|>analysis<|message|>Seven eights are fifty-six.<|end|>"
                            "<|start|>assistant<|channel|>final<|message|>The answer is 56.<|return|>",
    "a preamble on commentary": "<|channel|>analysis<|message|>Seven eights.<|end|><|start|>assistant"
                                "<|channel|>commentary<|message|>Let me answer.<|end|><|start|>assistant"
                                "<|channel|>final<|message|>The answer is 56.<|return|>",
    "cut inside the analysis": "<|channel|>analysis<|message|>Seven eights are",
    "closed by budget forcing": "<|channel|>analysis<|message|>Seven eights are<|end|><|start|>assistant"
                                "<|channel|>final<|message|>56",
    "final only (budget 0)": "<|channel|>final<|message|>The answer is 56.<|return|>",
}


@pytest.mark.parametrize("case", sorted(HARMONY_CASES))
def test_harmony_split_matches_vllms_harmony_parser(harmony, case):
    """vLLM's gpt-oss serving path (vllm.parser.harmony.HarmonyParser with GptOssReasoningParser) on the
    same token ids: the same reasoning and answer texts, and its reasoning-token count is ours."""
    pytest.importorskip("vllm")
    from vllm.parser.harmony import HarmonyParser
    from vllm.reasoning.gptoss_reasoning_parser import GptOssReasoningParser

    from cogdistill.engines.protocols import HarmonyTokenizer as _HarmonyTokenizer

    class GptOssServing(HarmonyParser):  # what --reasoning-parser openai_gptoss selects
        reasoning_parser_cls = GptOssReasoningParser

    class NoVocab:  # the parsers read harmony ids, not the tokenizer's vocabulary
        def get_vocab(self):
            return {}

    ids = harmony.encode(HARMONY_CASES[case], allowed_special="all")
    reasoning, content, tools = GptOssServing(NoVocab()).parse("", None, model_output_token_ids=ids)
    tok = _HarmonyTokenizer()
    finish = "stop" if HARMONY_CASES[case].endswith("<|return|>") else "length"
    r = row("harmony", tok.decode(ids), ids=ids, tokenizer=tok, finish=finish)
    assert (r["reasoning_text"], r["answer_text"]) == (reasoning or "", content or "") and tools is None
    assert r["reasoning_tokens"] == GptOssServing(NoVocab()).count_reasoning_tokens(ids)


def test_budget_forcing_in_harmony_closes_the_analysis_and_opens_the_final_channel(monkeypatch, tmp_path, task,
                                                                                  harmony):
    """gpt-oss under budget=8 through a trace source, on the real o200k_harmony tokens: the analysis
    channel cut at the budget, closed by `<|end|><|start|>assistant<|channel|>final<|message|>`, the
    answer on the final channel; effort=low reaches the system message."""
    from rich.progress import Progress

    from cogdistill.engines.protocols import HarmonyTokenizer as _HarmonyTokenizer
    from cogdistill.traces import source

    m = model("harmony")
    proto, tok = protocol_for(m), _HarmonyTokenizer()
    thought = " ".join(["seven times eight"] * 6)
    header = "<|channel|>analysis<|message|>"

    def script(prompt):
        return f"{header}{thought}<|end|><|start|>assistant<|channel|>final<|message|>{answer_of(prompt)}<|return|>"

    for name, budget in (("budget=8", 8), ("low", None)):
        plan = proto.plan(effort(name))
        engine = ScriptedEngine(script, lambda p: answer_of(p) + "<|return|>", tok,
                                render=lambda p, plan=plan: proto.render(p, plan), stop="<|return|>")
        monkeypatch.setattr(source, "create_engine", lambda *a, **k: engine)
        job = Config(model=m, engine=OpenAIEngineConfig(api="completions"), sampling=SamplingConfig(),
                     tracking=TrackingConfig(enabled=False))
        weights = type("W", (), {"fingerprint": "w", "path": "-", "revision": None})()
        src = source.GeneratedTraces("scripted", "1", job, weights, None, 200, tmp_path / name, plan, f"oss:{name}")
        with Progress(disable=True) as progress:
            frame = src.traces(task, progress)
        content = len(harmony.encode(thought))
        if budget is None:  # effort=low: no forcing, the whole analysis, the system message says low
            assert "Reasoning: low" in proto.render("x", plan)
            assert frame["reasoning_tokens"].to_list() == [content] * 6 and frame["budget_hit"].is_null().all()
        else:  # the header's 3 tokens are markup: 5 content tokens fit in the budget of 8
            assert frame["reasoning_tokens"].to_list() == [budget - 3] * 6 and frame["budget_hit"].all()
        assert frame["correct"].all() and not frame["censored"].any()
        assert frame["answer_text"].to_list() == [answer_of(p) for p in task.prompts()]
