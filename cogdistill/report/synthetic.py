"""A simulated study with known ground truth, for testing the report and for benchmarks.

Each family has a teacher, a pre-distillation base and a distilled student; extra models are
controls. For model m and item i (z_i: the item's standardized difficulty),
    log cost = log(scale_m) + wrong_premium * wrong + sigma * (rho_m z_i + sqrt(1 - rho_m^2) e_mi) + tau * e_mis
so the item-level correlation of log cost with difficulty is about rho_m (Truth.expected_r: attenuated by
the per-sample noise and by the human side's reliability), the student's mean cost is
`inflation` times its base's, and a wrong answer costs exp(wrong_premium) times more. Human RT is
linear in z (the paper correlates log cost with raw RT).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import polars as pl

from cogdistill.report.study import MODEL_COLUMNS, TRACE_COLUMNS, Study, _conform
from cogdistill.tracking.run_format import model_label


@dataclass(frozen=True)
class Truth:
    rho: Dict[str, float] = field(default_factory=lambda: {"teacher": 0.7, "base": 0.45, "student": 0.2,
                                                            "control": 0.1})
    scale: Dict[str, float] = field(default_factory=lambda: {"teacher": 900.0, "base": 250.0, "control": 150.0})
    inflation: float = 2.44  # student tokens / base tokens
    accuracy: Dict[str, float] = field(default_factory=lambda: {"teacher": 0.85, "base": 0.55, "student": 0.7,
                                                                 "control": 0.5})
    sigma: float = 0.6
    tau: float = 0.1
    wrong_premium: float = 0.3
    # humans: each of n_participants answers every item in difficulty_sd * z + 3 s plus
    # participant noise (participant_sd); an item's difficulty is the mean over them
    n_participants: int = 20
    difficulty_sd: float = 0.8
    participant_sd: float = 1.0

    def expected_r(self, role: str, n_samples: int) -> float:
        """r(log mean cost, RT) the simulation implies: rho attenuated by the per-sample noise
        (tau and the wrong-answer premium) that survives averaging n_samples."""
        acc = self.accuracy[role]
        noise = (self.tau**2 + self.wrong_premium**2 * acc * (1 - acc)) / n_samples
        # the human side is a mean over finite participants too: attenuated by sqrt(its reliability)
        return self.rho[role] * self.sigma / math.sqrt(self.sigma**2 + noise) * math.sqrt(self.human_reliability())

    def human_reliability(self) -> float:
        """The split-half reliability the human trials imply: two halves of P/2 participants
        correlate rho_half = var(d) / (var(d) + noise / (P/2)) across items; Spearman-Brown to P."""
        half = self.difficulty_sd**2 / (self.difficulty_sd**2 + self.participant_sd**2 / (self.n_participants / 2))
        return 2 * half / (1 + half)

    def inflation_law_slope(self) -> float:
        """IE_student / IE_base = inflation * accuracy_base / accuracy_student, for every family."""
        return self.inflation * self.accuracy["base"] / self.accuracy["student"]


def simulate(n_models: int = 4, n_tasks: int = 2, n_items: int = 100, n_samples: int = 1, seed: int = 0,
             truth: Truth = Truth()) -> Study:
    rng = np.random.default_rng(seed)
    roles = ["teacher", "base", "student"] * (n_models // 3) + ["control"] * (n_models % 3)
    models = []
    for k, role in enumerate(roles):
        fam = k // 3
        name = f"{role}-{fam}" if role != "control" else f"control-{k}"
        models.append({"model": name, "role": role, "family": f"family-{fam}" if role != "control" else "controls",
                       "teacher": f"teacher-{fam}" if role == "student" else None,
                       "base": f"base-{fam}" if role == "student" else None, "cost": "cost", "run_id": None})
    # families differ in verbosity (x0.5 .. x2), so the student-on-base inflation law has a range to fit
    n_fam = max(n_models // 3, 1)
    spread = np.exp(np.linspace(-0.7, 0.7, n_fam)) if n_fam > 1 else np.ones(1)
    humans, traces, trials = [], [], []
    human_rng = np.random.default_rng([seed, 1])  # its own stream: the models' draws do not depend on it
    for t in range(n_tasks):
        task = f"task-{t}"
        z = rng.standard_normal(n_items)
        item_ids = [f"{task}-item-{i:04d}" for i in range(n_items)]
        true_rt = np.maximum(3.0 + truth.difficulty_sd * z, 0.3)
        rts = np.maximum(true_rt + truth.participant_sd * human_rng.standard_normal((truth.n_participants, n_items)),
                         0.05)
        trials.append(pl.DataFrame({
            "task": task, "item_id": np.tile(item_ids, truth.n_participants),
            "participant": np.repeat([f"p{k:03d}" for k in range(truth.n_participants)], n_items),
            "rt_s": rts.ravel(), "correct": 1.0, "keep": True}))
        humans.append(pl.DataFrame({"task": task, "item_id": item_ids, "human_difficulty": rts.mean(axis=0),
                                    "measure": "mean_rt"}))
        for m in models:
            role = m["role"]
            rho = truth.rho[role]
            scale = truth.scale["base"] * truth.inflation if role == "student" else truth.scale[role]
            scale *= spread[int(m["family"].split("-")[1])] if role != "control" else 1.0
            latent = rho * z + math.sqrt(1 - rho**2) * rng.standard_normal(n_items)
            # errors independent of difficulty, so a wrong answer's premium does not move r (expected_r)
            wrong = rng.random((n_samples, n_items)) > truth.accuracy[role]
            log_cost = (math.log(scale) + truth.sigma * latent + truth.tau * rng.standard_normal((n_samples, n_items))
                        + truth.wrong_premium * (wrong - (1 - truth.accuracy[role])))  # a constant: keeps the mean near scale
            cost = np.maximum(np.round(np.exp(log_cost - truth.sigma**2 / 2 - truth.tau**2 / 2)), 1)
            traces.append(pl.DataFrame({
                "model": m["model"], "task": task, "item_id": np.tile(item_ids, n_samples),
                "sample_idx": np.repeat(np.arange(n_samples), n_items), "cost": cost.ravel().astype(float),
                "correct": ~wrong.ravel(), "censored": False,
            }))
    return Study(pl.concat(traces), pl.concat(humans), pl.DataFrame(models, schema=MODEL_COLUMNS),
                 source=f"synthetic(seed={seed})", trials=pl.concat(trials))


@dataclass(frozen=True)
class ReplayInputs:
    conf_dir: Path  # hydra.searchpath=[file://conf_dir]: model/<name>.yaml and task/<name>.yaml
    mirror: Path  # data.mirror=: one item table per task
    traces: Path  # engine.path=: every model's trace records
    models: List[str]
    tasks: List[str]


def write_replay_inputs(study: Study, root: Path) -> ReplayInputs:
    """Model configs, generic task configs, human item tables and one trace file, so that a
    simulated study goes through the real pipeline: `python -m cogdistill -m engine=replay ...`.
    Models name no weights: replayed records that carry token counts need no tokenizer."""
    import hashlib
    import json

    conf, mirror = root / "conf", root / "mirror"
    for sub in (conf / "model", conf / "task", mirror):
        sub.mkdir(parents=True, exist_ok=True)
    tasks = sorted(study.humans["task"].unique())
    for task in tasks:
        trials = study.trials.filter(pl.col("task") == task)
        if trials.height:  # trial level: the job aggregates them and logs them for the report's reliability
            table = trials.select("item_id", "participant", "rt_s", "correct", answer=pl.lit("1"))
        else:
            table = study.humans.filter(pl.col("task") == task).select(
                "item_id", answer=pl.lit("1"), human_rt_s="human_difficulty", accuracy=pl.lit(1.0), n_trials=pl.lit(10))
        csv = mirror / f"{task}.csv"
        table.write_csv(csv)
        (conf / "task" / f"{task}.yaml").write_text(
            f"# @package task.{task}\nname: {task}\nkind: generic\nsources:\n  items:\n"
            f"    url: {csv.resolve().as_uri()}\n    sha256: {hashlib.sha256(csv.read_bytes()).hexdigest()}\n"
            f"    mirror_path: {task}.csv\ndifficulty:\n  measure: mean_rt\n"
            "prompt: 'Simulated item {item_id}'\nscorer: integer\n")
    for m in study.models.iter_rows(named=True):
        links = "".join(f"{k}: {m[k]}\n" for k in ("teacher", "base") if m[k])
        (conf / "model" / f"{m['model']}.yaml").write_text(
            f"name: {m['model']}\nhf_id: synthetic/{m['model']}\nrole: {m['role']}\nfamily: {m['family']}\n{links}"
            "chat: false\nthink_end: null\n")
    records = study.traces.select("model", "task", "item_id", "sample_idx", "correct",
                                  reasoning_tokens=pl.col("cost").cast(pl.Int64), answer_tokens=pl.lit(0))
    traces = root / "traces.parquet"
    records.write_parquet(traces)
    (root / "README.txt").write_text(json.dumps({"source": study.source}) + "\n")
    return ReplayInputs(conf, mirror, traces, study.models["model"].to_list(), tasks)


# ---- reasoning effort ----------------------------------------------------------------------------

@dataclass(frozen=True)
class EffortTruth:
    """One model config at several effort levels. At level l and item i (z_i: standardized difficulty)
        log cost = log(base_cost * scale_l) + sigma * (rho_l z_i + sqrt(1 - rho_l^2) (sqrt(s) u_i + sqrt(1 - s) e_il))
    so r(log cost, difficulty) = rho_l at every level, costs scale by scale_l, and the item effect
    u_i (share s of the rest) makes levels correlate, as runs of one model on one item do. Human
    difficulty is exactly linear in z (no human noise: the r's are the rho's, unattenuated).
    budgets: budget=N levels, each a fresh run of the top named level cut at N (budget_hit where cut).
    max_tokens: any trace above it is censored at it."""
    levels: Tuple[str, ...] = ("low", "medium", "high")
    rho: Tuple[float, ...] = (0.5, 0.5, 0.5)
    scale: Tuple[float, ...] = (1.0, 2.0, 4.0)
    base_cost: float = 300.0
    sigma: float = 0.6
    item_share: float = 0.5
    tau: float = 0.05  # per-sample noise
    budgets: Tuple[int, ...] = ()
    max_tokens: Optional[int] = None

    def expected_delta(self) -> float:
        """Mean log cost at the top named level minus at the bottom one (the overall scaling)."""
        return math.log(self.scale[-1] / self.scale[0])

    def expected_dial_r(self) -> float:
        """r(delta log cost top - bottom named level, difficulty) the simulation implies."""
        s, (lo, hi) = self.item_share, (self.rho[0], self.rho[-1])
        a_lo, a_hi = math.sqrt(1 - lo**2), math.sqrt(1 - hi**2)
        var = (hi - lo) ** 2 + s * (a_hi - a_lo) ** 2 + (1 - s) * (a_hi**2 + a_lo**2)
        return (hi - lo) / math.sqrt(var + 2 * self.tau**2 / self.sigma**2) if hi != lo else 0.0


def simulate_effort(n_items: int = 150, n_samples: int = 1, seed: int = 0, truth: EffortTruth = EffortTruth(),
                    config: str = "sim-model", task: str = "task-0", role: str = "control") -> Study:
    """A study of one config at truth's levels (models <config>@<level>) on one task."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(n_items)
    u = rng.standard_normal(n_items)
    item_ids = [f"{task}-item-{i:04d}" for i in range(n_items)]
    humans = pl.DataFrame({"task": task, "item_id": item_ids, "human_difficulty": 3.0 + 0.8 * z,
                           "measure": "mean_rt"})

    def draw(rho: float, scale: float) -> np.ndarray:  # (n_samples, n_items) costs, before any cut
        own = math.sqrt(truth.item_share) * u + math.sqrt(1 - truth.item_share) * rng.standard_normal(n_items)
        latent = rho * z + math.sqrt(1 - rho**2) * own
        log_cost = (math.log(truth.base_cost * scale) + truth.sigma * latent - truth.sigma**2 / 2
                    + truth.tau * rng.standard_normal((n_samples, n_items)))
        return np.maximum(np.round(np.exp(log_cost)), 1.0)

    runs = [(level, draw(rho, scale), None) for level, rho, scale in zip(truth.levels, truth.rho, truth.scale)]
    for budget in truth.budgets:
        natural = draw(truth.rho[-1], truth.scale[-1])
        runs.append((f"budget={budget}", np.minimum(natural, budget), natural > budget))
    models, traces = [], []
    for level, cost, hit in runs:
        name = model_label(config, level)
        models.append({"model": name, "role": role, "family": None, "teacher": None, "base": None, "cost": "cost",
                       "run_id": None, "effort": level, "config": config})
        censored = cost > truth.max_tokens if truth.max_tokens else np.zeros_like(cost, bool)
        if truth.max_tokens:
            cost = np.minimum(cost, truth.max_tokens)
        traces.append(pl.DataFrame({
            "model": name, "task": task, "item_id": np.tile(item_ids, n_samples),
            "sample_idx": np.repeat(np.arange(n_samples), n_items), "cost": cost.ravel(),
            "correct": rng.random(cost.size) < 0.7, "censored": censored.ravel(),
            "budget_hit": pl.Series([None] * cost.size if hit is None else hit.ravel(), dtype=pl.Boolean),
            "cost_source": "counted"}))
    frame = pl.concat(traces, how="diagonal_relaxed")
    return Study(_conform(frame, TRACE_COLUMNS), humans, pl.DataFrame(models, schema=MODEL_COLUMNS),
                 source=f"synthetic-effort(seed={seed})")
