"""Relational reasoning tasks (CCOBRA relational data): solvers, item tables, scorer, bad input."""

import csv
import hashlib
import statistics
from collections import Counter, defaultdict

import pytest
from omegaconf import OmegaConf

from cogdistill.config.schema import CONF_DIR, TaskConfig
from cogdistill.tasks.load import load_task
from cogdistill.tasks.item_table import TaskDataError
from cogdistill.tasks.relational import (
    build_carddir_items_all, build_verification_items_whole, normalise_direction, score_direction,
)
from cogdistill.tasks.spatial import (
    DIRECTIONS, SpatialError, arrangement_consistent, cardinal_answers, linear_models, parse_premises, verify,
)
from helpers.data import real_mirror

P = parse_premises
FOLDER = "ccobra-relational-rt"
needs_mirror = pytest.mark.skipif(
    real_mirror() is None or not (real_mirror() / FOLDER / "3ps.csv").is_file(),
    reason="real human data mirror (../shared/reference-data) absent",
)


def task_config(name: str, **changes) -> TaskConfig:
    cfg = OmegaConf.merge(OmegaConf.structured(TaskConfig), OmegaConf.load(CONF_DIR / "task" / f"{name}.yaml"))
    for key, value in changes.items():
        OmegaConf.update(cfg, key, value)
    return OmegaConf.to_object(cfg)


def load(name, tmp_path, mirror=None, **changes):
    return load_task(task_config(name, **changes), mirror=str(mirror or real_mirror()), cache=tmp_path, timeout_s=1)


# ---- (1) solvers on hand-checked problems ---------------------------------------------------

def test_linear_verification_by_hand():
    # A left of B, B left of C: the only order is A B C, so A is left of C and C is not left of A
    assert linear_models(P("Left;A;B/Left;B;C")) == [("A", "B", "C")]
    assert verify(P("Left;A;B/Left;B;C"), ("left", "A", "C")) is True
    assert verify(P("Left;A;B/Left;B;C"), ("left", "C", "A")) is False
    # B right of A, B left of C: again A B C, so "C right of A" is true (3ps Task-ID 7)
    assert verify(P("Right;B;A/Left;B;C"), ("right", "C", "A")) is True
    # 4ps TaskID 60 as stored: A<B, C<D, C<B -> A D C B? no: A and C both left of B, D right of C;
    # orders include A C D B (A left of D) and C D A B (A right of D): indeterminate
    assert verify(P("Right;B;A/Right;D;C/Right;B;C"), ("left", "A", "D")) is None
    # the determinate twin (C R B instead of B R C): D C B A reversed -> A B C D, A left of D
    assert verify(P("Right;B;A/Right;D;C/Right;C;B"), ("left", "A", "D")) is True
    with pytest.raises(SpatialError, match="inconsistent"):
        verify(P("Left;A;B/Left;B;A"), ("left", "A", "B"))


def test_arrangement_consistency_by_hand():
    premises = P("Left;A;B/Left;B;C/Left;B;D/Left;D;E")
    # A<B, B<C, B<D<E: C can go after B, after D or after E -> 3 orders
    assert sorted(linear_models(premises)) == [tuple("ABCDE"), tuple("ABDCE"), tuple("ABDEC")]
    assert arrangement_consistent(premises, P("Left;A;B/Left;B;D/Left;D;E/Left;E;C")) is True  # A B D E C
    assert arrangement_consistent(premises, P("Left;A;C/Left;C;B/Left;B;D/Left;D;E")) is False  # C before B
    west = P("West;A;B/West;C;A/West;A;D/West;D;E")  # C A B D E is one of its orders
    assert arrangement_consistent(west, P("West;C;A/West;A;B/West;B;D/West;D;E")) is True
    with pytest.raises(SpatialError, match="one order"):
        arrangement_consistent(premises, P("Left;A;B/Left;C;D"))


