"""Every config composes; mistakes fail at compose or validate time with a message that says what to fix."""

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError

from cogdistill.config.schema import ConfigError, available
from cogdistill.config.validate import validate
from helpers.config import compose


@pytest.mark.parametrize("model", available("model"))
@pytest.mark.parametrize("engine", available("engine"))
def test_every_model_composes_and_validates_with_every_engine(model, engine):
    job = validate(compose([f"model={model}", f"engine={engine}"]))
    assert job.model.name == model, f"conf/model/{model}.yaml: `name:` must equal the file name"
    assert job.task and all(t.name == key for key, t in job.task.items())


@pytest.mark.parametrize("group", ["sampling", "tracking", "task"])
def test_every_option_of_the_other_groups_composes(group):
    for option in available(group):
        override = f"task=[{option}]" if group == "task" else f"{group}={option}"
        validate(compose([override]))


def test_unknown_key_in_a_model_file_names_the_file_and_key(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "typo.yaml").write_text(
        "name: typo\nhf_id: x/y\nrole: control\nfamily: f\nhf_idd: oops\n")
    with pytest.raises(ConfigCompositionException) as err:
        compose([f"hydra.searchpath=[file://{tmp_path}]", "model=typo"])
    message = str(err.value) + str(err.value.__cause__)
    assert "model/typo" in message and "hf_idd" in message


def test_wrong_type_is_rejected_on_the_command_line_and_in_a_file(tmp_path):
    with pytest.raises(ConfigCompositionException, match="model.max_tokens=lots"):
        compose(["model.max_tokens=lots"])
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "badtype.yaml").write_text(
        "name: badtype\nhf_id: x/y\nrole: control\nfamily: f\nmax_tokens: plenty\n")
    with pytest.raises(ConfigCompositionException) as err:
        compose([f"hydra.searchpath=[file://{tmp_path}]", "model=badtype"])
    message = str(err.value) + str(err.value.__cause__)
    assert "model/badtype" in message and "max_tokens" in message


def test_command_line_typo_is_rejected():
    with pytest.raises((ConfigCompositionException, ConfigKeyError)) as err:
        compose(["model.max_tokenz=10"])
    assert "max_tokenz" in str(err.value)


def test_unknown_role_is_rejected():
    with pytest.raises(ConfigCompositionException, match="model.role=mentor"):
        compose(["model.role=mentor"])


def test_student_with_a_broken_base_link_names_the_file_and_suggests(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "stud.yaml").write_text(
        "name: stud\nhf_id: x/y\nrole: student\nfamily: f\nteacher: demo-qwen25-coder-0.5b\nbase: demo-smollm2-135\n")
    cfg = compose([f"hydra.searchpath=[file://{tmp_path}]", "model=stud"])
    with pytest.raises(ConfigError, match=r"stud.yaml.*base: demo-smollm2-135.*Did you mean 'demo-smollm2-135m'"):
        validate(cfg)


def test_student_without_teacher_is_an_error(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "stud.yaml").write_text("name: stud\nhf_id: x/y\nrole: student\nfamily: f\n")
    with pytest.raises(ConfigError, match="needs `teacher:`"):
        validate(compose([f"hydra.searchpath=[file://{tmp_path}]", "model=stud"]))


def test_unknown_scorer_and_measure_name_the_task_file():
    with pytest.raises(ConfigError, match=r"task/multiplication.yaml.*scorer: exact_float"):
        validate(compose(["task.multiplication.scorer=exact_float"]))
    with pytest.raises(ConfigError, match="difficulty.measure: mode_rt"):
        validate(compose(["task.multiplication.difficulty.measure=mode_rt"]))


def test_unknown_engine_option_is_a_composition_error():
    with pytest.raises(ConfigCompositionException, match="engine"):
        compose(["engine=tensorrt"])


def test_env_vars_feed_the_mirror_and_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("COGDISTILL_DATA_MIRROR", str(tmp_path))
    monkeypatch.setenv("COGDISTILL_CACHE_DIR", str(tmp_path / "c"))
    job = validate(compose([]))
    assert job.data.mirror == str(tmp_path) and job.cache_dir == str(tmp_path / "c")
    assert validate(compose(["data.mirror=/elsewhere"])).data.mirror == "/elsewhere"  # the override wins


LAUNCHER_PRESETS = [("local", "hydra_plugins.cogdistill_launcher"), ("slurm", "hydra_plugins.hydra_submitit_launcher")]


def test_every_launcher_preset_is_tested():
    """A preset nobody runs rots (the old `ray` one could not even compose): each one in
    conf/hydra/launcher/ is composed below and run by a sweep test (local: tests/test_sweeps.py; slurm: the one-node SLURM cluster of tests/helpers/slurm_cluster.py)."""
    from cogdistill.config.schema import CONF_DIR

    assert sorted(p.stem for p in (CONF_DIR / "hydra" / "launcher").glob("*.yaml")) == sorted(
        name for name, _ in LAUNCHER_PRESETS)


def test_the_removed_ray_preset_is_a_bad_input_naming_the_launchers(tmp_path):
    """hydra/launcher=ray was removed (docs/scale-out.md says why): old commands get exit 2 and the choices."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "COGDISTILL_OUTPUT_DIR": str(tmp_path), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"}
    proc = subprocess.run([sys.executable, "-m", "cogdistill", "-m", "hydra/launcher=ray"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    said = proc.stdout + proc.stderr
    assert proc.returncode == 2, said[-4000:]
    assert "hydra/launcher=ray" in said and "local" in said and "slurm" in said and "Traceback" not in said


@pytest.mark.parametrize("launcher,plugin", LAUNCHER_PRESETS)
def test_launcher_presets_compose(launcher, plugin):
    import importlib.util

    from hydra import compose as hydra_compose, initialize_config_dir

    from cogdistill.config.schema import CONF_DIR
    from cogdistill.config.validate import register_schemas

    if importlib.util.find_spec(plugin) is None:
        pytest.skip(f"{plugin} not installed")
    register_schemas()  # as the command does: the engine and model schemas live in the ConfigStore
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.startswith("hydra_plugins.")
    if launcher == "slurm":
        assert cfg.hydra.launcher.sizing.auto and cfg.hydra.launcher.array_parallelism == 32  # per-model sizes


@pytest.mark.slow  # 7.9 s: composes every model of the zoo
def test_the_zoo_has_the_papers_design_and_every_link_resolves():
    models = {name: validate(compose([f"model={name}"])).model for name in available("model")}
    students = {n: m for n, m in models.items() if m.role.value == "student" and m.family == "r1"}
    assert len(students) == 6  # the six DeepSeek-R1-Distill students
    for m in students.values():
        assert models[m.teacher].role.value == "teacher" and models[m.base].role.value == "base"
    assert {m.hf_id for m in models.values() if m.role.value == "teacher"} >= {"deepseek-ai/DeepSeek-R1", "Qwen/QwQ-32B"}
    assert any(m.role.value == "rl" for m in models.values())
    from cogdistill.engines.protocols import protocol_name

    for m in models.values():  # every reasoner marks its reasoning: think tags, harmony channels, or a server count
        if m.role.value in ("student", "teacher"):
            assert protocol_name(m) in ("think_tags", "qwen3", "harmony", "server_count"), m.name
            if protocol_name(m) in ("think_tags", "qwen3"):
                assert m.think_end == "</think>", m.name
