"""`python -m cogdistill.report`: the comparison report over an MLflow study or a folder.

    python -m cogdistill.report --experiment demo                 # every finished job of the study
    python -m cogdistill.report --experiment demo --parent latest  # the newest sweep only, logged onto it
    python -m cogdistill.report --folder path/to/study             # traces/, humans.csv, models.csv
    python -m cogdistill.report --folder path/to/study --plausible-rt mytask=0.05:1000   # RTs truly that long
    python -m cogdistill.report --synthetic 20x8x400x4             # a simulated study (models x tasks x items x samples)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cogdistill.errors import CogdistillError


def parse(argv):
    ap = argparse.ArgumentParser(prog="python -m cogdistill.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--experiment", help="MLflow experiment (the study name, e.g. demo)")
    src.add_argument("--folder", type=Path, help="a study folder: traces/, humans.csv, models.csv")
    src.add_argument("--synthetic", metavar="MxTxIxS", help="simulate a study of that size, e.g. 20x8x400x4")
    ap.add_argument("--plausible-rt", action="append", metavar="TASK=LOW:HIGH",
                    help="with --folder: accept TASK's median human RT in LOW..HIGH seconds (default 0.05..300; "
                         "outside it a unit error is assumed, e.g. ms given as s); repeatable")
    ap.add_argument("--parent", help="only this sweep's jobs: a parent run id, or 'latest'")
    ap.add_argument("--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI, else the project's mlruns/)")
    ap.add_argument("--out", type=Path, help="output folder (default: reports/<experiment or folder name>)")
    ap.add_argument("--log", action="store_true", help="log the report onto the sweep's parent run (needs --parent)")
    ap.add_argument("--no-figures", action="store_true", help="skip the PNGs")
    ap.add_argument("--scatter-pages", default="1", metavar="N|all",
                    help="pages of the model x task scatter grid to draw (6 models x 4 tasks a page, whole families first; default 1; "
                         "all: every page). Every cell's r is in report.md either way.")
    ap.add_argument("--censored", choices=("drop", "budget"), default="drop",
                    help="censored traces (cut by max_tokens): drop = an item's cost is the mean over its uncensored "
                         "samples, items with none leave the cell (default); budget = count them at the budget. "
                         "Either way the report shows r under both for every cell with censored items.")
    ap.add_argument("--bootstrap", type=bounded("--bootstrap", 0, MAX_BOOTSTRAP), default=2000,
                    help=f"bootstrap resamples per CI (default 2000; 0: no bootstrap CI; at most {MAX_BOOTSTRAP:,})")
    ap.add_argument("--seed", type=bounded("--seed", 0, 2**32 - 1), default=0)
    return ap.parse_args(argv)


# as the job's analysis.bootstrap (cogdistill/config/validate.py): more resamples no longer change a
# 95% CI, while the resample matrix (resamples x items) fills memory
MAX_BOOTSTRAP = 100_000
# --synthetic: the traces a simulated study may hold (a 20x8x400x4 study holds 256,000); far more
# would fill memory before the first analysis; each model x task cell is a step of the simulation
MAX_SYNTHETIC_TRACES, MAX_SYNTHETIC_CELLS = 5_000_000, 20_000


def bounded(flag: str, low: int, high: int):
    """An argparse type: a whole number in low..high, else argparse's one-line usage error (exit 2)."""
    def parse_int(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = None
        if number is None or not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{value!r}: give a whole number from {low:,} to {high:,}")
        return number

    parse_int.__name__ = flag  # argparse names the type in its message: "invalid --seed value"
    return parse_int


def synthetic_size(value: str):
    """--synthetic MxTxIxS: four positive whole numbers, at most MAX_SYNTHETIC_TRACES traces in all."""
    try:
        sizes = [int(x) for x in value.lower().split("x")]
    except ValueError:
        sizes = []
    if len(sizes) != 4 or min(sizes) < 1:
        raise CogdistillError(f"--synthetic {value}: expected MODELSxTASKSxITEMSxSAMPLES, four whole numbers of at "
                              "least 1, e.g. 20x8x400x4.")
    m, t, i, s = sizes
    if m * t * i * s > MAX_SYNTHETIC_TRACES or m * t > MAX_SYNTHETIC_CELLS:
        raise CogdistillError(f"--synthetic {value}: {m * t * i * s:,} simulated traces in {m * t:,} model x task "
                              f"cells, more than a report holds in memory (at most {MAX_SYNTHETIC_TRACES:,} traces "
                              f"and {MAX_SYNTHETIC_CELLS:,} cells); shrink a factor, e.g. 20x8x400x4.")
    return m, t, i, s


def main(argv=None) -> int:
    from rich.markup import escape

    from cogdistill.console import console, quiet_third_party
    from cogdistill.exits import fail

    quiet_third_party()
    args = parse(argv if argv is not None else sys.argv[1:])
    began = time.perf_counter()
    try:
        pages = scatter_pages(args.scatter_pages)  # bad input fails before the study loads
        study, client, parent = load(args)
        for note in study.notes:
            console.print(f"[yellow]study: {escape(note)}[/]", soft_wrap=True)
        out = args.out or Path("reports") / (args.experiment or (args.folder.name if args.folder else "synthetic"))
        from cogdistill.report import log_report, write_report
        from cogdistill.report.render import print_report

        with console.status("Building the report..."):
            report, files = write_report(study, out, n_boot=args.bootstrap, seed=args.seed,
                                         figures=not args.no_figures, censored=args.censored,
                                         scatter_pages=pages)
        print_report(report, console)
        if args.log:
            if not parent:
                raise CogdistillError("--log needs --parent <run id | latest>: the report is logged onto a sweep's parent run.")
            log_report(client, parent, out, report)
            console.print(f"logged to MLflow run {parent}")
    except CogdistillError as exc:
        fail(str(exc))
    console.print(f"report: {out / 'report.json'}, {out / 'report.md'}, {len(files) - 2} figure(s) "
                  f"in {time.perf_counter() - began:.1f} s")
    return 0


def scatter_pages(value: str):
    """--scatter-pages: a positive count, or None for all."""
    if value.strip().lower() == "all":
        return None
    try:
        pages = int(value)
    except ValueError:
        pages = 0
    if pages < 1:
        raise CogdistillError(f"--scatter-pages {value}: expected a positive number of pages or 'all', e.g. "
                              "--scatter-pages 3.")
    return pages


def load(args):
    """(study, MLflow client or None, parent run id or None)."""
    from cogdistill.report import study as S

    if args.folder:
        from cogdistill.report.folder import from_folder, parse_plausible_rt

        return from_folder(args.folder, parse_plausible_rt(args.plausible_rt)), None, None
    if args.plausible_rt:
        raise CogdistillError("--plausible-rt checks a study folder's human RTs: use it with --folder (runs logged "
                              "by the pipeline were checked when their tasks loaded).")
    if args.synthetic:
        from cogdistill.report.synthetic import simulate

        return simulate(*synthetic_size(args.synthetic), seed=args.seed), None, None
    from cogdistill.config.schema import TrackingConfig
    from cogdistill.report.parallel import in_background
    from cogdistill.tracking.store import check_store, reader_client, tracking_uri

    uri = args.tracking_uri or tracking_uri(TrackingConfig())
    client, parent = None, args.parent
    if parent == "latest" or args.log:
        client = reader_client(uri)  # checks the store: a report never creates one, never waits minutes on one
        if parent == "latest":
            parent = latest_sweep(client, args.experiment)
    # Reading the runs (importing MLflow alone is ~2 s) runs in a forked process while this one imports
    # what the analyses and figures need: two cores, one wait. Forked before any polars query runs
    # here, so the child's polars starts its own thread pool.
    else:
        check_store(uri, write=False)  # here, before the fork: the reading process inherits MLflow's settings
    reading = in_background(S.from_mlflow, uri, args.experiment, parent)
    warm_imports(figures=not args.no_figures)
    return reading(), client, parent


def warm_imports(figures: bool) -> None:
    """The modules the report imports anyway, imported while the study loads in the other process."""
    import scipy.optimize  # noqa: F401
    import scipy.stats  # noqa: F401

    from cogdistill.report import analyses, build, multilevel, render  # noqa: F401

    if figures:
        from cogdistill.report.figures import _plt

        _plt()


def latest_sweep(client, experiment: str) -> str:
    from cogdistill.tracking.run_format import Kind, kind_filter
    from cogdistill.tracking.store import shown_uri

    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], kind_filter(Kind.SWEEP), max_results=1,
                              order_by=["attributes.start_time DESC"]) if exp else []
    if not runs:
        raise CogdistillError(f"experiment '{experiment}' has no sweep parent run in {shown_uri(client.tracking_uri)}; "
                              "run a sweep (python -m cogdistill -m ...) or drop --parent.")
    return runs[0].info.run_id


def entry() -> None:
    """The installed command `cogdistill-report` (also `python -m cogdistill.report`)."""
    from cogdistill.exits import run_command

    run_command(lambda: sys.exit(main()))  # signals -> 130/143, one line for any error


if __name__ == "__main__":
    entry()
