"""One job: a model over its tasks. conf -> tasks -> engine -> traces -> statistics -> MLflow."""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import polars as pl
from omegaconf import DictConfig
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cogdistill.stats import reliability, correlation as stats
from cogdistill.config.validate import ENGINE_SCHEMAS, config_warnings, validate
from cogdistill.config.schema import Config, ConfigError, cache_dir, model_file
from cogdistill.console import console, quiet_third_party
from cogdistill.traces.cache import GenerationCache, generation_key
from cogdistill.engines.base import ENGINES, Engine, Generation, Request, create_engine, resolve_engine_name
from cogdistill.engines import versions as engine_versions
from cogdistill.engines.tokenizer import ModelTokenizer
from cogdistill.exits import is_interrupt
from cogdistill.tracking.job_figure import scatter_cost_vs_rt
from cogdistill.tasks.load import Task, load_task
from cogdistill.tasks.item_table import RT_MEASURES
from cogdistill.tracking.store import JobRun
from cogdistill.traces.records import trace_row, traces_frame
from cogdistill.engines.weights import resolve_weights


def engine_settings(name: str, job: Config):
    """The selected engine's settings, or its defaults under engine=auto, plus model overrides."""
    if name not in ENGINE_SCHEMAS:
        raise ConfigError(f"engine '{name}' has no settings schema in cogdistill/config.py.")
    settings = job.engine if job.engine.name == name else ENGINE_SCHEMAS[name]()
    overrides = dict(job.model.engine_kwargs.get(name, {}))
    known = {f.name for f in dataclasses.fields(settings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(
            f"{model_file(job.model.name)}: engine_kwargs.{name} has unknown key(s) {unknown}; "
            f"engine '{name}' accepts {sorted(known - {'name'})}."
        )
    return dataclasses.replace(settings, **overrides)


def cost_column(job: Config) -> str:
    if job.analysis.cost != "auto":
        return job.analysis.cost
    return "reasoning_tokens" if job.model.think_end else "total_tokens"


class LazyEngine:
    """Creates the engine on first use: a job whose generations are all cached never loads the model."""

    def __init__(self, name: str, job: Config, weights, settings):
        self.name, self._job, self._weights, self._settings = name, job, weights, settings
        self._engine: Optional[Engine] = None
        self.load_seconds = 0.0
        self.generate_seconds = 0.0

    def get(self) -> Engine:
        if self._engine is None:
            began = time.perf_counter()
            with console.status(f"Loading {self._job.model.name} with {self.name}..."):
                self._engine = create_engine(self.name, self._job.model, self._weights, self._settings)
            self.load_seconds = time.perf_counter() - began
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None


def generate_traces(engine: LazyEngine, engine_version: str, tokenizer: ModelTokenizer, cache: GenerationCache,
                    task: Task, job: Config, weights, max_tokens: int, progress: Progress) -> pl.DataFrame:
    prompts = task.prompts()
    rendered = [tokenizer.render(p) for p in prompts]
    sampling = job.sampling

    def key(i: int, sample: int) -> str:
        return generation_key(weights=weights.fingerprint, engine=engine.name, engine_version=engine_version,
                              prompt=rendered[i], temperature=sampling.temperature, top_p=sampling.top_p,
                              seed=sampling.seed, max_tokens=max_tokens, sample_idx=sample)

    bar = progress.add_task(f"{job.model.name} · {task.name}", total=len(prompts))
    generations: Dict[int, List[Generation]] = {}
    todo: List[Request] = []
    for i in range(len(prompts)):
        cached = [cache.get(key(i, s)) for s in range(sampling.n)]
        if all(g is not None for g in cached):
            generations[i] = cached  # type: ignore[assignment]
            progress.advance(bar)
        else:
            todo.append(Request(index=i, prompt=prompts[i], rendered=rendered[i]))

    def on_result(i: int, gens: List[Generation]) -> None:
        for sample, gen in enumerate(gens):
            cache.put(key(i, sample), gen)  # before anything else: a crash later loses nothing
        generations[i] = gens
        progress.advance(bar)

    if todo:
        live = engine.get()  # loading is timed apart from generating
        began = time.perf_counter()
        live.generate(todo, sampling, max_tokens, on_result)
        engine.generate_seconds += time.perf_counter() - began
    rows: List[dict] = []
    for i, item in enumerate(task.items.iter_rows(named=True)):
        for sample_idx, gen in enumerate(generations[i]):
            row = trace_row(gen, tokenizer=tokenizer, think_start=job.model.think_start,
                            think_end=job.model.think_end, max_tokens=max_tokens,
                            score=lambda text, target=item["target"]: task.score(text, target))
            rows.append({"model": job.model.name, "task": task.name, "item_id": item["item_id"],
                         "sample_idx": sample_idx, "prompt": prompts[i], "target": item["target"],
                         "engine": engine.name, **row})
    return traces_frame(rows)


def run_job(cfg: DictConfig) -> Dict[str, stats.Alignment]:
    quiet_third_party()
    job = validate(cfg)
    for warning in config_warnings(job):
        console.print(f"[yellow]warning: {warning}[/]", soft_wrap=True)
    cache_root = cache_dir(job)
    engine_name = resolve_engine_name(job.engine.name, job.model)
    settings = engine_settings(engine_name, job)
    max_tokens = job.sampling.max_tokens or job.model.max_tokens
    cost = cost_column(job)
    tasks = [
        load_task(t, mirror=job.data.mirror, cache=cache_root, timeout_s=job.data.download_timeout_s)
        for t in job.task.values()
    ]
    if job.engine.name == "dry":
        return print_plan(job, tasks, max_tokens)
    weights = resolve_weights(job.model, cache_root)
    model = job.model
    tags = {
        "model": model.name, "role": model.role.value, "family": model.family,
        "teacher": model.teacher or "", "base": model.base or "", "engine": engine_name,
        "task": ",".join(t.name for t in tasks), "study": job.study, "hf_id": model.hf_id,
        "cogdistill.kind": "job", "cogdistill.host": socket.gethostname(), "cogdistill.pid": str(os.getpid()),
    }
    if model.training_run:  # a model trained by cogdistill.train: link back to its training run
        tags["trained_by"] = model.training_run
    run = JobRun(job, cfg, tags=tags, run_name=model.name, lock_dir=cache_root / "locks")
    if run.already_finished:
        console.print(f"[green]{model.name}: already finished in this sweep (MLflow run {run.run_id}); skipped.[/]")
        return {}
    results: Dict[str, stats.Alignment] = {}
    cache = GenerationCache(cache_root)
    engine = LazyEngine(engine_name, job, weights, settings)
    generates = ENGINES[engine_name].generates
    try:
        tokenizer = ModelTokenizer(model, weights) if generates else _replay_tokenizer(model, weights)
        engine_version = engine_versions.cache_identity(engine_name, settings, model.hf_id)
        run.log_params({
            "hf_id": model.hf_id, "revision": model.revision, "weights": weights.fingerprint,
            "engine": engine_name, "engine_version": engine_version, "max_tokens": max_tokens,
            "cost": cost, "analysis.censored": job.analysis.censored, **{f"engine.{k}": v for k, v in dataclasses.asdict(settings).items()},
            **{f"sampling.{k}": v for k, v in dataclasses.asdict(job.sampling).items()},
            **{f"task.{t.name}.n_items": t.items.height for t in tasks},
            **{f"task.{t.name}.difficulty": t.config.difficulty.measure for t in tasks},
        })
        per_task: Dict[str, pl.DataFrame] = {}
        all_traces: List[pl.DataFrame] = []
        ceilings: Dict[str, dict] = {}
        gen_tokens = 0
        try:
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=console, transient=False) as progress:
                for task in tasks:
                    misses_before = cache.misses
                    if generates:
                        traces = generate_traces(engine, engine_version, tokenizer, cache, task, job, weights,
                                                 max_tokens, progress)
                    else:
                        traces = _replay(settings.path, task, model, tokenizer)
                    if cache.misses > misses_before:  # throughput only means something for new generations
                        gen_tokens += int(traces["total_tokens"].sum())
                    per_item = stats.item_costs(traces, task.items, cost, job.analysis.censored)
                    al = stats.alignment(task.name, per_item, traces, cost, n_boot=job.analysis.bootstrap,
                                         ci=job.analysis.ci, seed=job.analysis.seed, censored=job.analysis.censored)
                    results[task.name], per_task[task.name] = al, per_item
                    all_traces.append(traces)
                    ceilings[task.name] = task_ceiling(task, traces, cost, job.analysis.censored, al.r)
                    _log_task(run, model.name, task, traces, per_item, al, cost, ceilings[task.name])
        finally:
            engine.close()
        rs = [a.r for a in results.values()]
        gen_s = engine.generate_seconds
        summary = {
            "r_mean": stats.plain_mean(rs), "r_mean_fisher": stats.fisher_mean(rs),
            "r_cross_task": stats.cross_task_r({t.name: per_task[t.name] for t in tasks
                                                if t.config.difficulty.measure in RT_MEASURES}),
            "gen_seconds": gen_s,
            "gen_tokens": gen_tokens, "gen_tokens_per_s": gen_tokens / gen_s if gen_s else float("nan"),
            "engine_load_seconds": engine.load_seconds, "cache_hits": cache.hits, "cache_misses": cache.misses,
        }
        run.log_metrics(summary)
        run.finish("FINISHED")
    except BaseException as exc:  # Ctrl-C and SIGTERM (cogdistill.exits) mark the run KILLED, errors FAILED
        run.abandon("KILLED" if is_interrupt(exc) else "FAILED")
        raise
    _print_summary(model.name, engine_name, results, summary, run, ceilings)
    every = pl.concat(all_traces, how="diagonal_relaxed") if all_traces else pl.DataFrame()
    for warning in [stats.censoring_warning(every, max_tokens), count_warning(every, max_tokens)]:
        if warning:
            console.print(f"[bold yellow]{model.name}: {warning}[/]", soft_wrap=True)
    return results


def count_warning(traces: pl.DataFrame, max_tokens: int) -> Optional[str]:
    """Traces whose token count disagrees with the server's usage, or exceeds max_tokens (overlong:
    censored, never counted as cost); None when there are none."""
    if traces.is_empty():
        return None
    mismatched = int(traces["token_count_mismatch"].fill_null(False).sum()) if "token_count_mismatch" in traces.columns \
        else 0
    overlong = int((traces["finish_reason"] == "overlong").sum())
    parts = []
    if mismatched:
        parts.append(f"{mismatched} of {traces.height} trace(s) disagree with the server's own token count by more "
                     "than max(3, 5%) (column token_count_mismatch in the traces): is the model config's tokenizer the "
                     "served model's?")
    if overlong:
        parts.append(f"{overlong} trace(s) had more tokens than max_tokens={max_tokens} (finish_reason overlong): "
                     "they are censored, not counted as cost; the server may ignore max_tokens")
    return "; ".join(parts) or None


def print_plan(job: Config, tasks: List[Task], max_tokens: int) -> Dict[str, stats.Alignment]:
    """engine=dry: what this job would run, after the config and the human data were checked."""
    model = job.model
    engine = resolve_engine_name("auto", model)
    items = sum(t.items.height for t in tasks)
    links = ", ".join(f"{k}={getattr(model, k)}" for k in ("teacher", "base") if getattr(model, k))
    console.print(
        f"[bold]plan[/] {model.name} ({model.hf_id}@{model.revision or 'main'}, {model.role.value}"
        f"{', ' + links if links else ''}) with engine={engine}: "
        + ", ".join(f"{t.name}[{t.items.height}]" for t in tasks)
        + f" = {items} items x {job.sampling.n} sample(s), up to {max_tokens} tokens each "
        f"(<= {items * job.sampling.n * max_tokens:,} generated tokens)", soft_wrap=True)
    return {}


def _replay_tokenizer(model, weights):
    from cogdistill.traces.replay import LazyTokenizer

    return LazyTokenizer(lambda: ModelTokenizer(model, weights), model.name)


def _replay(path: Optional[str], task: Task, model, tokenizer) -> pl.DataFrame:
    from cogdistill.traces.replay import load_traces

    traces, warnings = load_traces(Path(path) if path else None, task, model, tokenizer)
    for warning in warnings:
        console.print(f"[yellow]replay: {warning}[/]", soft_wrap=True)
    return traces


def task_ceiling(task: Task, traces: pl.DataFrame, cost: str, censored: str, r: float) -> dict:
    """Human split-half reliability (trials with participant ids), the cost's over samples (when
    there are >= 2 per item), the noise ceiling and r / ceiling, as the report computes them."""
    human = reliability.human_split_half(task.trials, task.config.difficulty.measure)
    used = stats.censoring_filter(traces, censored).select("item_id", "sample_idx", pl.col(cost).alias("cost"))
    return reliability.cell_ceiling(r, human, reliability.model_split_half(used))


def _log_task(run: JobRun, model: str, task: Task, traces: pl.DataFrame, per_item: pl.DataFrame,
              al: stats.Alignment, cost: str, ceiling: dict) -> None:
    name = task.name
    run.log_metrics({
        f"r/{name}": al.r, f"p/{name}": al.p, f"rho/{name}": al.rho, f"r_ci_low/{name}": al.r_ci_low,
        f"r_ci_high/{name}": al.r_ci_high, f"acc/{name}": al.accuracy, f"tokens_mean/{name}": al.tokens_mean,
        f"n_items/{name}": al.n_items, f"censored_items/{name}": al.censored_items,
        f"censored_traces/{name}": al.censored_traces, f"dropped_items/{name}": al.n_items_dropped,
        f"token_count_mismatch/{name}": int(traces["token_count_mismatch"].fill_null(False).sum()),
        f"overlong_traces/{name}": int((traces["finish_reason"] == "overlong").sum()),
        f"bf10/{name}": al.bf10, f"r_budget/{name}": al.r_budget,
        **{f"{k}/{name}": v for k, v in ceiling.items() if k != "ceiling_note"},
    })
    if not run.enabled:
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        traces.write_parquet(out / f"{name}.parquet")
        items = task.items.join(per_item.select("item_id", "cost_mean", "log_cost", "model_accuracy", "n_censored",
                                                "n_samples"),
                                on="item_id", how="left")
        items.write_parquet(out / f"{name}_items.parquet")
        items.write_csv(out / f"{name}_items.csv")
        files = [("traces", out / f"{name}.parquet"), ("items", out / f"{name}_items.parquet"),
                 ("items", out / f"{name}_items.csv")]
        if task.trials.height:  # the report's human split-half reliability needs the trial-level data
            task.trials.write_parquet(out / f"{name}_trials.parquet")
            files.append(("humans", out / f"{name}_trials.parquet"))
        if per_item["human_difficulty"].drop_nulls().len():  # no human data, nothing to plot
            scatter_cost_vs_rt(per_item, al, model=model, cost=cost, out=out / f"{name}_scatter.png",
                               measure=task.config.difficulty.measure)
            files.append(("figures", out / f"{name}_scatter.png"))
        run.log_files(files)


def _print_summary(model: str, engine: str, results: Dict[str, stats.Alignment], summary: dict, run: JobRun,
                   ceilings: Dict[str, dict]) -> None:
    table = Table(title=f"{model} ({engine}): r between log token cost and human RT")
    for col in ("task", "items", "r", "95% CI", "p", "BF10", "r / ceiling", "rho", "accuracy", "mean tokens",
                "censored"):
        table.add_column(col, justify="left" if col == "task" else "right")

    def num(x: float, spec: str) -> str:
        return "-" if x is None or x != x else format(x, spec)  # NaN: undefined, its reason is printed below

    for al in results.values():
        ci = "-" if al.r_ci_low != al.r_ci_low else f"[{al.r_ci_low:.2f}, {al.r_ci_high:.2f}]"
        censored = str(al.censored_items) + (f" ({al.n_items_dropped} dropped)" if al.n_items_dropped else "")
        ceiling = ceilings.get(al.task, {})
        table.add_row(al.task, str(al.n_items), num(al.r, ".3f"), ci, num(al.p, ".2g"), num(al.bf10, ".3g"),
                      num(ceiling.get("r_normalised", float("nan")), ".2f"), num(al.rho, ".3f"),
                      num(al.accuracy, ".2f"), num(al.tokens_mean, ".1f"), censored)
    console.print(table)
    for al in results.values():
        if al.note:
            console.print(f"[yellow]{al.task}: {al.note}[/]")
        elif al.ci_note:
            console.print(f"[yellow]{al.task}: no CI: {al.ci_note}[/]")
        ceiling = ceilings.get(al.task, {})
        if math.isfinite(ceiling.get("noise_ceiling", math.nan)):
            console.print(f"{al.task}: noise ceiling {ceiling['noise_ceiling']:.2f} (human split-half reliability "
                          f"{ceiling['human_reliability']:.2f}"
                          + (f", cost {ceiling['cost_reliability']:.2f}" if math.isfinite(ceiling["cost_reliability"])
                             else "") + ")", soft_wrap=True)
        elif ceiling.get("ceiling_note"):
            console.print(f"[dim]{al.task}: noise ceiling {ceiling['ceiling_note']}[/]", soft_wrap=True)
        if al.n_items_dropped:
            console.print(f"[yellow]{al.task}: {al.n_items_dropped} item(s) had no uncensored sample and left r "
                          f"(analysis.censored={al.censored_policy}): {', '.join(al.dropped_items[:10])}"
                          f"{' ...' if al.n_items_dropped > 10 else ''}; with censored costs at the budget "
                          f"r = {num(al.r_budget, '.3f')}[/]", soft_wrap=True)
    if summary["gen_seconds"]:
        console.print(f"generation: {summary['gen_tokens']} tokens in {summary['gen_seconds']:.1f} s "
                      f"({summary['gen_tokens_per_s']:.1f} tok/s)")
    console.print(f"generation cache: {summary['cache_hits']} hits, {summary['cache_misses']} misses")
    if run.enabled:
        console.print(f"MLflow run {run.run_id} (experiment {run.experiment_id}) at {run.uri}")
