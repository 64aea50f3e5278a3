"""What each job of a SLURM sweep asks for (hydra/launcher=slurm): GPUs, CPUs, memory and a time limit
from its model and its plan, and whether that fits one node of the partition.

- GPUs: tensor_parallel_size x pipeline_parallel_size of the engine the job runs (a model file's
  engine_kwargs included), as cogdistill.sweep.feasibility estimates them. Engines that load no weights
  here (sizing.weightless: replay, openai, dry) ask for none and keep the flat cpus_per_task / mem_gb.
- CPUs: sizing.cpus_per_gpu per GPU. Memory: the estimated weights (GB) x sizing.mem_per_weight_gb
  (they pass through host memory), at least the flat mem_gb.
- Time: the plan's token budget (items x samples x max_tokens over the job's tasks) at
  sizing.tokens_per_s, times sizing.margin, rounded up to a step of a few classes (so that jobs of
  similar size share one array), between min_timeout_min and max_timeout_min.
Jobs with the same size form one resource class, submitted as one array (cogdistill/sweep/launcher.py).
A job larger than one node is not submitted: it is named with the route for such models.
"""

from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

# the time classes, in minutes: a job's limit is the first step at or above its estimate
TIME_STEPS = (30, 60, 120, 240, 480, 720, 1440, 2880, 4320, 10080)
WEIGHTLESS = ("replay", "openai", "dry")  # engines whose job loads no model weights on its node
TOO_BIG_ROUTE = ("serve it with an external `vllm serve ... --tensor-parallel-size T --pipeline-parallel-size P` "
                 "across nodes and run its job with engine=openai engine.base_url=http://HOST:PORT/v1 "
                 "(docs/scale-out.md, step 2)")


@dataclass(frozen=True)
class JobSize:
    gpus: int
    cpus: int
    mem_gb: int
    timeout_min: int

    def sbatch(self) -> Dict[str, int]:
        """submitit's names for it (executor.update_parameters)."""
        return {"gpus_per_node": self.gpus, "cpus_per_task": self.cpus, "mem_gb": self.mem_gb,
                "timeout_min": self.timeout_min}

    def __str__(self) -> str:
        return f"{self.gpus} GPU(s), {self.cpus} CPU(s), {self.mem_gb} GB, {self.timeout_min} min"


@dataclass(frozen=True)
class NodeShape:
    """The largest node of the partition (sinfo); None where SLURM did not say."""
    gpus: Optional[int] = None
    cpus: Optional[int] = None
    mem_gb: Optional[int] = None


def sized_by_launcher(launcher_cfg: Any) -> bool:
    """Whether this launcher config sizes each job itself (hydra/launcher=slurm, sizing.auto): a job then
    gets the GPUs it needs, and only the partition's node bounds it (checked here, before submission)."""
    sizing = getattr(launcher_cfg, "sizing", None) if launcher_cfg is not None else None
    return bool(sizing is not None and getattr(sizing, "auto", False))


def job_needs(job: Any, engine: str, settings: Any, max_tokens: int, weightless: Sequence[str]) -> Tuple[int, float]:
    """(GPUs, GB of host memory to load the weights) of one job, from cogdistill.sweep.feasibility's estimate.
    Engines in `weightless` (replay, openai, dry by default) need neither. Taken out of that list, a
    replayed job asks for what its model's own engine would (a rehearsal of a sweep's allocation)."""
    from cogdistill.sweep.feasibility import estimate_job_resources

    if engine in weightless:
        return 0, 0.0
    if engine not in ("vllm", "transformers"):  # replay/dry rehearsing: the model file's engine and settings
        engine, settings = (job.model.engine if job.model.engine in ("vllm", "transformers") else "vllm"), None
    on_gpu = engine == "vllm" or str(getattr(settings, "device", "cpu")).startswith("cuda")
    need = estimate_job_resources(job.model, engine, settings, max_tokens=max_tokens, on_gpu=on_gpu)
    return need.gpus, need.weights_gb if need.gpus else need.mem_gb


def token_budget(job: Any, max_tokens: int, items: int) -> int:
    """Tokens the job may generate at most: items x samples x max_tokens."""
    return items * max(1, int(job.sampling.n)) * max_tokens


def timeout_for(tokens: int, sizing: Any) -> int:
    minutes = tokens / max(float(sizing.tokens_per_s), 1e-9) / 60 * float(sizing.margin)
    step = next((s for s in TIME_STEPS if s >= minutes), TIME_STEPS[-1])
    return int(min(max(step, int(sizing.min_timeout_min)), int(sizing.max_timeout_min)))


