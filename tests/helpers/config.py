"""Hydra composition of the project's configs, and the overrides of a job on the tiny random model."""

from __future__ import annotations

from typing import List


def compose(overrides: List[str]):
    from hydra import compose as hydra_compose, initialize_config_dir

    from cogdistill.config.schema import CONF_DIR
    from cogdistill.config.validate import register_schemas

    register_schemas()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def job_overrides(tiny_conf, mirror, sha):
    # the random-weight model rambles to max_tokens on every item: count those costs at the budget
    # here (these tests are about what a job logs); test_censored_costs_leave_r_by_default covers drop
    return [f"hydra.searchpath=[file://{tiny_conf}]", "model=tiny-random", f"data.mirror={mirror}",
            f"task.multiplication.sources.trials.sha256={sha}", "analysis.bootstrap=200",
            "analysis.censored=budget"]
