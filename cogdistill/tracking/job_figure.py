"""Figures people look at: matplotlib PNGs, rendered off-screen.

A job draws one scatter per task, a sweep one per job and task (160 at 16x): building a figure
(its axes, dozens of tick artists) cost about as much as drawing it, so one figure is kept per
process and its data, labels and limits are replaced for the next. The PNG is the one a fresh
figure gives (tests/test_job_figure.py compares the bytes).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from cogdistill.stats.correlation import Alignment

_CANVAS = None  # (figure, axes), reused by every scatter this process draws


def _canvas():
    global _CANVAS
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if _CANVAS is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
        plt.close(fig)  # pyplot forgets it (no figure-count warning); the object stays drawable
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        _CANVAS = fig, ax
    fig, ax = _CANVAS
    for artist in [*ax.collections, *ax.lines, *ax.texts]:
        artist.remove()
    ax.ignore_existing_data_limits = True  # the limits come from this figure's data alone
    ax.set_autoscale_on(True)
    fig.subplots_adjust(**{k: matplotlib.rcParams[f"figure.subplot.{k}"]
                           for k in ("left", "right", "bottom", "top", "wspace", "hspace")})
    return fig, ax


def scatter_cost_vs_rt(per_item: pl.DataFrame, al: Alignment, *, model: str, cost: str, out: Path,
                       measure: str = "mean_rt") -> Path:
    import numpy as np

    fig, ax = _canvas()
    per_item = per_item.filter(pl.col("human_difficulty").is_not_null())
    x = per_item["human_difficulty"].to_numpy()
    y = per_item["cost_mean"].to_numpy() + 1
    ax.scatter(x, y, s=22, alpha=0.75, color="#3b6ea8", edgecolor="white", linewidth=0.5)
    if per_item.height <= 80:
        for item, xi, yi in zip(per_item["item_id"], x, y):
            ax.annotate(item, (xi, yi), fontsize=6, alpha=0.6, xytext=(2, 2), textcoords="offset points")
    if np.isfinite(al.r) and len(x) >= 3:
        slope, intercept = np.polyfit(x, np.log(y), 1)
        grid = np.linspace(x.min(), x.max(), 50)
        ax.plot(grid, np.exp(intercept + slope * grid), color="#c0392b", linewidth=1.2)
    ax.set_xlabel("human error rate (per item)" if measure == "error_rate" else f"human {measure.replace('_', ' ')} (s, per item)")
    ax.set_ylabel(f"{cost.replace('_', ' ')} + 1 (mean per item, log scale)")
    ci = f"[{al.r_ci_low:.2f}, {al.r_ci_high:.2f}]" if np.isfinite(al.r_ci_low) else "[n/a]"
    ax.set_title(f"{model} on {al.task}: r = {al.r:.2f} {ci}, rho = {al.rho:.2f}, n = {al.n_items}", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


# ------------------------------------------------------------------ drawing beside the job

_POOL = None  # one worker process per job process, started by the first job with several tasks


def _worker_init() -> None:
    import signal

    from cogdistill.exits import die_with_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the job's to handle; it stops this worker
    die_with_parent()


def _pool():
    global _POOL
    if _POOL is None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        _POOL = ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn"), initializer=_worker_init)
    return _POOL


class BackgroundFigures:
    """A job's scatter figures, drawn in a worker process while the job goes on with its next task
    (a figure costs about as much CPU as the rest of a replayed task); `files()` waits for them.
    The PNGs are the ones scatter_cost_vs_rt draws in the job's own process."""

    def __init__(self):
        import tempfile

        self._dir = Path(tempfile.mkdtemp(prefix="cogdistill-figures-"))
        self._pending: list = []  # (artifact folder, local file, future)

    def submit(self, per_item: pl.DataFrame, al: Alignment, *, model: str, cost: str, artifact: str,
               measure: str) -> None:
        folder, name = artifact.split("/", 1)
        out = self._dir / folder / name
        columns = [c for c in ("item_id", "human_difficulty", "cost_mean") if c in per_item.columns]
        future = _pool().submit(scatter_cost_vs_rt, per_item.select(columns), al, model=model, cost=cost, out=out,
                                measure=measure)
        self._pending.append((folder, out, future))

    def files(self) -> list:
        """(artifact folder, local file) of every figure submitted; raises what a drawing raised."""
        done = [(folder, future.result() and out) for folder, out, future in self._pending]
        self._pending = []
        return done

    def close(self) -> None:
        import shutil

        for _, _, future in self._pending:
            future.cancel()
        shutil.rmtree(self._dir, ignore_errors=True)
        import multiprocessing

        if multiprocessing.parent_process() is not None:
            _stop_pool()


def _stop_pool() -> None:
    """Stop the worker of a job that is itself a multiprocessing worker (hydra/launcher=local): its
    exit would join the pool's manager thread, whose worker never gets its stop signal, and hang.
    Elsewhere (a sweep's jobs one after another in one process, a SLURM task) the worker serves the
    next job too (starting one costs ~1 s) and stops with the interpreter."""
    global _POOL
    if _POOL is not None:
        pool, _POOL = _POOL, None
        pool.shutdown(wait=True, cancel_futures=True)
