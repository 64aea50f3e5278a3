"""Syllogism tasks: the solver against the standard table, the item tables against the raw files,
the conclusion scorer, and bad input."""

import csv
import hashlib
import statistics
from math import log

import pytest
from omegaconf import OmegaConf

from cogdistill.config.schema import CONF_DIR, TaskConfig
from cogdistill.config.validate import validate
from cogdistill.tasks.load import load_task
from cogdistill.tasks.item_table import TaskDataError
from cogdistill.tasks.syllogism_solver import (
    SYLLOGISMS, encode_conclusion, encode_task, follows, valid_conclusions, valid_table,
)
from cogdistill.tasks.syllogisms import render, score_conclusion
from helpers.config import compose
from helpers.data import real_mirror

MIRROR = real_mirror()
needs_mirror = pytest.mark.skipif(
    MIRROR is None or not (MIRROR / "syllogisms" / "ccobra_Ragni2016.csv").is_file(),
    reason="real human data mirror (../shared/reference-data/syllogisms) absent")

# CCOBRA's list of the syllogisms with a valid conclusion (ccobra.syllogistic, existential import).
CCOBRA_VALID = {
    "AA1", "AA2", "AA4", "AE1", "AE2", "AE3", "AE4", "AI2", "AI4", "AO3", "AO4", "EA1", "EA2",
    "EA3", "EA4", "EI1", "EI2", "EI3", "EI4", "IA1", "IA4", "IE1", "IE2", "IE3", "IE4", "OA3", "OA4",
}

# Worked out by hand (figures: 1 a-b/b-c, 2 b-a/c-b, 3 a-b/c-b, 4 b-a/b-c), with existential import,
# weakened conclusions included. E.g. AE2 'All b are a; No c are b': the b's exist, are a's and are
# not c's, so 'Some a are not c'; nothing about all a's. EA1 'No a are b; All b are c': the b's are
# c's that are not a's, so only 'Some c are not a'. AA4 'All b are a; All b are c': some b exists,
# so 'Some a are c' (and its converse), but neither 'All'.
HAND_VALID = {
    "AA1": "Aac Iac Ica", "AE1": "Eac Eca Oac Oca", "IA1": "Iac Ica", "IE1": "Oac", "EA1": "Oca", "EI1": "Oca",
    "AA2": "Aca Iac Ica", "AI2": "Iac Ica", "AE2": "Oac", "IE2": "Oac", "EA2": "Eac Eca Oac Oca", "EI2": "Oca",
    "AE3": "Eac Eca Oac Oca", "EA3": "Eac Eca Oac Oca", "AO3": "Oca", "OA3": "Oac", "IE3": "Oac", "EI3": "Oca",
    "AA4": "Iac Ica", "AI4": "Iac Ica", "IA4": "Iac Ica", "AE4": "Oac", "EA4": "Oca", "IE4": "Oac",
    "EI4": "Oca", "AO4": "Oac", "OA4": "Oca",
}


def hand_valid(code):
    return set(HAND_VALID.get(code, "NVC").split())


# ------------------------------------------------------------------ solver

def test_solver_finds_exactly_the_27_standard_valid_syllogisms():
    table = valid_table()
    assert len(table) == 64 == len(set(SYLLOGISMS))
    with_valid = {s for s, v in table.items() if v != ["NVC"]}
    assert with_valid == CCOBRA_VALID and len(with_valid) == 27
    assert sum(v == ["NVC"] for v in table.values()) == 37


def test_solver_matches_the_hand_table_conclusion_by_conclusion():
    for code in SYLLOGISMS:
        assert set(valid_conclusions(code)) == hand_valid(code), code


def test_without_existential_import_the_weakened_and_existential_conclusions_go():
    # AA4, AE2, AE4, EA1, EA4 need an inhabited term; AA1 keeps only 'All a are c'
    table = valid_table(existential_import=False)
    assert {s for s, v in table.items() if v != ["NVC"]} == CCOBRA_VALID - {"AA4", "AE2", "AE4", "EA1", "EA4"}
    assert table["AA1"] == ["Aac"] and table["AE1"] == ["Eac", "Eca"]


