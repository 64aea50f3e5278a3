"""Shared fixtures: a random-weight tiny model, a small human-data mirror, Hydra composition."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path
from typing import List

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MIRROR = REPO.parent / "shared" / "reference-data"
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def real_mirror() -> Path | None:
    env = os.environ.get("COGDISTILL_DATA_MIRROR")
    for candidate in (Path(env) if env else None, SHARED_MIRROR):
        if candidate and (candidate / "soh-multiplication" / "consolidated_mult_data.csv").is_file():
            return candidate
    return None


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


def write_mult_trials(path: Path, problems: List[tuple], trials_per_item: int = 12, seed: int = 0) -> None:
    """Trial rows in the soh-multiplication layout; RT grows with the product."""
    rng = random.Random(seed)
    lines = ["typedAnswer,multiplyRT,multiplyCorr,problem,OperandType,productType,participant,group"]
    for a, b in problems:
        for t in range(trials_per_item):
            correct = 1 if t % 6 else 0
            rt = 0.8 + 0.05 * a * b + rng.random() * 0.3
            lines.append(f"{a * b if correct else a * b + 1},{rt:.4f},{correct},{a} x {b} =,smallFirst,smallProd,{1000 + t},ABC")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


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


def compose(overrides: List[str]):
    from hydra import compose as hydra_compose, initialize_config_dir

    from cogdistill.config.schema import CONF_DIR
    from cogdistill.config.validate import register_schemas

    register_schemas()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


R_PACKAGES_APT = "apt-get install -y r-base-core r-cran-metafor r-cran-lme4 r-cran-psych r-cran-jsonlite"


def require_r(*packages: str) -> None:
    """Skip a test that checks a statistic against R where R or a package is missing; in CI
    (COGDISTILL_REQUIRE_R=1, set by .ci/run, which installs them) fail instead: an external
    reference that silently never runs checks nothing."""
    import shutil
    import subprocess

    missing = "Rscript" if shutil.which("Rscript") is None else None
    if missing is None and packages:
        names = ", ".join(f'"{p}"' for p in packages)
        probe = subprocess.run(["Rscript", "-e", f"cat(all(sapply(c({names}), requireNamespace, quietly = TRUE)))"],
                               capture_output=True, text=True, timeout=60, check=False)
        missing = None if probe.stdout.strip() == "TRUE" else f"R package(s) {list(packages)}"
    if missing:
        (pytest.fail if os.environ.get("COGDISTILL_REQUIRE_R") else pytest.skip)(f"{missing} missing: {R_PACKAGES_APT}")
