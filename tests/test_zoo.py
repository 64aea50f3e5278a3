"""The model zoo's links (conf/model/*.yaml) and the sft-vs-rl preset, read as plain YAML (no
Hydra composition, so the whole zoo is checked in well under a second)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import yaml

CONF = Path(__file__).resolve().parents[1] / "conf"
MODELS: Dict[str, dict] = {p.stem: yaml.safe_load(p.read_text()) for p in sorted((CONF / "model").glob("*.yaml"))}
PRESET = CONF / "experiment" / "sft-vs-rl.yaml"


def base_chain(name: str) -> List[str]:
    """name, its base, its base's base, ... (a cycle fails the test rather than looping)."""
    chain = [name]
    while MODELS[chain[-1]].get("base"):
        nxt = MODELS[chain[-1]]["base"]
        assert nxt not in chain, f"conf/model/{name}.yaml: `base:` links form a cycle {chain + [nxt]}"
        chain.append(nxt)
    return chain


def preset_pairs() -> List[Tuple[str, str, str]]:
    """The preset's `# pair: sft | rl | base` comment lines."""
    pairs = []
    for line in PRESET.read_text().splitlines():
        m = re.match(r"\s*#\s*pair:\s*(.+)$", line)
        if m:
            parts = [p.strip() for p in m.group(1).split("|")]
            assert len(parts) == 3, f"{PRESET}: a pair line needs 'sft | rl | base': {line!r}"
            pairs.append(tuple(parts))
    return pairs


def preset_models() -> List[str]:
    params = yaml.safe_load(PRESET.read_text())["hydra"]["sweeper"]["params"]["model"]
    return [m.strip() for m in params.split(",") if m.strip()]


def test_zoo_is_not_empty_and_names_match_files():
    assert len(MODELS) > 10
    for name, m in MODELS.items():
        assert m.get("name") == name, f"conf/model/{name}.yaml: `name:` must equal the file name"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_links_roles_and_protocols(name):
    m, where = MODELS[name], f"conf/model/{name}.yaml"
    for link in ("teacher", "base"):
        if m.get(link):
            assert m[link] in MODELS, f"{where}: `{link}: {m[link]}` names no conf/model file"
    role = m["role"]
    if role == "student":
        assert m.get("teacher") and m.get("base"), f"{where}: a student needs `teacher:` and `base:`"
        assert MODELS[m["teacher"]]["role"] == "teacher", f"{where}: its teacher's role must be teacher"
    if role == "rl":
        assert m.get("base"), f"{where}: an rl model needs `base:`"
    base_chain(name)  # no cycles
    protocol = m.get("protocol")
    if protocol == "harmony":
        assert m.get("think_start", "<think>") is None and m.get("think_end", "</think>") is None, \
            f"{where}: harmony marks reasoning by channels: set think_start: null and think_end: null"
    if protocol in ("qwen3", "think_tags"):
        assert m.get("think_end", "</think>"), f"{where}: protocol {protocol} needs think_end"
    if protocol in ("plain", "server_count"):
        assert m.get("think_end", "</think>") is None, f"{where}: protocol {protocol} has no think block"


def test_sft_vs_rl_preset_pairs_share_their_base():
    pairs, listed = preset_pairs(), preset_models()
    assert len(pairs) >= 4
    for model in listed:
        assert model in MODELS, f"{PRESET}: model {model} has no conf/model file"
    in_pairs = {name for pair in pairs for name in pair}
    assert in_pairs <= set(listed), f"{PRESET}: pair models missing from the sweep: {sorted(in_pairs - set(listed))}"
    assert set(listed) <= in_pairs, f"{PRESET}: swept models in no pair: {sorted(set(listed) - in_pairs)}"
    for sft, rl, base in pairs:
        assert MODELS[base]["role"] == "base", f"pair {sft} | {rl}: {base} is not a base model"
        assert MODELS[sft]["role"] == "student" and MODELS[sft].get("teacher"), f"{sft}: the SFT member must be a student"
        assert MODELS[rl]["role"] == "rl", f"{rl}: the RL member must have role rl"
        assert base in base_chain(sft)[1:], f"{sft} does not descend from {base} ({base_chain(sft)})"
        assert base in base_chain(rl)[1:], f"{rl} does not descend from {base} ({base_chain(rl)})"
        # the RL member trains on the base or on the SFT student; either way it never passes through another SFT
        between = base_chain(rl)[1:base_chain(rl).index(base)]
        assert between in ([], [sft]), f"{rl}: between it and {base} lies {between}, not only {sft}"
