"""The MLflow UI shows a sweep: a small replayed sweep, `mlflow ui` on 127.0.0.1, headless Chromium.

Checks what a user clicks through: the experiment's runs table (the parent and its child runs with
their role/family tags and r metrics), the parent run (the `r/<model>/<task>` and `report/...`
metrics, the report's artifacts and a figure rendered as an image) and the compare view of the
child runs. Screenshots go to tmp_path; with COGDISTILL_UPDATE_SCREENSHOTS=1 (`make ui-screenshots`)
they also replace the README's copies in docs/.

Needs Chromium and chromedriver (Debian: `apt-get install chromium chromium-driver`) and selenium
(in `.[dev]`); skips without them. Nothing is generated: the sweep replays simulated traces.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from cogdistill.report.synthetic import simulate
from helpers.mlflow_server import serve_mlflow
from helpers.report import replay_sweep

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
STUDY = "ui-test"
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")
VIEWPORT = (1400, 900)


def updating_docs() -> bool:
    """Only `make ui-screenshots` sets COGDISTILL_UPDATE_SCREENSHOTS=1: then the pictures also replace
    docs/mlflow-ui-*.png. Under plain pytest they stay in pytest's tmp_path; nothing in the repo changes."""
    return os.environ.get("COGDISTILL_UPDATE_SCREENSHOTS") == "1"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Teacher, base, student and control over 2 tasks x 60 items, replayed as one `-m` sweep."""
    # retaking the README's pictures (make ui-screenshots) without a browser is a failure, not a skip
    missing = pytest.fail if updating_docs() else pytest.skip
    if not (CHROMIUM and CHROMEDRIVER):
        missing("needs Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)")
    if importlib.util.find_spec("selenium") is None:
        missing("needs selenium (pip install -e '.[dev]')")
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("ui-sweep")
    env, _ = replay_sweep(root, simulate(n_models=4, n_tasks=2, n_items=60, n_samples=1), STUDY, bootstrap=100)
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name(STUDY)
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("cogdistill.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["model"] for r in children) == ["base-0", "control-3", "student-0", "teacher-0"]
    return {"root": root, "uri": env["MLFLOW_TRACKING_URI"], "experiment": exp.experiment_id, "parent": parent,
            "children": children, "tasks": children[0].data.tags["task"].split(",")}


@pytest.fixture(scope="module")
def ui(sweep):
    """`mlflow ui` over the sweep's store (the experiment's artifact location is on disk beside it),
    without the background job runner: a quicker start on a small shared machine."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with serve_mlflow(["ui", "--backend-store-uri", sweep["uri"]], sweep["root"] / "mlflow-ui.log", env=env,
                      timeout=180) as url:
        yield url


@pytest.fixture(scope="module")
def browser(ui, sweep):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--hide-scrollbars", f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        set_viewport(driver, *VIEWPORT)
        # The UI keeps its view state in localStorage: set it before the app loads. The assistant
        # panel closed, the "model training" sidebar, and the runs table showing the child runs
        # with role, family and r columns.
        driver.get(f"{ui}/health")
        table = {"selectedColumns": ["tags.`role`", "tags.`family`"]
                 + [f"metrics.`r/{task}`" for task in sweep["tasks"]],
                 "runsExpanded": {sweep["parent"].info.run_id: True}}
        driver.execute_script(
            "localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');"
            "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');"
            "localStorage.setItem('mlflow.workflowType_v1', JSON.stringify('machine_learning'));"
            "localStorage.setItem('MLflowLocalStorage-1.1-ExperimentPage-' + JSON.stringify([arguments[0]])"
            " + '-ReactComponentState', arguments[1]);",
            sweep["experiment"], json.dumps(table))
        yield driver
    finally:
        driver.quit()


# The compare view's tables are react-virtualized grids: a names column that cannot scroll itself and
# a values grid beside it that can (the names follow it). Scroll every such values grid one step.
SCROLL_GRIDS = """
const grids = [...document.querySelectorAll('.ReactVirtualized__Grid')].filter(
  g => g.scrollHeight > g.clientHeight + 2 && ['auto', 'scroll'].includes(getComputedStyle(g).overflowY));
if (!grids.length) return -1;
let moved = 0;
for (const g of grids) { const before = g.scrollTop; g.scrollTop = before + arguments[0]; moved += g.scrollTop - before; }
return moved;
"""


def scroll_and_collect(driver, step: int = 120, most: int = 60) -> str:
    """The text of every row the virtualised tables show while they are scrolled to their ends."""
    from selenium.webdriver.common.by import By

    seen = [driver.find_element(By.TAG_NAME, "body").text]
    for _ in range(most):
        moved = driver.execute_script(SCROLL_GRIDS, step)
        time.sleep(0.2)
        seen.append(driver.find_element(By.TAG_NAME, "body").text)
        if moved <= 0:  # no grid, or every grid at its end
            break
    return "\n".join(seen)


