"""Can a job run where it is sent? Where its weights are, how much memory and how many GPUs it needs.

The sweep's pre-flight (cogdistill.sweep.preflight) asks this for every job at once, before the first
starts: a 70B model on a 24 GB CPU machine, or a hub model on a machine without the hub, is named
in seconds instead of failing after minutes of retries. The launcher (SLURM right-sizing) asks
`estimate_job_resources` what to request for a job.

The estimates are deliberately rough (a few GB either way): weights = parameters x bytes per
parameter (or the model file's `weights_gb` for quantized checkpoints), plus the KV cache of the
job's longest sequences, plus a runtime margin. The parameter count comes from the model's
config.json when it is in the Hugging Face cache, else from the model file's `params_b`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.parse
from dataclasses import dataclass
from typing import Any, List, NamedTuple, Optional

from cogdistill.engines.hub import HUB_PROBE_S, call_with_deadline, cached_config

DTYPE_BYTES = {"float32": 4, "fp32": 4, "float16": 2, "fp16": 2, "half": 2, "bfloat16": 2, "bf16": 2, "auto": 2,
               "float8": 1, "fp8": 1, "int8": 1, "int4": 0.5}
PROMPT_ALLOWANCE = 1024  # tokens of prompt (chat template + few-shot) beside max_tokens
# KV bytes per token per billion parameters when no config.json is cached (Llama-3.1-8B: 128 KiB
# for 8B in 16 bit), capped where GQA/MoE models stop growing it (Llama-3.3-70B: 320 KiB)
KV_PER_B = 16 * 1024
KV_CAP = 320 * 1024


class JobResources(NamedTuple):
    """What one job needs; unpacks as (gpus, mem_gb, ...)."""

    gpus: int  # GPUs the job needs: tensor_parallel_size x pipeline_parallel_size on GPU, 0 on CPU
    mem_gb: float  # memory in all: GPU memory summed over `gpus`, or RAM when gpus == 0
    params_b: Optional[float]  # billions of parameters; None: unknown (no config.json cached, no params_b)
    weights_gb: float
    kv_gb: float  # the KV cache for the job's batch of longest sequences
    device: str  # "gpu" | "cpu"
    basis: str  # where the size came from: "config.json" | "params_b" | "weights_gb" | "unknown"


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    if isinstance(cfg, dict):
        return cfg.get(key, default)
    value = getattr(cfg, key, default)
    return default if value is None else value


def _params_from_config(conf: dict) -> Optional[float]:
    """Billions of parameters from an HF config.json (decoder-only transformers, dense or MoE)."""
    conf = conf.get("text_config", conf)
    try:
        h, layers, vocab = int(conf["hidden_size"]), int(conf["num_hidden_layers"]), int(conf["vocab_size"])
    except (KeyError, TypeError, ValueError):
        return None
    heads = int(conf.get("num_attention_heads") or max(1, h // 128))
    head_dim = int(conf.get("head_dim") or h // heads)
    kv = int(conf.get("num_key_value_heads") or heads)
    attn = h * heads * head_dim * 2 + h * kv * head_dim * 2
    experts = int(conf.get("num_local_experts") or conf.get("num_experts") or conf.get("n_routed_experts") or 0)
    inter = int(conf.get("moe_intermediate_size") or conf.get("intermediate_size") or 4 * h) if experts else \
        int(conf.get("intermediate_size") or 4 * h)
    mlp = 3 * h * inter * max(1, experts)
    embed = vocab * h * (1 if conf.get("tie_word_embeddings") else 2)
    return (embed + layers * (attn + mlp)) / 1e9


def _kv_per_token(conf: Optional[dict], params_b: Optional[float], kv_bytes: float) -> float:
    if conf:
        conf = conf.get("text_config", conf)
        try:
            h, layers = int(conf["hidden_size"]), int(conf["num_hidden_layers"])
            heads = int(conf.get("num_attention_heads") or max(1, h // 128))
            head_dim = int(conf.get("head_dim") or h // heads)
            kv = int(conf.get("num_key_value_heads") or heads)
            return 2 * layers * kv * head_dim * kv_bytes
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            pass
    return min(KV_PER_B * (params_b or 1.0), KV_CAP) * kv_bytes / 2


def estimate_job_resources(model_cfg: Any, engine: Optional[str] = None, settings: Any = None, *,
                           max_tokens: Optional[int] = None, batch: Optional[int] = None,
                           on_gpu: Optional[bool] = None) -> JobResources:
    """What a job of model_cfg (a ModelConfig, DictConfig or dict of a conf/model file) needs.

    engine: the engine that will run it (default: the model's `engine`, else vllm); settings: that
    engine's settings (cogdistill.job.plan.engine_settings), else its defaults plus the model's
    engine_kwargs; max_tokens: the job's budget (default: the model's); batch: sequences held at
    once (default: transformers' batch_size, vLLM's max_num_seqs or 1: vLLM pages its KV cache and
    needs room for one whole sequence); on_gpu: default GPU for vllm, settings.device for transformers.
    """
    engine = engine or _get(model_cfg, "engine") or "vllm"
    kwargs = dict(_get(_get(model_cfg, "engine_kwargs", {}) or {}, engine, {}) or {})

    def setting(key: str, default: Any) -> Any:
        if settings is not None and _get(settings, key) is not None:
            return _get(settings, key)
        return kwargs.get(key, default) if kwargs.get(key) is not None else default

    if on_gpu is None:
        on_gpu = engine == "vllm" or str(setting("device", "cpu")).startswith("cuda")
    gpus = int(setting("tensor_parallel_size", 1)) * int(setting("pipeline_parallel_size", 1)) if on_gpu else 0
    if on_gpu and engine != "vllm":
        gpus = max(gpus, 1)
    dtype = str(setting("dtype", None) or _get(model_cfg, "dtype", "bfloat16"))
    nbytes = DTYPE_BYTES.get(dtype, 2)
    conf = cached_config(_get(model_cfg, "hf_id", ""), _get(model_cfg, "revision")) \
        if _get(_get(model_cfg, "weights", {}) or {}, "source", "hub") == "hub" and _get(model_cfg, "hf_id") else None
    params_b, basis = (_params_from_config(conf), "config.json") if conf else (None, "")
    if params_b is None:
        params_b = _get(model_cfg, "params_b")
        basis = "params_b" if params_b is not None else "unknown"
    weights_gb = _get(model_cfg, "weights_gb")
    if weights_gb is not None:
        basis = "weights_gb" if basis != "config.json" else basis
    else:
        weights_gb = (params_b or 0.0) * nbytes
    tokens = int(setting("max_model_len", 0) or (max_tokens or _get(model_cfg, "max_tokens", 512)) + PROMPT_ALLOWANCE)
    if batch is None:
        batch = int(setting("batch_size", 0) or 0) if engine == "transformers" else int(setting("max_num_seqs", 0) or 1)
        batch = max(batch, 1)
    kv_gb = _kv_per_token(conf, params_b, nbytes) * tokens * batch / 1e9
    mem_gb = weights_gb + kv_gb + 1.0 + 0.1 * weights_gb  # runtime, activations, CUDA context
    return JobResources(gpus, round(mem_gb, 1), params_b, round(weights_gb, 1), round(kv_gb, 1),
                        "gpu" if on_gpu else "cpu", basis)


# ------------------------------------------------------------------ this node

@dataclass(frozen=True)
class NodeResources:
    gpus: int  # GPUs one job gets
    gpu_mem_gb: float  # memory of one of them
    ram_gb: float  # RAM one job gets
    where: str  # "this node" | "the launcher's allocation"
    sized_per_job: bool = False  # the launcher asks each job's size (hydra/launcher=slurm, sizing.auto)


def local_gpus() -> List[float]:
    """GB of memory of each GPU of this node (nvidia-smi; no torch import), [] without one."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    sizes = [float(line) / 1024 for line in out.split() if line.strip().replace(".", "", 1).isdigit()]
    if visible is not None:
        keep = [int(i) for i in visible.split(",") if i.strip().isdigit()]
        sizes = [sizes[i] for i in keep if i < len(sizes)]
    return sizes


