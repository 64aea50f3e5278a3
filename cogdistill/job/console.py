"""What a job prints: its plan (engine=dry), the table of r per task, notes and warnings."""

from __future__ import annotations

import math
from typing import Dict, List, Optional

import polars as pl
from rich.table import Table

from cogdistill.config.schema import Config
from cogdistill.console import console
from cogdistill.engines.factory import resolve_engine_name
from cogdistill.stats import correlation as stats
from cogdistill.tasks.load import Task
from cogdistill.tracking.store import JobRun, shown_uri


def print_plan(job: Config, tasks: List[Task], max_tokens: int) -> None:
    """engine=dry: what this job would run, after the config and the human data were checked."""
    model = job.model
    engine = resolve_engine_name("auto", model)
    items = sum(t.items.height for t in tasks)
    links = ", ".join(f"{k}={getattr(model, k)}" for k in ("teacher", "base") if getattr(model, k))
    console.print(
        f"[bold]plan[/] {model.name} ({model.hf_id}@{model.revision or 'main'}, {model.role.value}"
        f"{', ' + links if links else ''}) with engine={engine}"
        + ("" if job.effort.name == "default" else f", effort={job.effort.name}") + ": "
        + ", ".join(f"{t.name}[{t.items.height}]" for t in tasks)
        + f" = {items} items x {job.sampling.n} sample(s), up to {max_tokens} tokens each "
        f"(<= {items * job.sampling.n * max_tokens:,} generated tokens)", soft_wrap=True)


def print_revision(model, weights) -> None:
    """A floating revision (main, a tag) named in the job's output, with the commit it stands for now."""
    if not weights.floating:
        return
    from rich.markup import escape

    from cogdistill.config.schema import model_file

    if weights.pinned_by:
        console.print(f"[yellow]{escape(model.name)}: revision '{escape(weights.requested)}' is floating; this job "
                      f"uses commit {weights.revision} ({weights.pinned_by}). Pin it for a published run: "
                      f"revision: {weights.revision} in {model_file(model.name)}[/]", soft_wrap=True)
    else:
        console.print(f"[yellow]{escape(model.name)}: revision '{escape(weights.requested)}' is floating and no commit "
                      "was found for it (no hub answer, not in the HF cache): these weights are not pinned.[/]",
                      soft_wrap=True)


def print_summary(model: str, engine: str, results: Dict[str, stats.Alignment], summary: dict, run: JobRun,
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
        console.print(f"MLflow run {run.run_id} (experiment {run.experiment_id}) at {shown_uri(run.uri)}")


def print_warnings(model: str, traces: pl.DataFrame, max_tokens: int) -> None:
    for warning in [stats.censoring_warning(traces, max_tokens), count_warning(traces, max_tokens)]:
        if warning:
            console.print(f"[bold yellow]{model}: {warning}[/]", soft_wrap=True)


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
