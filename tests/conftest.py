"""Shared fixtures: a random-weight tiny model, a small human-data mirror, Hydra config folders, an
isolated store, the openai engine's fake servers, a replay task, a real `mlflow server`.

Plain helpers live in tests/helpers/ (`from helpers.<module> import name`), never in a test file or here.
Markers (pyproject.toml): `slow` (over ~10 s on 2 cores), `integration` (a real model, server or browser);
`make test-fast` deselects both.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import List

import pytest

pytest.register_assert_rewrite("helpers")

from helpers.data import write_mult_trials  # noqa: E402 (after register_assert_rewrite)

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random-weight Llama with a real BPE tokenizer and a chat template, saved like a hub model."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("tiny-model")
    corpus = [f"{a} x {b} = {a * b}. The answer is {a * b}. <think> let me think </think>" for a in range(2, 10)
              for b in range(2, 10)] + ["Solve this multiplication problem step by step then answer"] * 5
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<unk>", "<pad>", "<eos>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=fast.vocab_size if hasattr(fast, "vocab_size") else 300,
                         hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, bos_token_id=None)
    config.vocab_size = len(fast)
    LlamaForCausalLM(config).save_pretrained(out)
    return out


@pytest.fixture
def mult_mirror(tmp_path) -> tuple[Path, str]:
    """A data mirror holding a small synthetic multiplication file; returns (mirror, sha256)."""
    mirror = tmp_path / "mirror"
    csv = mirror / "soh-multiplication" / "consolidated_mult_data.csv"
    write_mult_trials(csv, [(2, 3), (3, 4), (4, 6), (6, 7), (7, 8), (8, 9)])
    return mirror, hashlib.sha256(csv.read_bytes()).hexdigest()


@pytest.fixture
def tiny_conf(tmp_path, tiny_model_dir) -> Path:
    """An extra Hydra config folder with a model config for the tiny random model."""
    conf = tmp_path / "extra-conf"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "tiny-random.yaml").write_text(
        "name: tiny-random\nhf_id: local/tiny-random\nrole: control\nfamily: test\nengine: transformers\n"
        f"weights:\n  source: local\n  path: {tiny_model_dir}\nchat: true\nthink_start: null\n"
        "think_end: null\nmax_tokens: 12\ndtype: float32\n"
    )
    return conf


@pytest.fixture
def tiny_pair_conf(tiny_conf) -> Path:
    """tiny_conf plus a second model, tiny-random-b (same weights), for sweeps over two models."""
    text = (tiny_conf / "model" / "tiny-random.yaml").read_text()
    (tiny_conf / "model" / "tiny-random-b.yaml").write_text(text.replace("name: tiny-random", "name: tiny-random-b"))
    return tiny_conf


@pytest.fixture
def isolated_env(tmp_path, monkeypatch) -> Path:
    """Tracking store, cache and Hydra outputs in tmp_path, never the user's."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    monkeypatch.setenv("COGDISTILL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("COGDISTILL_OUTPUT_DIR", str(tmp_path / "outputs"))
    return tmp_path


@pytest.fixture
def serve():
    """serve(script) -> a FakeServer (an OpenAI-compatible server on 127.0.0.1); all closed at the end."""
    from helpers.openai_server import FakeServer

    servers: List[FakeServer] = []

    def start(script) -> FakeServer:
        servers.append(FakeServer(script))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


@pytest.fixture(scope="module")
def tiny(tiny_model_dir, tmp_path_factory):
    """(config, resolved weights, tokenizer) of the tiny random model, for the openai engine."""
    from helpers.openai_server import resolved_tiny

    return resolved_tiny(tiny_model_dir, tmp_path_factory.mktemp("cache"))


@pytest.fixture
def task(mult_mirror, tmp_path):
    """The multiplication task loaded from mult_mirror (items IDS of helpers.traces)."""
    from cogdistill.tasks.load import load_task
    from helpers.tasks import mult_config

    mirror, sha = mult_mirror
    return load_task(mult_config(sha), mirror=str(mirror), cache=tmp_path / "cache", timeout_s=1)


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` over a sqlite store in tmp_path; yields its URL."""
    from helpers.mlflow_server import serve_mlflow

    with serve_mlflow(["server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                       "--artifacts-destination", str(tmp_path / "server-artifacts")],
                      tmp_path / "mlflow-server.log") as url:
        yield url


@pytest.fixture
def tmpfs(tmp_path):
    """mount(name, size) -> a fresh tmpfs folder (tests/test_store_boundaries.py, test_hostile_stores.py: a
    full or read-only disk); skipped where this process may not mount (not root)."""
    import subprocess

    mounted = []

    def mount(name: str, size: str = "4m") -> Path:
        where = tmp_path / name
        where.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if proc.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'mount failed'}): needs root")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