def size_job(cfg: Any, sizing: Any, flat: Dict[str, Any], items_of) -> Tuple[str, JobSize]:
    """(model name, its size) for one composed job config; items_of(task config) -> item count."""
    from cogdistill.config.validate import validate
    from cogdistill.engines.factory import resolve_engine_name
    from cogdistill.job.plan import engine_settings

    job = validate(cfg)
    engine = resolve_engine_name(job.engine.name, job.model)
    max_tokens = job.sampling.max_tokens or job.model.max_tokens
    weightless = list(sizing.get("weightless", WEIGHTLESS))
    settings = engine_settings(engine, job) if engine not in weightless else None
    gpus, host_gb = job_needs(job, engine, settings, max_tokens, weightless)
    items = sum(items_of(task) for task in job.task.values())
    timeout = timeout_for(token_budget(job, max_tokens, items), sizing)
    cpus, mem_gb = int(flat.get("cpus_per_task") or 1), int(flat.get("mem_gb") or 1)
    if gpus:
        cpus = gpus * int(sizing.cpus_per_gpu)
    # the weights pass through host memory on their way to the GPUs (and stay there on CPU)
    mem_gb = max(mem_gb, math.ceil(host_gb * float(sizing.mem_per_weight_gb)))
    return job.model.name, JobSize(gpus, cpus, mem_gb, timeout)


def too_large(model: str, size: JobSize, node: NodeShape, partition: Optional[str]) -> Optional[str]:
    """Why this job cannot run on one node of the partition, or None."""
    where = f"partition {partition}" if partition else "the default partition"
    for what, need, have in (("GPU(s)", size.gpus, node.gpus), ("CPU(s)", size.cpus, node.cpus),
                             ("GB of memory", size.mem_gb, node.mem_gb)):
        if have is not None and need > have:
            return (f"model {model} needs {need} {what} on one node and the nodes of {where} have {have}: not "
                    f"submitted; {TOO_BIG_ROUTE}" if what == "GPU(s)" else
                    f"model {model} needs {need} {what} on one node and the nodes of {where} have {have}: not "
                    "submitted; lower hydra.launcher.sizing.cpus_per_gpu / mem_per_weight_gb or use a larger partition")
    return None


def node_shape(partition: Optional[str], env: Optional[Dict[str, str]] = None) -> NodeShape:
    """The largest node of the partition, from sinfo (GPUs from its gpu gres); empty where sinfo fails."""
    args = ["sinfo", "--noheader", "--format=%c|%m|%G"] + ([f"--partition={partition}"] if partition else [])
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=30, env=env).stdout
    except (OSError, subprocess.SubprocessError):
        return NodeShape()
    shapes = [parse_sinfo_line(line) for line in out.splitlines() if line.strip()]
    if not shapes:
        return NodeShape()
    return NodeShape(*(max((s[i] for s in shapes if s[i] is not None), default=None) for i in range(3)))


def parse_sinfo_line(line: str) -> Tuple[Optional[int], Optional[int], Optional[int]]:
    """(gpus, cpus, mem_gb) of one `sinfo --format=%c|%m|%G` line, e.g. `64|512000|gpu:a100:8(S:0-1)`."""
    cpus, mem_mb, gres = (line.split("|") + ["", "", ""])[:3]
    gpus = 0
    for part in gres.split(","):
        fields = part.split("(")[0].split(":")
        if fields[0] == "gpu" and fields[-1].isdigit():
            gpus += int(fields[-1])
    to_int = lambda s: int(s.rstrip("+")) if s.rstrip("+").isdigit() else None  # noqa: E731
    mem = to_int(mem_mb)
    return gpus, to_int(cpus), None if mem is None else mem // 1024


class ItemCounts:
    """Item counts per task, each task loaded once (the jobs of a sweep share their tasks)."""

    def __init__(self, mirror: Optional[str], cache: Any, timeout_s: float):
        self.mirror, self.cache, self.timeout_s = mirror, cache, timeout_s
        self.counts: Dict[str, int] = {}

    def __call__(self, task: Any) -> int:
        from cogdistill.tasks.load import load_task

        if task.name not in self.counts:
            self.counts[task.name] = load_task(task, mirror=self.mirror, cache=self.cache,
                                               timeout_s=self.timeout_s).items.height
        return self.counts[task.name]


def size_jobs(configs: Sequence[Any], sizing: Any, flat: Dict[str, Any]) -> List[Tuple[str, JobSize]]:
    """(model, size) of each composed job config, in order."""
    from cogdistill.config.schema import cache_dir
    from cogdistill.config.validate import validate

    counts: Dict[Any, ItemCounts] = {}
    sized = []
    for cfg in configs:
        job = validate(cfg)
        key = (job.data.mirror, str(cache_dir(job)))
        items = counts.setdefault(key, ItemCounts(job.data.mirror, cache_dir(job), job.data.download_timeout_s))
        sized.append(size_job(cfg, sizing, flat, items))
    return sized
