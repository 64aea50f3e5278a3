"""Checks a schema cannot express, run once a config has composed: model links, registered
names (engines, task kinds, scorers, measures: asked of cogdistill.registry, never imported from
the modules that implement them), number ranges, secrets in the wrong place. Each error names the
file to edit and the fix.

This module sits above the registry and the schemas; nothing below it imports it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf

from cogdistill.config.schema import (
    CONF_DIR, MAX_SAMPLES, MAX_TOKENS_LIMIT, AnalysisConfig, Config, ConfigError, DataConfig, EffortConfig,
    OpenAIEngineConfig, ReplayEngineConfig, Role, SamplingConfig, TransformersEngineConfig,
    VllmEngineConfig, available, did_you_mean, model_file, plausible_rt_problem,
)
from cogdistill.registry import ENGINES, LOG_FORMATS, MEASURES, PROTOCOLS, SCORERS, TASK_KINDS, engine_settings_schemas

# engine name -> settings schema (`auto` included), as the registry's engine specs give them
ENGINE_SCHEMAS: Dict[str, type] = engine_settings_schemas()


def register_schemas() -> None:
    from hydra.core.config_store import ConfigStore

    from cogdistill.config.yaml_bounds import install

    install()  # before Hydra reads a config file: a 'billion laughs' file is refused, not built
    share_config_store()
    cs = ConfigStore.instance()
    cs.store(name="cogdistill_schema", node=Config)
    for name, schema in ENGINE_SCHEMAS.items():
        cs.store(group="schema/engine", name=name, node=_open_free_form_dicts(OmegaConf.structured(schema)))
    register_budgets()


def share_config_store() -> None:
    """Hydra deep-copies its config repository for each composition and for each group that `--help`
    lists (CachingConfigRepository), and with it the ConfigStore singleton and every schema stored
    there: most of what `--help` costs beyond a bare Hydra app, and a share of each sweep job's
    composition. Composition never writes to the store (ConfigStore.load hands out a copy of the
    node it loads), so those copies can share the one store."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.__deepcopy__ = lambda self, memo: self  # type: ignore[method-assign]


COMMON_BUDGETS = (0, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)  # usable in presets


EFFORT_LEVELS = ("none", "low", "medium", "high")


def check_effort(effort: EffortConfig) -> None:
    """name, level and budget must say the same thing (a hand-written conf/effort/ file may not)."""
    expected = {"default": (None, None), **{lv: (lv, None) for lv in EFFORT_LEVELS}}.get(effort.name)
    if expected is None and re.fullmatch(r"budget=\d+", effort.name):
        expected = (None, int(effort.name.split("=")[1]))
    if expected is None or (effort.level, effort.budget) != expected:
        raise ConfigError(f"effort `name: {effort.name}, level: {effort.level}, budget: {effort.budget}` is not one "
                          f"effort: use effort=default, {', '.join(EFFORT_LEVELS)} or budget=<N> (a whole number of "
                          "thinking tokens); a file in conf/effort/ must match its name (e.g. name: low, level: low).")


def register_budgets(budgets=COMMON_BUDGETS) -> None:
    """The options `effort=budget_N`: common ones for presets, and those named on the command line
    (config.overrides.effort_budgets): a budget is any whole number, so it has no file in conf/effort/."""
    from hydra.core.config_store import ConfigStore

    for n in budgets:
        ConfigStore.instance().store(group="effort", name=f"budget_{n}",
                                     node=EffortConfig(name=f"budget={n}", level=None, budget=int(n)))


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


NOT_NEGATIVE = Bound(0, text="must be 0 or more")


AT_LEAST_1 = Bound(1, text="must be at least 1")
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


def check_bounds(settings: Dict[str, Any], schema: type, where: str,
                 table: Optional[Dict[type, Dict[str, Bound]]] = None) -> None:
    """Raise ConfigError for the first setting of `schema` outside its Bound; `where` prefixes the
    field name in the message (e.g. "engine." or "conf/model/x.yaml: engine_kwargs.vllm."). `table`:
    a command's own settings (cogdistill.train's), else BOUNDS."""
    defaults = {f.name: f.default for f in dataclasses.fields(schema)}
    for name, bound in (BOUNDS if table is None else table).get(schema, {}).items():
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
        if engine in ENGINE_SCHEMAS:  # an unknown engine here is reported by job.engine_settings
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


def check_replay_settings(engine: ReplayEngineConfig) -> None:
    formats = ["auto", *LOG_FORMATS.names()]
    if engine.format not in formats:
        raise ConfigError(f"engine.format={engine.format}: use one of {', '.join(formats)} (auto tells them apart "
                          "by file)." + did_you_mean(engine.format, formats))
    if engine.match not in ("id", "prompt"):
        raise ConfigError(f"engine.match={engine.match}: use id (the log's item ids, or engine.id_field / "
                          "engine.id_map) or prompt (the prompt text)." + did_you_mean(engine.match, ["id", "prompt"]))
    if engine.match == "prompt" and (engine.id_field or engine.id_map):
        raise ConfigError("engine.match=prompt matches by the prompt text: drop engine.id_field / engine.id_map, "
                          "or use engine.match=id.")
    if engine.id_field and engine.id_map:
        raise ConfigError("engine.id_field and engine.id_map both say where item ids come from: give one of them.")


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


# A name that becomes a file or folder name: no '/' or '..' may steer it elsewhere.
NAME_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.+-]*"


def validate(cfg: DictConfig) -> Config:
    """Return the typed config, or raise ConfigError saying which file to fix and how."""
    job: Config = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    model = job.model
    # names become file names (cache folders, MLflow artifacts): no '/' or '..' may steer them elsewhere
    for what, name in [("model", model.name), *(("task", t.name) for t in job.task.values())]:
        if not re.fullmatch(NAME_PATTERN, name):
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
    check_effort(job.effort)
    if model.protocol is not None and model.protocol not in PROTOCOLS:
        raise ConfigError(f"{src}: `protocol: {model.protocol}` is not a reasoning protocol; known: "
                          f"{PROTOCOLS.names()}." + did_you_mean(model.protocol, PROTOCOLS.names()))
    if model.protocol is not None and PROTOCOLS.spec(model.protocol).needs_think_end and not model.think_end:
        raise ConfigError(f"{src}: `protocol: {model.protocol}` needs `think_end:` (the tag that closes the reasoning, "
                          "e.g. \"</think>\").")
    if isinstance(job.engine, OpenAIEngineConfig):
        check_openai_settings(vars(job.engine), "engine.")
    if isinstance(job.engine, ReplayEngineConfig):
        check_replay_settings(job.engine)
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