def set_viewport(driver, width: int, height: int) -> None:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def wait_for(driver, texts, shots: Path, name: str, timeout: float = 90, absent=()) -> str:
    """Poll the rendered page (a React app) until every text is on it (and no line is one of
    `absent`); returns the page's text."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while True:
        try:
            body = driver.find_element(By.TAG_NAME, "body").text
        except WebDriverException:  # the page is being replaced
            body = ""
        lines = body.splitlines()
        missing = [t for t in texts if t not in body] + [f"no line {t!r}" for t in absent if t in lines]
        if not missing:
            return body
        if time.monotonic() > deadline:
            driver.save_screenshot(str(shots / f"{name}-timeout.png"))
            pytest.fail(f"{name}: not shown after {timeout:.0f} s: {missing}\n"
                        f"(screenshot {shots / name}-timeout.png)\npage text:\n{body[:3000]}")
        time.sleep(0.3)


def wait_until(predicate, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.3)
    return result


def screenshot(driver, shots: Path, name: str) -> Path:
    out = shots / f"{name}.png"
    driver.save_screenshot(str(out))
    assert out.read_bytes()[:4] == b"\x89PNG"
    if updating_docs():
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(out, DOCS / out.name)
    return out


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def test_the_runs_table_lists_the_child_runs_with_roles_families_and_r(browser, ui, sweep, shots):
    children = sweep["children"]
    expected = [sweep["parent"].info.run_name, "role", "family", *(f"r/{t}" for t in sweep["tasks"])]
    for run in children:
        tags = run.data.tags
        expected += [run.info.run_name, tags["role"], tags["family"], repr(run.data.metrics[f"r/{sweep['tasks'][0]}"])]
    browser.get(f"{ui}/#/experiments/{sweep['experiment']}/runs?workflowType=machine_learning")
    wait_for(browser, expected, shots, "runs table")
    assert {r.data.tags["role"] for r in children} == {"teacher", "base", "student", "control"}
    screenshot(browser, shots, "mlflow-ui-runs")


def test_the_parent_run_shows_the_sweep_metrics_and_the_report(browser, ui, sweep, shots):
    from selenium.webdriver.common.by import By

    parent, exp = sweep["parent"], sweep["experiment"]
    run_url = f"{ui}/#/experiments/{exp}/runs/{parent.info.run_id}"
    metrics = ["report/r_teacher", "report/r_base", "report/r_student", "report/r_control",
               "report/student_vs_base_t", "report/inflation_vs_base", "report/rsa_human/teacher-0"]
    metrics += [f"r/{model}/{task}" for model in ("teacher-0", "student-0") for task in sweep["tasks"]]
    browser.get(run_url)
    wait_for(browser, [parent.info.run_name, "Child runs", *metrics, *(r.info.run_name for r in sweep["children"])],
             shots, "parent run")

    browser.get(f"{run_url}/artifacts/report/figures/r_by_role.png")
    figures = ["family_slopes.png", "inflation_regression.png", "r_by_role.png", "rsa_heatmap.png", "scatter_grid.png"]
    wait_for(browser, ["report.json", "report.md", "sweep_summary.csv", "report/figures/r_by_role.png", *figures],
             shots, "report artifacts")

    def rendered():
        imgs = browser.find_elements(By.CSS_SELECTOR, "img[alt$='r_by_role.png']")
        return imgs and browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", imgs[0])

    assert wait_until(rendered, "the r_by_role.png preview to render") > 100
    screenshot(browser, shots, "mlflow-ui-parent-run")


def test_the_compare_view_shows_the_r_metrics_and_tags_side_by_side(browser, ui, sweep, shots):
    from selenium.webdriver.common.by import By

    children = sweep["children"]
    ids = json.dumps([r.info.run_id for r in children])
    browser.get(f"{ui}/#/compare-runs?runs={ids}&experiments={json.dumps([sweep['experiment']])}")
    names = [r.info.run_name for r in children]
    wait_for(browser, [f"Comparing {len(children)} Runs", "Run details", "Metrics", "Tags", *names], shots, "compare")

    # Room for what matters: fold the plots, params and artifacts; metrics and tags that differ only.
    for section in ("Visualizations", "Parameters", "Artifacts"):
        browser.find_element(By.XPATH, f"//div[@role='button'][.//*[@aria-label='collapse {section}']]").click()
    for section in ("Metrics", "Tags"):
        browser.find_element(By.CSS_SELECTOR, f"button[aria-label='{section} - Show diff only']").click()
    # the metrics table is virtualised in a scroll box of its own: it renders the rows in view, so
    # scroll it and collect what it shows (cache_hits is the same in every run: "show diff only" hides it)
    body = wait_for(browser, ["acc/" + sweep["tasks"][0]], shots, "compare metrics", absent=["cache_hits"])
    seen = scroll_and_collect(browser)
    missing = [f"r/{t}" for t in sweep["tasks"] if f"r/{t}" not in seen]
    assert not missing and "cache_hits" not in seen, (missing, seen[-3000:])
    for key in ("role", "family"):  # a tag row: the key, then one value per run, in the runs' order
        row = next((line for line in body.splitlines() if line.startswith(key + " ")), "")
        assert row.split()[1:] == [r.data.tags[key] for r in children], (key, row)

    browser.execute_script(SCROLL_GRIDS, -10**6)  # the tables back at their first rows for the picture
    set_viewport(browser, VIEWPORT[0], 1250)  # run names, the r rows and the role/family tags in one picture
    browser.execute_script("window.scrollTo(0, 0)")
    browser.execute_script("arguments[0].scrollIntoView(true)",
                           browser.find_element(By.XPATH, "//*[@aria-label='collapse Run details']"))
    try:
        screenshot(browser, shots, "mlflow-ui-compare")
    finally:
        set_viewport(browser, *VIEWPORT)
