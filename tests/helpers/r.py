"""R as an external reference for the report's statistics."""

from __future__ import annotations

import os

import pytest

R_PACKAGES_APT = ("apt-get install -y r-base-core r-cran-metafor r-cran-lme4 r-cran-lmertest r-cran-psych "
                  "r-cran-jsonlite")


def require_r(*packages: str) -> None:
    """Skip a test that checks a statistic against R where R or a package is missing; in CI
    (COGDISTILL_REQUIRE_R=1, set by .ci/run, which installs them) fail instead: an external
    reference that silently never runs checks nothing."""
    import shutil
    import subprocess

    missing = "Rscript" if shutil.which("Rscript") is None else None
    if missing is None and packages:
        names = ", ".join(f'"{p}"' for p in packages)
        probe = subprocess.run(["Rscript", "-e", f"cat(all(sapply(c({names}), requireNamespace, quietly = TRUE)))"],
                               capture_output=True, text=True, timeout=60, check=False)
        missing = None if probe.stdout.strip() == "TRUE" else f"R package(s) {list(packages)}"
    if missing:
        (pytest.fail if os.environ.get("COGDISTILL_REQUIRE_R") else pytest.skip)(f"{missing} missing: {R_PACKAGES_APT}")
