"""The report at scale: the scatter grid is paged (a page a reader can read), at most a few pages are
drawn by default with a note of what was left out, and a small study's figure is as it was."""

from __future__ import annotations

import os

import matplotlib.image as mpimg
import pytest

from cogdistill.report import build, write_report
from cogdistill.report.__main__ import main, scatter_pages as parse_pages
from cogdistill.report.figures import (PAGE_COLS, PAGE_ROWS, draw_in_background, draw_scatter_pages, model_order,
                                       page_note, scatter_grid, scatter_pages, scatter_plan, write_all)
from cogdistill.report.synthetic import simulate


@pytest.fixture(scope="module")
def big():
    """8 models x 5 tasks = 40 cells: 2 blocks of models x 2 blocks of tasks = 4 pages."""
    return build(simulate(8, 5, 20, 1, seed=3), n_boot=20)


def test_small_study_is_one_page_without_a_note(tmp_path):
    report = build(simulate(4, 2, 30, 1, seed=1), n_boot=20)
    pages = scatter_pages(report)
    assert len(pages) == 1 and sorted(pages[0]) == sorted(report.alignment.select("model", "task").iter_rows())
    assert page_note(pages, 1, 1) == ""
    pngs = write_all(report, tmp_path)
    assert sorted(p.name for p in pngs if p.name.startswith("scatter_grid")) == ["scatter_grid.png"]
    height, width = mpimg.imread(pngs[0]).shape[:2]
    assert (width, height) == (round(2.6 * 2 * 90), round(2.2 * 4 * 90))  # 4 models x 2 tasks, no note strip


def test_pages_hold_every_cell_once_in_readable_blocks(big):
    pages = scatter_pages(big)
    assert len(pages) == 4
    cells = [c for page in pages for c in page]
    assert len(cells) == len(set(cells)) == big.alignment.height == 40
    for page in pages:
        assert len({m for m, _ in page}) <= PAGE_ROWS and len({t for _, t in page}) <= PAGE_COLS


def test_default_draws_one_page_and_says_what_was_left_out(big, tmp_path):
    pngs = scatter_grid(big, tmp_path / "scatter_grid.png")
    assert [p.name for p in pngs] == ["scatter_grid.png"]
    assert "3 of 4" not in page_note(scatter_pages(big), 1, 1) and "pages 2..4 not drawn" in page_note(
        scatter_pages(big), 1, 1)
    pages = scatter_pages(big)
    note = page_note(pages, 2, 1)
    left = 40 - len(pages[0]) - len(pages[1])
    assert note.startswith(f"page 1 of 4: {len(pages[0])} of 40 model x task cells")
    assert f"{left} cell(s) on pages 3..4 not drawn" in note and "--scatter-pages all" in note
    assert page_note(pages, 2, 2) == f"page 2 of 4: {len(pages[1])} of 40 model x task cells"
    assert "not drawn" not in page_note(pages, 4, 1)  # every page drawn: nothing left out


def test_all_pages_on_request(big, tmp_path):
    pngs = scatter_grid(big, tmp_path / "scatter_grid.png", max_pages=None)
    assert [p.name for p in pngs] == ["scatter_grid.png"] + [f"scatter_grid_p{k}.png" for k in (2, 3, 4)]


def test_markdown_links_every_drawn_page(tmp_path):
    _, files = write_report(simulate(8, 5, 20, 1, seed=3), tmp_path, n_boot=20, scatter_pages=3)
    md = (tmp_path / "report.md").read_text()
    assert {"figures/scatter_grid.png", "figures/scatter_grid_p2.png", "figures/scatter_grid_p3.png"} <= {
        str(f.relative_to(tmp_path)) for f in files}
    assert "figures/scatter_grid_p3.png" in md and "scatter_grid_p4" not in md


def test_scatter_pages_flag(capsys):
    assert parse_pages("all") is None and parse_pages("3") == 3
    with pytest.raises(SystemExit) as exc:
        main(["--synthetic", "3x1x20x1", "--scatter-pages", "0"])
    assert exc.value.code == 2
    assert "--scatter-pages 0" in capsys.readouterr().out