def test_cardinal_composition_by_hand():
    # museum(A) north of station(B), B north of bar(C): C is due south of A
    assert cardinal_answers(P("north;A;B/north;B;C"), "C", "A") == {"south"}
    # A north of B (same x), B east of C (same y): A - C = (+x, +y) -> C is south-west of A
    assert cardinal_answers(P("north;A;B/east;B;C"), "C", "A") == {"south-west"}
    # A north of B, B south-east of C: x of A - C is +, y is open -> C is west, NW or SW of A
    assert cardinal_answers(P("north;A;B/south-east;B;C"), "C", "A") == {"west", "north-west", "south-west"}
    # opposite directions: the x order is fixed (same), y open; "same place" is no answer
    assert cardinal_answers(P("north;A;B/south;B;C"), "C", "A") == {"north", "south"}
    assert cardinal_answers(P("north-east;A;B/south-west;B;C"), "C", "A") == set(DIRECTIONS)
    # 32 of the 64 compositions are unique: 18 x-conflicts + 18 y-conflicts - 4 both = 32 ambiguous
    unique = sum(len(cardinal_answers([(d1, "A", "B"), (d2, "B", "C")], "C", "A")) == 1
                 for d1 in DIRECTIONS for d2 in DIRECTIONS)
    assert unique == 32


# ---- (3) the direction scorer ---------------------------------------------------------------

@pytest.mark.parametrize("text, target, answer, correct", [
    ("The bar lies below and left, so south-west.\nAnswer: south-west", "south-west", "south-west", True),
    ("Answer: Northeast", "north-east", "north-east", True),
    ("Answer: **NE**", "north-east", "north-east", True),
    ("So it is \\boxed{\\text{north west}}", "north-west", "north-west", True),
    ("I first thought north, but it is south.", "south", "south", True),
    ("Answer: east. Wait, no. Answer: west", "east", "west", False),
    ("It must be SW.", "south-west", "south-west", True),
    ("Answer: south", "north|south", "south", True),
    ("I cannot tell.", "south", None, False),
])
def test_score_direction(text, target, answer, correct):
    scored = score_direction(text, target)
    assert (scored.answer, scored.correct) == (answer, correct)
    if answer is not None:  # start is where the direction word itself begins
        assert normalise_direction(text[scored.start:].split(".")[0].split("\n")[0].strip("*}")) == answer


def test_score_direction_start_points_at_the_final_answer():
    text = "North of the station is the museum.\nAnswer: south-west"
    scored = score_direction(text, "south-west")
    assert scored.start == text.index("south-west") and scored.correct
    text = "Answer: east. Wait, no. Answer: west"
    assert score_direction(text, "west").start == text.rindex("west")


# ---- (2) real data against independent computations ----------------------------------------

def rows(name):
    with open(real_mirror() / FOLDER / name, newline="") as handle:
        return list(csv.DictReader(handle))


def check_table(task, reference):
    assert sorted(task.items["item_id"]) == sorted(reference)
    for row in task.items.iter_rows(named=True):
        want = reference[row["item_id"]]
        assert row["n_trials"] == want["n"] and row["target"] == want["target"], row["item_id"]
        assert row["accuracy"] == pytest.approx(want["acc"])
        assert row["rt_mean"] == pytest.approx(want["rt"]) and row["human_difficulty"] == row["rt_mean"]


def reference_verification(file, id_col, valid_col, correct_col, drop=(), whole=False):
    groups = defaultdict(list)
    for r in rows(file):
        if r[id_col] not in drop:
            groups[r[id_col]].append(r)
    out = {}
    for task_id, trials in groups.items():
        ok = [r for r in trials if r[correct_col] == "True"]
        rt = [(float(r["rt_ms"]) - (0 if whole else float(r["questionTime"]))) / 1000 for r in ok]
        out[f"{int(task_id):03d}"] = {"n": len(trials), "acc": len(ok) / len(trials), "rt": statistics.fmean(rt),
                                      "target": "true" if trials[0][valid_col] == "1" else "false"}
    return out


