"""A bare Hydra app over a config tree like cogdistill's, for benchmarks/startup.py to time
`--help` and `--cfg job` against: the same group files (model, task, engine, sampling, effort,
tracking, experiment) and the same top-level config, without cogdistill's structured schemas,
sweeper and plugins (`make_tree` writes that copy of conf/).

    python benchmarks/bare_hydra_app.py --config-dir DIR --help   (DIR: from make_tree)
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf"
SCHEMA_LINE = re.compile(r"^\s*- (/schema/\S*|cogdistill_schema|override hydra/sweeper: cogdistill)\b.*\n", re.M)


def make_tree(dst: Path) -> Path:
    """conf/ without the lines that name cogdistill's schemas or its sweeper."""
    if dst.exists():
        shutil.rmtree(dst)
    for src in CONF.rglob("*.yaml"):
        rel = src.relative_to(CONF)
        if rel.parts[0] == "hydra":  # cogdistill's launcher presets need its plugins
            continue
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(SCHEMA_LINE.sub("", src.read_text()))
    return dst


@hydra.main(version_base="1.3", config_path=None, config_name="config")
def main(cfg: DictConfig) -> None:
    print(OmegaConf.to_yaml(cfg)[:200])


if __name__ == "__main__":
    main()