def test_follows_on_single_premise_sets():
    assert follows([("A", "a", "b"), ("A", "b", "c")], ("A", "a", "c"))  # Barbara
    assert not follows([("A", "a", "b"), ("A", "b", "c")], ("A", "c", "a"))
    assert follows([("I", "a", "b"), ("A", "b", "c")], ("I", "c", "a"))  # Darii, converted


def test_encoding_follows_ccobra():
    code, terms = encode_task([("Some", "models", "managers"), ("All", "models", "clerks")])
    assert code == "IA4" and terms == {"a": "managers", "b": "models", "c": "clerks"}
    code, terms = encode_task([("No", "divers", "carpenters"), ("All", "linguists", "carpenters")])
    assert code == "EA3" and encode_conclusion(("No", "divers", "linguists"), terms) == "Eac"
    code, terms = encode_task([("All", "therapists", "climbers"), ("Some", "skaters", "therapists")])
    assert code == "AI2" and encode_conclusion(("Some", "skaters", "climbers"), terms) == "Ica"
    with pytest.raises(ValueError, match="share no middle term"):
        encode_task([("All", "x", "y"), ("All", "u", "v")])


def test_render_keeps_the_words_as_given():
    assert render(("All", "flower", "water")) == "All flower are water"
    assert render(("Some not", "metallic object", "cream")) == "Some metallic object are not cream"


# ------------------------------------------------------------------ configs and real data

def task_config(name, sha=None):
    cfg = OmegaConf.merge(OmegaConf.structured(TaskConfig), OmegaConf.load(CONF_DIR / "task" / f"{name}.yaml"))
    if sha is not None:
        cfg.sources.trials.sha256 = sha
        cfg.sources.trials.url = "http://127.0.0.1:9/unreachable.csv"
    return OmegaConf.to_object(cfg)


@pytest.mark.parametrize("name", ["syllogisms-wiens2021", "syllogisms-ragni2016"])
def test_configs_compose_and_validate(name):
    job = validate(compose([f"task=[{name}]"]))
    assert job.task[name].name == name


@needs_mirror
def test_wiens_items_match_independent_computation(tmp_path):
    path = MIRROR / "syllogisms" / "cogmods_wiens2021_data.csv"
    task = load_task(task_config("syllogisms-wiens2021"), mirror=str(MIRROR), cache=tmp_path, timeout_s=1)
    assert task.items.height == 15
    rows = list(csv.DictReader(open(path, newline="")))
    assert task.items["n_trials"].sum() == len(rows) == 1605  # incl. one duplicated row (participant 106)
    by_conclusion = {}
    for r in rows:
        by_conclusion.setdefault((r["task"], r["choices"]), []).append(r)
    got = {(row["premise1"], row["conclusion"]): row for row in task.items.iter_rows(named=True)}
    for (premises, choice), trials in by_conclusion.items():
        q, s, p = premises.split("/")[0].split(";")
        cq, cs, cp = choice.split(";")
        first = f"{q} {s} are {p}."
        concl = f"Some {cs} are not {cp}." if cq == "Some not" else f"{cq} {cs} are {cp}."
        row = got[(first, concl)]
        correct = [r for r in trials if r["response"] == r["truth"]]
        rts = [float(r["response_time"]) / 1000 for r in correct]
        assert row["target"] == trials[0]["truth"].lower()
        assert row["type_of_syllogism"] == trials[0]["type_of_syllogism"]
        assert row["n_trials"] == len(trials) and row["n_rt_trials"] == len(rts)
        assert row["accuracy"] == pytest.approx(len(correct) / len(trials))
        assert row["rt_mean"] == pytest.approx(statistics.fmean(rts))
        assert row["rt_median"] == pytest.approx(statistics.median(rts))
        assert row["log_rt_mean"] == pytest.approx(statistics.fmean(log(v) for v in rts))
        assert row["human_difficulty"] == row["rt_mean"]
    # the source's `truth` disagrees with logic under existential import on two items: 'All men are Y gene;
    # No Y gene are ova' does entail 'Some men are not ova' when men exist (likewise vehicle/boat)
    disagree = task.items.filter(task.items["solver_valid"] != (task.items["target"] == "true"))
    assert sorted(disagree["item_id"]) == ["AE1-men", "EA2-object-with-wheal"]
    prompt = task.prompts()[task.items["item_id"].to_list().index("AE2-flower")]
    assert "Premise 1: All flower are water.\nPremise 2: No computer are flower.\nConclusion: No computer are water." in prompt
    assert task.score("The conclusion does not follow.\nAnswer: false", row_target(task, "AE2-flower")).correct