def local_ram_gb() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9


def node_resources(launcher_cfg: Any = None) -> NodeResources:
    """What a job gets: the launcher's allocation when it names one (gpus_per_node, mem_gb: a
    SLURM launcher), else this node."""
    sizes = local_gpus()
    per_gpu = max(sizes) if sizes else 0.0
    sizing = _get(launcher_cfg, "sizing") if launcher_cfg is not None else None
    if sizing is not None and _get(sizing, "auto", False):
        # each job gets what estimate-style sizing asks for; the launcher names a job no node can hold
        return NodeResources(0, per_gpu, local_ram_gb(), "the launcher (sized per job)", sized_per_job=True)
    gpus = _get(launcher_cfg, "gpus_per_node") if launcher_cfg is not None else None
    mem = _get(launcher_cfg, "mem_gb") if launcher_cfg is not None else None
    if gpus is not None or mem is not None:
        # the allocation's GPUs are unknown from here: assume the 80 GB class unless this node has GPUs
        return NodeResources(int(gpus if gpus is not None else len(sizes)), per_gpu or 80.0,
                             float(mem if mem is not None else local_ram_gb()), "the launcher's allocation")
    return NodeResources(len(sizes), per_gpu, local_ram_gb(), "this node")


def server_reachable(base_url: str, deadline_s: float = HUB_PROBE_S) -> bool:
    """Whether a TCP connection to base_url's host and port opens within deadline_s (no request sent)."""
    import socket

    parts = urllib.parse.urlsplit(base_url)
    if not parts.hostname:
        return False
    port = parts.port or (443 if parts.scheme == "https" else 80)

    def connect() -> bool:
        with socket.create_connection((parts.hostname, port), timeout=deadline_s):
            return True

    return bool(call_with_deadline(connect, deadline_s))