@needs_mirror
def test_real_3ps_items(tmp_path):
    task = load("relational-3ps", tmp_path)
    assert task.items.height == 16 and task.items["n_trials"].sum() == 611
    check_table(task, reference_verification("3ps.csv", "Task-ID", "korrekt", "lastcorrect"))
    ref_whole = reference_verification("3ps.csv", "Task-ID", "korrekt", "lastcorrect", whole=True)
    for item_id, whole in zip(task.items["item_id"], task.items["whole_rt_s"]):
        assert whole == pytest.approx(ref_whole[item_id]["rt"])
    assert task.prompts()[0].startswith("Premises:\nThe A is to the left of the B.\nThe B is to the left of the C.\n")
    assert task.score("A<B<C, so yes.\nAnswer: true", "true").correct


@needs_mirror
def test_real_4ps_items_drop_the_indeterminate_problems(tmp_path):
    task = load("relational-4ps", tmp_path)
    assert task.items.height == 45 and 60 not in task.items["task_id"].to_list()
    check_table(task, reference_verification("4ps.csv", "TaskID", "logicallycorrect", "response_correct",
                                             drop=("60", "108", "156")))


@needs_mirror
def test_whole_problem_time_builder(tmp_path):
    cfg = task_config("relational-3ps")
    items, _ = build_verification_items_whole({"trials": real_mirror() / FOLDER / "3ps.csv"}, cfg)
    ref = reference_verification("3ps.csv", "Task-ID", "korrekt", "lastcorrect", whole=True)
    for row in items.iter_rows(named=True):
        assert row["rt_mean"] == pytest.approx(ref[row["item_id"]]["rt"]) == pytest.approx(row["whole_rt_s"])


UNIT = {"north": (0, 1), "south": (0, -1), "east": (1, 0), "west": (-1, 0)}


def unit(direction):
    """'north-east' -> (1, 1): an independent encoding of the 8 directions."""
    vec = [UNIT[part] for part in direction.split("-")]
    return tuple(sum(v[i] for v in vec) for i in range(2))


def reference_carddir():
    """A = B + d1, B = C + d2, question 'C ? A' -> C - A = -(d1 + d2) when no axis has opposite signs."""
    groups = defaultdict(list)
    for r in rows("Ragni2018_carddir.csv"):
        groups[r["Task-ID"]].append(r)
    out = {}
    for task_id, trials in groups.items():
        (d1, _, _), (d2, _, _) = [p.split(";") for p in trials[0]["task"].split("/")]
        v1, v2 = unit(d1), unit(d2)
        if any(a * b < 0 for a, b in zip(v1, v2)):
            continue  # an axis is open: several answers
        sign = tuple(-((a + b) > 0) + ((a + b) < 0) for a, b in zip(v1, v2))
        target = next(d for d in DIRECTIONS if unit(d) == sign)
        ok = [r for r in trials if r["response"].split(";")[0] == target]
        out[f"{int(task_id):03d}"] = {"n": len(trials), "acc": len(ok) / len(trials), "target": target,
                                      "rt": statistics.fmean(float(r["rt_ms"]) / 1000 for r in ok),
                                      "modal": Counter(r["response"].split(";")[0] for r in trials).most_common(1)[0][0]}
    return out


@needs_mirror
def test_real_carddir_items(tmp_path):
    task = load("relational-carddir", tmp_path)
    ref = reference_carddir()
    assert task.items.height == 32 and len(ref) == 32
    check_table(task, ref)
    # the derived answer is what most participants chose, on every unique problem
    assert all(want["modal"] == want["target"] for want in ref.values())
    assert task.score("The bar is south of the museum.\nAnswer: South", "south").correct


@needs_mirror
def test_carddir_all_keeps_ambiguous_problems(tmp_path):
    items, _ = build_carddir_items_all({"trials": real_mirror() / FOLDER / "Ragni2018_carddir.csv"},
                                       task_config("relational-carddir"))
    assert items.height == 64 and (items["n_answers"] > 1).sum() == 32
    row = items.filter(items["item_id"] == "005").row(0, named=True)  # north + south
    assert row["target"] == "north|south"
    # 21 said north and 20 south (both possible); the other 8 are wrong
    assert row["accuracy"] == pytest.approx(41 / 49)


