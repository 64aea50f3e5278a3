"""Figures people look at: matplotlib PNGs, rendered off-screen."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from cogdistill.stats.correlation import Alignment


def scatter_cost_vs_rt(per_item: pl.DataFrame, al: Alignment, *, model: str, cost: str, out: Path,
                       measure: str = "mean_rt") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    per_item = per_item.filter(pl.col("human_difficulty").is_not_null())
    x = per_item["human_difficulty"].to_numpy()
    y = per_item["cost_mean"].to_numpy() + 1
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    ax.scatter(x, y, s=22, alpha=0.75, color="#3b6ea8", edgecolor="white", linewidth=0.5)
    if per_item.height <= 80:
        for item, xi, yi in zip(per_item["item_id"], x, y):
            ax.annotate(item, (xi, yi), fontsize=6, alpha=0.6, xytext=(2, 2), textcoords="offset points")
    if np.isfinite(al.r) and len(x) >= 3:
        slope, intercept = np.polyfit(x, np.log(y), 1)
        grid = np.linspace(x.min(), x.max(), 50)
        ax.plot(grid, np.exp(intercept + slope * grid), color="#c0392b", linewidth=1.2)
    ax.set_yscale("log")
    ax.set_xlabel("human error rate (per item)" if measure == "error_rate" else f"human {measure.replace('_', ' ')} (s, per item)")
    ax.set_ylabel(f"{cost.replace('_', ' ')} + 1 (mean per item, log scale)")
    ci = f"[{al.r_ci_low:.2f}, {al.r_ci_high:.2f}]" if np.isfinite(al.r_ci_low) else "[n/a]"
    ax.set_title(f"{model} on {al.task}: r = {al.r:.2f} {ci}, rho = {al.rho:.2f}, n = {al.n_items}", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
