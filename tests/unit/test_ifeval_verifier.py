"""The `ifeval` verifier: label forms, the answer after `</think>`, scoring and bad labels."""

import asyncio
import json
from typing import Any

import pytest

from verifiers import VerifierResult, build_verifier, get_verifier_class
from verifiers.ifeval import IFEvalVerifier
from verifiers.ifeval.verifier import parse_label

# Two constraints: no commas, and exactly 2 bullet points.
LABEL = {
    "instruction_id": ["punctuation:no_comma", "detectable_format:number_bullet_lists"],
    "kwargs": [None, {"num_bullets": 2}],
}
BOTH = "* first point\n* second point"
ONLY_BULLETS = "* first, point\n* second point"
NEITHER = "* one, two"


def score(response: str, label: Any = LABEL, **options: Any) -> VerifierResult:
    verifier = build_verifier("ifeval", options)
    return asyncio.run(verifier(response, label, {"dataset": "ifeval", "ground_truth": label}))


def test_built_through_the_registry() -> None:
    assert get_verifier_class("ifeval") is IFEvalVerifier
    assert isinstance(build_verifier("ifeval", {"all_or_nothing": True}), IFEvalVerifier)


@pytest.mark.parametrize(
    "label",
    [
        LABEL,
        [LABEL],
        json.dumps(LABEL),
        json.dumps([LABEL]),
        repr(LABEL),  # Python literal: single quotes, None
        repr([LABEL]),
        # Dolci / open-instruct: every kwarg key present, null where unused
        [
            {
                "instruction_id": LABEL["instruction_id"],
                "kwargs": [
                    {"num_bullets": None, "keywords": None, "relation": None},
                    {"num_bullets": 2, "keywords": None, "relation": None},
                ],
            }
        ],
    ],
    ids=["dict", "list", "json", "json_list", "literal", "literal_list", "null_kwargs"],
)
def test_label_forms(label: Any) -> None:
    assert score(BOTH, label) == VerifierResult(1.0, "correct")
    assert score(ONLY_BULLETS, label) == VerifierResult(0.5, "failed:punctuation:no_comma")


def test_parsed_label_drops_null_kwargs() -> None:
    label = repr([{"instruction_id": ["startend:quotation"], "kwargs": [{"num_words": None}]}])
    [constraint] = parse_label(label)
    assert constraint.kwargs == {}


def test_a_constraint_met_only_while_thinking_does_not_count() -> None:
    response = f"<think>\n{BOTH}\n</think>\nOne, two."
    assert score(response) == VerifierResult(
        0.0, "failed:punctuation:no_comma,detectable_format:number_bullet_lists"
    )
    # ... and a comma in the thinking does not hurt an answer without one.
    assert score(f"<think>Hmm, ok.</think>\n{BOTH}") == VerifierResult(1.0, "correct")


@pytest.mark.parametrize(
    "response", ["", "  \n", "<think>* a\n* b</think>   ", "<think>* a\n* b, cut off"]
)
def test_empty_answer(response: str) -> None:
    assert score(response) == VerifierResult(0.0, "empty_response")


@pytest.mark.parametrize(
    ("response", "fraction", "all_or_nothing"),
    [(BOTH, 1.0, 1.0), (ONLY_BULLETS, 0.5, 0.0), (NEITHER, 0.0, 0.0)],
)
def test_fraction_or_all_or_nothing(response: str, fraction: float, all_or_nothing: float) -> None:
    assert score(response).score == fraction
    assert score(response, all_or_nothing=True).score == all_or_nothing


def test_three_constraints_score_in_thirds() -> None:
    label = {
        "instruction_id": ["startend:quotation", "punctuation:no_comma", "keywords:existence"],
        "kwargs": [{}, {}, {"keywords": ["sun"]}],
    }
    assert score('"Rain, rain."', label) == VerifierResult(
        1 / 3, "failed:punctuation:no_comma,keywords:existence"
    )


def test_kwargs_may_be_missing_or_a_single_dict() -> None:
    assert score('"Quoted."', {"instruction_id": ["startend:quotation"]}).score == 1.0
    label = {
        "instruction_id": "length_constraints:number_words",
        "kwargs": {"num_words": 2, "relation": "at least"},
    }
    assert score("two words", label).score == 1.0


@pytest.mark.parametrize(
    ("label", "message"),
    [
        (
            {"instruction_id": ["punctuation:no_comas"], "kwargs": [None]},
            r"unknown instruction_id 'punctuation:no_comas'; did you mean 'punctuation:no_comma'",
        ),
        (
            {"instruction_id": ["length_constraints:number_words"], "kwargs": [{"num_words": 3}]},
            r"'length_constraints:number_words'.*missing.*'relation'.*accepts: num_words, relation",
        ),
        (
            {"instruction_id": ["punctuation:no_comma"], "kwargs": [{"num_words": 3}]},
            r"'punctuation:no_comma'.*'num_words'.*accepts: none",
        ),
        (
            {
                "instruction_id": ["keywords:frequency"],
                "kwargs": [{"keyword": "a", "frequency": 1, "relation": "at most"}],
            },
            r"'keywords:frequency'.*relation must be one of",
        ),
        (
            {"instruction_id": ["punctuation:no_comma", "startend:quotation"], "kwargs": [None]},
            r"2 instruction ids but 1 kwargs",
        ),
        ({"instruction_id": [], "kwargs": []}, r"lists no constraints"),
        ({"kwargs": [None]}, r"an ifeval label is"),
        ("not a label {", r"neither JSON nor a Python literal"),
        ("__import__('os')", r"neither JSON nor a Python literal"),  # never evaluated
    ],
    ids=[
        "unknown_id",
        "missing_kwarg",
        "extra_kwarg",
        "bad_relation",
        "length_mismatch",
        "empty",
        "no_ids",
        "garbage",
        "code",
    ],
)
def test_bad_labels_raise_naming_the_problem(label: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        score(BOTH, label)


def test_a_bad_label_raises_even_for_an_empty_answer() -> None:
    with pytest.raises(ValueError, match="unknown instruction_id"):
        score("", {"instruction_id": ["nope"], "kwargs": [None]})