def reference_smalllarge():
    groups = defaultdict(list)
    for r in rows("Ragni2018_smalllarge.csv"):
        groups[r["Task-ID"]].append(r)
    out = {}
    for task_id, trials in groups.items():
        premises = [p.split(";") for p in trials[0]["task"].strip("/").split("/")]
        chain = [p.split(";") for p in trials[0]["choices"].strip("/").split("/")]
        # the chain is x1 < x2 < ... written as adjacent pairs; follow it
        order = [chain[0][1]] + [c[2] for c in chain]
        assert all(c[1] == order[i] for i, c in enumerate(chain))
        pos = {obj: i for i, obj in enumerate(order)}
        consistent = all(pos[x] < pos[y] for _, x, y in premises)  # Left/West: x before y
        ok = [r for r in trials if (r["response"] == "TRUE") == consistent]
        out[f"{int(task_id):03d}"] = {"n": len(trials), "acc": len(ok) / len(trials),
                                      "target": str(consistent).lower(),
                                      "rt": statistics.fmean(float(r["rt_ms"]) / 1000 for r in ok)}
    return out


@needs_mirror
def test_real_smalllarge_items(tmp_path):
    task = load("relational-smalllarge", tmp_path)
    ref = reference_smalllarge()
    assert task.items.height == 48 and sum(w["target"] == "true" for w in ref.values()) == 24
    check_table(task, ref)
    prompts = dict(zip(task.items["item_id"], task.prompts()))
    assert "apricot tree" in prompts["013"] and prompts["001"] != prompts["025"]  # 25 repeats 1 with other names


# ---- (4) bad input ---------------------------------------------------------------------------

def write(tmp_path, text):
    path = tmp_path / "mirror" / FOLDER / "3ps.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return tmp_path / "mirror", hashlib.sha256(path.read_bytes()).hexdigest()


HEADER = "Task-ID,task,choices,korrekt,lastcorrect,questionTime,rt_ms\n"


def test_missing_column_names_the_file_and_column(tmp_path):
    mirror, sha = write(tmp_path, "Task-ID,task,choices,korrekt,lastcorrect,rt_ms\n1,Left;A;B/Left;B;C,Left;A;C,1,True,900\n")
    with pytest.raises(TaskDataError, match=r"3ps\.csv: missing column\(s\) \['questionTime'\]"):
        load("relational-3ps", tmp_path, mirror=mirror, **{"sources.trials.sha256": sha})


def test_validity_that_contradicts_the_premises_is_rejected(tmp_path):
    mirror, sha = write(tmp_path, HEADER + "1,Left;A;B/Left;B;C,Left;A;C,0,False,500,1400\n")
    with pytest.raises(TaskDataError, match=r"3ps\.csv: Task-ID 1: column 'korrekt' says False"):
        load("relational-3ps", tmp_path, mirror=mirror, **{"sources.trials.sha256": sha})


def test_bad_flag_and_bad_time_name_the_column(tmp_path):
    mirror, sha = write(tmp_path, HEADER + "1,Left;A;B/Left;B;C,Left;A;C,1,maybe,500,1400\n")
    with pytest.raises(TaskDataError, match=r"3ps\.csv: column 'lastcorrect' has 'maybe'"):
        load("relational-3ps", tmp_path, mirror=mirror, **{"sources.trials.sha256": sha})
    mirror, sha = write(tmp_path, HEADER + "1,Left;A;B/Left;B;C,Left;A;C,1,True,500,n/a\n")
    with pytest.raises(TaskDataError, match=r"3ps\.csv: column 'rt_ms' has 'n/a'"):
        load("relational-3ps", tmp_path, mirror=mirror, **{"sources.trials.sha256": sha})
