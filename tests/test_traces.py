"""Reasoning/answer split and token counting on hand-written traces."""

import pytest

from cogdistill.engines.base import Generation
from cogdistill.tasks.scorers import score_integer
from cogdistill.traces.records import split_point, tokens_before, trace_row
from helpers.traces import CharTokenizer

TOK = CharTokenizer()


def row(text, *, think=("<think>", "</think>"), finish="stop", target="56", ids=True, reasoning=None):
    gen = Generation(text=text, token_ids=tuple(TOK.encode(text)) if ids else None, prompt_tokens=5,
                     finish_reason=finish, latency_s=0.1, reasoning_text=reasoning)
    return trace_row(gen, tokenizer=TOK, think_start=think[0], think_end=think[1],
                     score=lambda t: score_integer(t, target))


def test_think_tags_split_reasoning_from_answer():
    r = row("<think>7 x 8 is 56</think>The answer is 56.")
    assert r["reasoning_text"] == "7 x 8 is 56"  # content only: the tags are markup
    assert r["reasoning_tokens"] == len("7 x 8 is 56")
    assert r["answer_tokens"] == len("The answer is 56.")
    assert r["total_tokens"] == len("<think>7 x 8 is 56</think>The answer is 56.")  # markup counts here only
    assert r["correct"] and not r["censored"] and r["extracted_answer"] == "56"


def test_r1_style_output_with_only_the_closing_tag():
    r = row("hmm 7*8=56\n</think>\n\n**Answer: 56**")
    assert r["reasoning_tokens"] == len("hmm 7*8=56\n")
    assert r["answer_text"].strip() == "**Answer: 56**" and r["correct"]


def test_censored_inside_reasoning_is_flagged_and_all_tokens_are_reasoning():
    r = row("<think>let me count 1, 2, 3, 4", finish="length")
    assert r["censored"] and r["answer_tokens"] == 0
    assert r["reasoning_tokens"] == len("let me count 1, 2, 3, 4")
    assert not r["correct"]  # a number inside unfinished reasoning is no answer


def test_no_tags_reasoning_is_everything_before_the_final_answer_line():
    text = "First, 7 x 8.\nSeven eights are 56.\nSo, the answer is 56."
    r = row(text, think=(None, None))
    assert r["reasoning_text"] == "First, 7 x 8.\nSeven eights are 56.\n"
    assert r["answer_text"] == "So, the answer is 56."
    assert r["reasoning_tokens"] + r["answer_tokens"] == len(text) and r["correct"]


def test_no_tags_single_line_answer_has_zero_reasoning_tokens():
    r = row("7 x 8 = 54", think=(None, None))
    assert r["reasoning_tokens"] == 0 and r["answer_tokens"] == len("7 x 8 = 54") and not r["correct"]


def test_no_tags_cut_by_max_tokens_is_censored():
    r = row("Step 1: multiply 7 by", think=(None, None), finish="length")
    assert r["censored"]


def test_server_reasoning_field_is_counted_with_the_tokenizer():
    r = row("The answer is 56.", reasoning="seven times eight", ids=False)
    assert r["reasoning_tokens"] == len("seven times eight") and r["answer_tokens"] == len("The answer is 56.")


def test_counts_without_token_ids_match_counts_with_them():
    text = "<think>a b c</think> 56"
    assert {k: v for k, v in row(text).items() if k != "latency_s"} == \
        {k: v for k, v in row(text, ids=False).items() if k != "latency_s"}


def test_split_point_and_tokens_before_on_multi_char_tokens():
    assert split_point("abc</think>xy", "</think>", None) == len("abc</think>")
    assert split_point("line one\nAnswer: 5", None, 17) == len("line one\n")
    vocab = ["ab", "c</th", "ink>", "xy"]
    decode = lambda ids: "".join(vocab[i] for i in ids)
    text = decode([0, 1, 2, 3])
    assert tokens_before([0, 1, 2, 3], split_point(text, "</think>", None), text, decode) == 3


@pytest.mark.parametrize("text,expected", [
    ("so \\boxed{63} and 7", "63"), ("Answer: 1,024", "1024"), ("the answer is 12.", "12"),
    ("we get 5 then 6", "6"), ("no digits", None),
])
def test_integer_scorer_extraction(text, expected):
    assert score_integer(text, "63").answer == expected


def test_server_reasoning_field_cut_by_max_tokens_is_censored():
    r = row("", reasoning="seven times eight is", ids=False, finish="length")
    assert r["censored"] and r["answer_tokens"] == 0


@pytest.mark.parametrize("text,target,answer,correct", [
    ("The conclusion follows, so: TRUE", "true", "true", True), ("Yes, wait... no.", "true", "false", False),
    ("It is invalid.", "false", "false", True), ("hmm", "true", None, False),
])
def test_true_false_scorer(text, target, answer, correct):
    from cogdistill.tasks.scorers import score_true_false

    scored = score_true_false(text, target)
    assert (scored.answer, scored.correct) == (answer, correct)