def row_target(task, item_id):
    return task.items.filter(task.items["item_id"] == item_id)["target"][0]


def independent_code(premises):
    """Mood + figure and the end terms, by term positions (figure 1 a-b/b-c ... 4 b-a/b-c)."""
    (q1, s1, p1), (q2, s2, p2) = premises
    quant = {"All": "A", "Some": "I", "No": "E", "Some not": "O"}
    middle = ({s1, p1} & {s2, p2}).pop()
    a = p1 if s1 == middle else s1
    c = p2 if s2 == middle else s2
    figure = {(False, True): 1, (True, False): 2, (False, False): 3, (True, True): 4}[(s1 == middle, s2 == middle)]
    return quant[q1] + quant[q2] + str(figure), a, c


@needs_mirror
def test_ragni_items_match_independent_computation(tmp_path):
    path = MIRROR / "syllogisms" / "ccobra_Ragni2016.csv"
    task = load_task(task_config("syllogisms-ragni2016"), mirror=str(MIRROR), cache=tmp_path, timeout_s=1)
    assert task.items.height == 64 and task.items["n_trials"].sum() == 8896
    quant = {"All": "A", "Some": "I", "No": "E", "Some not": "O"}
    hits, counts = {}, {}
    for r in csv.DictReader(open(path, newline="")):
        code, a, c = independent_code([p.split(";") for p in r["task"].split("/")])
        if r["response"] == "NVC":
            answer = "NVC"
        else:
            q, s, p = r["response"].split(";")
            answer = quant[q] + ("ac" if (s, p) == (a, c) else "ca")
        counts[code] = counts.get(code, 0) + 1
        hits[code] = hits.get(code, 0) + (answer in hand_valid(code))
    assert set(counts) == set(SYLLOGISMS) and set(counts.values()) == {139}
    for row in task.items.iter_rows(named=True):
        acc = hits[row["item_id"]] / counts[row["item_id"]]
        assert row["accuracy"] == pytest.approx(acc), row["item_id"]
        assert row["human_difficulty"] == pytest.approx(1 - acc)
        assert row["rt_mean"] is None and row["n_rt_trials"] == 0
    aa1 = task.items.filter(task.items["item_id"] == "AA1").row(0, named=True)
    assert aa1["target"] == "All;artists;chemists|Some;artists;chemists|Some;chemists;artists"
    assert aa1["premise1"] == "All artists are bakers." and aa1["premise2"] == "All bakers are chemists."
    assert task.items.filter(task.items["target"] == "NVC").height == 37
    prompt = task.prompts()[0]
    assert prompt.count("\n- ") == 9 and "- No valid conclusion" in prompt and "- Some chemists are not artists" in prompt


# ------------------------------------------------------------------ scorer

AA1 = "All;artists;chemists|Some;artists;chemists|Some;chemists;artists"


def test_scorer_right_wrong_and_none():
    right = score_conclusion("All artists are bakers and all bakers are chemists.\nAnswer: All artists are chemists", AA1)
    assert right.correct and right.answer == "All;artists;chemists"
    text = "Hence\nAnswer: Some chemists are artists."
    weakened = score_conclusion(text, AA1)
    assert weakened.correct and weakened.start == text.index("Some chemists")
    wrong = score_conclusion("Answer: All chemists are artists", AA1)
    assert not wrong.correct and wrong.answer == "All;chemists;artists"
    assert score_conclusion("I cannot tell.", AA1) == score_conclusion("", "NVC")
    assert score_conclusion("I cannot tell.", AA1).answer is None


def test_scorer_negation_and_nvc():
    target = "Some not;artists;chemists"
    assert score_conclusion("Answer: Some artists are not chemists", target).correct
    assert score_conclusion("Answer: **Some artists aren't chemists**", target).correct
    assert not score_conclusion("Answer: Some artists are chemists", target).correct
    assert score_conclusion("Nothing links them.\nAnswer: No valid conclusion", "NVC").correct
    assert score_conclusion("so: NVC", "NVC").answer == "NVC"
    assert not score_conclusion("Answer: No valid conclusion", target).correct