def test_pages_show_whole_families_teacher_student_base_first(big):
    order = model_order(big.study.models, big.alignment["model"].unique())
    roles = dict(big.study.models.select("model", "role").iter_rows())
    families = dict(big.study.models.select("model", "family").iter_rows())
    assert roles[order[0]] == "teacher" and sorted(order) == sorted(big.alignment["model"].unique())
    # a family's models are adjacent, teacher before student before base
    first = [m for m in order if families[m] == families[order[0]]]
    assert order[:len(first)] == first
    rank = {"teacher": 0, "student": 1, "base": 2, "rl": 3, "control": 4}
    assert [rank[roles[m]] for m in first] == sorted(rank[roles[m]] for m in first)
    assert [m for m, _ in scatter_pages(big)[0]][0] == order[0]
    assert roles[order[-1]] == "control"  # controls (no teacher in their family) come last


def test_background_drawing_gives_the_same_pages_as_drawing_here(big, tmp_path):
    plan = scatter_plan(big.items, big.alignment, big.study.models, tmp_path / "bg" / "scatter_grid.png", 2)
    pngs = draw_in_background(plan)()
    here = draw_scatter_pages(scatter_plan(big.items, big.alignment, big.study.models,
                                          tmp_path / "fg" / "scatter_grid.png", 2))
    assert [p.name for p in pngs] == [p.name for p in here] == ["scatter_grid.png", "scatter_grid_p2.png"]
    for a, b in zip(pngs, here):
        assert (mpimg.imread(a) == mpimg.imread(b)).all()


def test_a_failed_background_drawing_is_redrawn_here(big, tmp_path, monkeypatch):
    import os

    plan = scatter_plan(big.items, big.alignment, big.study.models, tmp_path / "scatter_grid.png", 1)
    real_fork = os.fork

    def fork_then_fail():  # the child exits at once without drawing
        pid = real_fork()
        if pid == 0:
            os._exit(3)
        return pid

    monkeypatch.setattr(os, "fork", fork_then_fail)
    pngs = draw_in_background(plan)()
    assert [p.name for p in pngs] == ["scatter_grid.png"] and pngs[0].exists()


def test_bootstraps_on_two_cores_give_each_cell_its_own_ci(big):
    from cogdistill.stats import correlation as stats

    checked = 0
    for row in big.alignment.filter(big.alignment["note"].is_null()).iter_rows(named=True):
        cell = big.items.filter((big.items["model"] == row["model"]) & (big.items["task"] == row["task"])
                                & big.items["human_difficulty"].is_not_null())
        low, high, note = stats.bootstrap_r_ci_checked(cell["human_difficulty"].to_numpy(),
                                                       cell["log_cost"].to_numpy(), n_boot=20, seed=0)
        assert (row["r_ci_low"], row["r_ci_high"], row["ci_note"]) == (low, high, note)
        checked += 1
    assert checked == big.alignment.height == 40


def test_split_map_is_a_loop_and_survives_a_failed_child(monkeypatch):
    import os

    from cogdistill.report.parallel import split_map

    def square(k):
        return k * k

    assert split_map(square, range(20)) == [k * k for k in range(20)]
    assert split_map(square, range(3)) == [0, 1, 4]  # too few to fork
    monkeypatch.setattr(os, "fork", forks_a_dying_child(os.fork))
    assert split_map(square, range(20)) == [k * k for k in range(20)]


def test_in_background_gives_the_result_raises_the_error_and_survives_a_dead_child(monkeypatch):
    import os

    from cogdistill.errors import CogdistillError
    from cogdistill.report.parallel import in_background

    assert in_background(lambda n: [os.getpid(), n * 2], 21)()[1] == 42
    assert in_background(lambda: os.getpid())() != os.getpid()  # computed in another process

    def fails():
        raise CogdistillError("no experiment 'x': pass --experiment <one of them>")

    with pytest.raises(CogdistillError, match="no experiment 'x'"):
        in_background(fails)()
    monkeypatch.setattr(os, "fork", forks_a_dying_child(os.fork))
    assert in_background(lambda: os.getpid())() == os.getpid()  # the child died: computed here


def forks_a_dying_child(real_fork):
    """An os.fork whose child exits at once: the parent must compute the child's share itself."""
    def fork():
        pid = real_fork()
        if pid == 0:
            os._exit(9)
        return pid
    return fork
