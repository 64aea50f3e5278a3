"""One training run: compose the base (and teacher) like an evaluation would, build the data from
the training items, train, save a plain HF folder, log everything to MLflow, register the model."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional

from cogdistill.config.schema import CONF_DIR, Config, ConfigError, cache_dir
from cogdistill.config.compose import compose_main
from cogdistill.console import console
from cogdistill.tasks.load import load_task
from cogdistill.train.settings import TrainConfig, check_settings
from cogdistill.train.dataset import TrainDataError, rl_frame, sft_frame, split_note, teacher_traces, write_dataset
from cogdistill.train.register import model_yaml, register
from cogdistill.train.training_run import TrainRun, loss_callback
from cogdistill.tracking import run_format as rf
from cogdistill.tracking.store import flatten
from cogdistill.engines.weights import resolve_weights


@dataclass(frozen=True)
class Trained:
    name: str
    config_path: Path
    weights_path: Path
    run_id: Optional[str]
    n_examples: int


def with_searchpath(overrides: List[str], folder: Path) -> List[str]:
    """overrides plus `folder` on hydra.searchpath (merged into one given there already)."""
    if folder.resolve() == CONF_DIR.resolve():
        return overrides
    entry = f"file://{folder.resolve()}"
    given = [o for o in overrides if o.startswith("hydra.searchpath=")]
    rest = [o for o in overrides if not o.startswith("hydra.searchpath=")]
    paths = [p.strip() for o in given for p in o.split("=", 1)[1].strip("[]").split(",") if p.strip()]
    return rest + [f"hydra.searchpath=[{','.join(paths + [entry])}]"]


def check(cfg: TrainConfig) -> None:
    check_settings(cfg)  # ranges and names; parse() ran it too, for a command line that fails fast
    if cfg.mode not in ("sft", "rl"):
        raise ConfigError(f"mode={cfg.mode}: use mode=sft (imitate a teacher's traces) or mode=rl (GRPO).")
    if cfg.mode == "sft" and not cfg.teacher:
        raise ConfigError("mode=sft needs teacher=<model> (a conf/model file whose traces are in the study).")
    if not cfg.tasks:
        raise ConfigError("tasks=[...] is empty: name the tasks whose training items are used.")
    if cfg.mode == "rl" and (cfg.batch_size * cfg.grad_accum) % cfg.num_generations:
        raise ConfigError(f"batch_size={cfg.batch_size} x grad_accum={cfg.grad_accum} must be a multiple of "
                          f"num_generations={cfg.num_generations} (GRPO scores completions in groups).")


def training_data(cfg: TrainConfig, run: TrainRun, tasks, render, teacher):
    """(the training frame, {task: the teacher run its traces came from})."""
    if cfg.mode == "rl":
        return rl_frame(tasks, render), {}
    traces = {t.name: teacher_traces(run.client, run.experiment_id, cfg.teacher, t) for t in tasks}
    return sft_frame(tasks, traces, render, teacher, cfg.correct_only), {k: v[1] for k, v in traces.items()}


def fit(cfg: TrainConfig, weights, frame, work: Path, callbacks, max_completion: int):
    if cfg.mode == "sft":
        from cogdistill.train.sft import train_sft

        return train_sft(cfg, weights, frame, work, callbacks)
    from cogdistill.train.rl import train_rl

    return train_rl(cfg, weights, frame, work, callbacks, max_completion)


def run_training(cfg: TrainConfig, overrides: List[str]) -> Trained:
    check(cfg)
    name = cfg.name or f"{cfg.mode}-{cfg.base}"
    base_overrides = [f"task=[{','.join(cfg.tasks)}]", *[f"task.{t}.items_split=train" for t in cfg.tasks],
                      *overrides]
    job = compose_main([f"model={cfg.base}", *base_overrides])
    teacher = compose_main([f"model={cfg.teacher}", *base_overrides]).model if cfg.teacher else None
    cache = cache_dir(job)
    tasks = [load_task(t, mirror=job.data.mirror, cache=cache, timeout_s=job.data.download_timeout_s)
             for t in job.task.values()]
    weights = resolve_weights(job.model, cache)
    from cogdistill.engines.tokenizer import ModelTokenizer

    render = ModelTokenizer(job.model, weights).render
    if cfg.mode == "sft" and not job.tracking.enabled:
        raise TrainDataError("mode=sft reads the teacher's traces from MLflow: tracking.enabled must be true.")
    run = TrainRun(job, run_name=f"train {name}", tags=rf.train_tags(
        mode=cfg.mode, base=cfg.base, teacher=cfg.teacher, model=name, study=job.study, tasks=[t.name for t in tasks]))
    out = Path(cfg.output_dir or cache / "trained").expanduser().resolve() / f"{name}-{run.run_id or int(time.time())}"
    began = time.perf_counter()
    try:
        frame, teacher_runs = training_data(cfg, run, tasks, render, teacher)
        max_completion = cfg.max_completion_length or job.sampling.max_tokens or job.model.max_tokens
        split = split_note(tasks)
        run.log_params(rf.train_params(flatten("", asdict(cfg)), n_examples=frame.height,
                                       base_weights=weights.fingerprint, max_completion_length=max_completion,
                                       split=split, teacher_runs=teacher_runs))
        with tempfile.TemporaryDirectory(prefix="cogdistill-train-") as tmp:
            work = Path(tmp)
            run.log_dataset(frame, write_dataset(frame, work / rf.TRAIN_DATASET_DIR, f"{cfg.mode}-{name}"),
                            f"{cfg.mode}-{name}")
            with console.status(f"Training {name} ({cfg.mode}, {frame.height} examples, {cfg.steps} steps)..."):
                trainer, tokenizer = fit(cfg, weights, frame, work / "trainer", [loss_callback(run)], max_completion)
            from cogdistill.train.model import save_trained

            save_trained(trainer, tokenizer, out, work / "adapter")
            if (work / "adapter").is_dir():
                run.log_folder(work / "adapter", rf.ADAPTER_DIR)
        run.log_metrics({rf.TRAIN_SECONDS: time.perf_counter() - began}, step=cfg.steps)
        conf_dir = Path(cfg.conf_dir).expanduser().resolve()
        path = register(conf_dir, model_yaml(name, cfg.mode, job.model, teacher, out, run.run_id, split))
        searchpath = [o for o in overrides if o.startswith("hydra.searchpath=")]  # where its links may live
        compose_main(with_searchpath([f"model={name}", *searchpath], conf_dir))  # it composes and validates
        run.set_tags(rf.trained_tags(str(out), str(path)))
        run.finish("FINISHED")
    except BaseException as exc:  # Ctrl-C and SIGTERM (cogdistill.exits) mark the run KILLED, errors FAILED
        from cogdistill.exits import is_interrupt, signals_deferred

        with signals_deferred():
            run.finish("KILLED" if is_interrupt(exc) else "FAILED")
        shutil.rmtree(out, ignore_errors=True)
        raise
    console.print(f"[green]{name}[/] ({cfg.mode}, {frame.height} examples, {cfg.steps} steps, "
                  f"{time.perf_counter() - began:.0f} s): weights {out}, config {path}"
                  + (f", MLflow run {run.run_id}" if run.run_id else ""), soft_wrap=True)
    return Trained(name, path, out, run.run_id, frame.height)