def test_scorer_takes_the_last_conclusion_or_the_first_after_the_last_answer_marker():
    text = "Maybe no artists are chemists? No: some artists are chemists. Actually all artists are chemists"
    got = score_conclusion(text, AA1)
    assert got.answer == "All;artists;chemists" and got.start == text.index("all artists are chemists")
    text = "No artists are chemists?\nAnswer: No valid conclusion, although some artists are chemists could hold."
    got = score_conclusion(text, "NVC")
    assert got.answer == "NVC" and got.correct and got.start == text.index("No valid")
    # singular terms and 'of the' are accepted
    assert score_conclusion("Answer: Some of the chemists are not artist", "Some not;chemists;artists").correct


# ------------------------------------------------------------------ bad input

def _mirror(tmp_path, rel, text):
    path = tmp_path / "m" / rel
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return tmp_path / "m", hashlib.sha256(path.read_bytes()).hexdigest()


WIENS = "syllogisms/cogmods_wiens2021_data.csv"
RAGNI = "syllogisms/ccobra_Ragni2016.csv"
HEAD = "id,task,choices,response,truth,type_of_syllogism,response_time\n"


def test_wiens_missing_rt_column_is_named(tmp_path):
    mirror, sha = _mirror(tmp_path, WIENS, "id,task,choices,response,truth,type_of_syllogism\n"
                          "1,All;a;b/No;c;a,No;c;b,True,False,match-invalid\n")
    with pytest.raises(TaskDataError, match=r"cogmods_wiens2021_data.csv: missing column\(s\) \['response_time'\]"):
        load_task(task_config("syllogisms-wiens2021", sha), mirror=str(mirror), cache=tmp_path, timeout_s=1)


def test_wiens_bad_rt_and_bad_premise_are_quoted(tmp_path):
    mirror, sha = _mirror(tmp_path, WIENS, HEAD + "1,All;a;b/No;c;a,No;c;b,True,False,match-invalid,fast\n")
    with pytest.raises(TaskDataError, match=r"wiens2021_data.csv: column 'response_time' has 'fast'"):
        load_task(task_config("syllogisms-wiens2021", sha), mirror=str(mirror), cache=tmp_path, timeout_s=1)
    mirror, sha = _mirror(tmp_path / "2", WIENS, HEAD + "1,Most;a;b/No;c;a,No;c;b,True,False,match-invalid,900\n")
    with pytest.raises(TaskDataError, match=r"column 'task' has 'Most;a;b'"):
        load_task(task_config("syllogisms-wiens2021", sha), mirror=str(mirror), cache=tmp_path, timeout_s=1)


def test_wiens_synthetic_file_loads(tmp_path):
    # two trials of one item, one correct (RT 2 s): mean RT over correct trials only
    mirror, sha = _mirror(tmp_path, WIENS, HEAD + "1,All;a;b/No;c;a,No;c;b,False,False,match-invalid,2000\n"
                          "2,All;a;b/No;c;a,No;c;b,True,False,match-invalid,9000\n")
    task = load_task(task_config("syllogisms-wiens2021", sha), mirror=str(mirror), cache=tmp_path, timeout_s=1)
    row = task.items.row(0, named=True)
    assert row["item_id"] == "AE2-a" and row["accuracy"] == 0.5 and row["rt_mean"] == pytest.approx(2.0)
    assert row["solver_valid"] is False  # All a b, No c a: 'No c are b' does not follow


def test_ragni_premises_without_middle_term_are_reported(tmp_path):
    mirror, sha = _mirror(tmp_path, RAGNI, "id,task,response\n1,All;a;b/All;c;d,NVC\n")
    with pytest.raises(TaskDataError, match=r"ccobra_Ragni2016.csv: column 'task' has 'All;a;b/All;c;d'.*middle term"):
        load_task(task_config("syllogisms-ragni2016", sha), mirror=str(mirror), cache=tmp_path, timeout_s=1)
    mirror, sha = _mirror(tmp_path / "2", RAGNI, "id,task,response\n1,All;a;b/All;b;c,All;a;b\n")
    with pytest.raises(TaskDataError, match=r"column 'response' has 'All;a;b'"):
        load_task(task_config("syllogisms-ragni2016", sha), mirror=str(mirror), cache=tmp_path, timeout_s=1)
