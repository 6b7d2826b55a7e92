"""The 25 IFEval checks: for each, answers that only just pass and answers that only just fail."""

from typing import Any

import pytest

import verifiers.ifeval  # noqa: F401  (registers the checks)
from verifiers.ifeval.ifeval_checks import compare
from verifiers.ifeval.registry import check_parameters, get_check, known_instruction_ids

IFEVAL_IDS = [
    "change_case:capital_word_frequency",
    "change_case:english_capital",
    "change_case:english_lowercase",
    "combination:repeat_prompt",
    "combination:two_responses",
    "detectable_content:number_placeholders",
    "detectable_content:postscript",
    "detectable_format:constrained_response",
    "detectable_format:json_format",
    "detectable_format:multiple_sections",
    "detectable_format:number_bullet_lists",
    "detectable_format:number_highlighted_sections",
    "detectable_format:title",
    "keywords:existence",
    "keywords:forbidden_words",
    "keywords:frequency",
    "keywords:letter_frequency",
    "language:response_language",
    "length_constraints:nth_paragraph_first_word",
    "length_constraints:number_paragraphs",
    "length_constraints:number_sentences",
    "length_constraints:number_words",
    "punctuation:no_comma",
    "startend:end_checker",
    "startend:quotation",
]

ENGLISH = "The weather today is sunny and warm, and everyone in the town is outside enjoying it."
FRENCH = "Le temps est ensoleillé aujourd'hui et tout le monde en ville profite du soleil."

# (instruction_id, kwargs, answer, expected)
CASES: list[tuple[str, dict[str, Any], str, bool]] = [
    # keywords:existence: whole words, any case, multi-word phrases across line breaks
    ("keywords:existence", {"keywords": ["Cat", "dog"]}, "A cat met a DOG.", True),
    ("keywords:existence", {"keywords": ["cat", "dog"]}, "A category of dogs.", False),
    ("keywords:existence", {"keywords": ["machine learning"]}, "machine\nlearning works", True),
    ("keywords:existence", {"keywords": ["cat", "dog"]}, "Only a cat here.", False),
    # keywords:frequency: the boundary of each relation
    (
        "keywords:frequency",
        {"keyword": "run", "frequency": 3, "relation": "at least"},
        "Run, run, RUN!",
        True,
    ),
    (
        "keywords:frequency",
        {"keyword": "run", "frequency": 3, "relation": "at least"},
        "Run, run, runner!",
        False,
    ),
    (
        "keywords:frequency",
        {"keyword": "run", "frequency": 3, "relation": "less than"},
        "Run, run, RUN!",
        False,
    ),
    (
        "keywords:frequency",
        {"keyword": "run", "frequency": 3, "relation": "less than"},
        "Run, run, rerun!",
        True,
    ),
    # keywords:forbidden_words
    ("keywords:forbidden_words", {"forbidden_words": ["bad", "ugly"]}, "Badminton is fine.", True),
    ("keywords:forbidden_words", {"forbidden_words": ["bad", "ugly"]}, "Not BAD at all.", False),
    ("keywords:forbidden_words", {"forbidden_words": ["new york"]}, "I love New  York.", False),
    # keywords:letter_frequency: any case counts
    (
        "keywords:letter_frequency",
        {"letter": "z", "let_frequency": 2, "let_relation": "at least"},
        "Zig zag",
        True,
    ),
    (
        "keywords:letter_frequency",
        {"letter": "z", "let_frequency": 2, "let_relation": "less than"},
        "Zig zag",
        False,
    ),
    (
        "keywords:letter_frequency",
        {"letter": "z", "let_frequency": 2, "let_relation": "less than"},
        "Zig",
        True,
    ),
    # language:response_language
    ("language:response_language", {"language": "fr"}, FRENCH, True),
    ("language:response_language", {"language": "fr"}, ENGLISH, False),
    ("language:response_language", {"language": "en"}, "12345 !!! ...", False),  # undetectable
    ("language:response_language", {"language": "zh"}, "今天天气很好，我们去公园散步吧。", True),
    # length_constraints:number_sentences
    (
        "length_constraints:number_sentences",
        {"num_sentences": 3, "relation": "less than"},
        "One. Two! Three?",
        False,
    ),
    (
        "length_constraints:number_sentences",
        {"num_sentences": 3, "relation": "less than"},
        "One. Two!",
        True,
    ),
    (
        "length_constraints:number_sentences",
        {"num_sentences": 3, "relation": "at least"},
        "One. Two! Three?",
        True,
    ),
    (
        "length_constraints:number_sentences",
        {"num_sentences": 3, "relation": "at least"},
        "Pi is 3.14 and e is 2.72. Done.",
        False,
    ),  # decimals do not end sentences
    # length_constraints:number_paragraphs: *** divider lines only
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "A\n***\nB\n* * *\nC", True),
    (
        "length_constraints:number_paragraphs",
        {"num_paragraphs": 3},
        "***\nA\n***\nB\n***\nC\n***",
        True,
    ),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "A\n***\nB\n***\nC", False),
    (
        "length_constraints:number_paragraphs",
        {"num_paragraphs": 4},
        "A\n***\n***\nB\n***\nC",
        False,
    ),  # an empty paragraph between two dividers
    (
        "length_constraints:number_paragraphs",
        {"num_paragraphs": 2},
        "A ***bold*** word\n\nB",
        False,
    ),  # *** inside a line is emphasis, not a divider
    # length_constraints:number_words: exactly at the limit
    (
        "length_constraints:number_words",
        {"num_words": 5, "relation": "less than"},
        "one two three four five",
        False,
    ),
    (
        "length_constraints:number_words",
        {"num_words": 5, "relation": "less than"},
        "one two three four",
        True,
    ),
    (
        "length_constraints:number_words",
        {"num_words": 5, "relation": "at least"},
        "one, two - three... four five!",
        True,
    ),
    (
        "length_constraints:number_words",
        {"num_words": 5, "relation": "at least"},
        "don't x-ray the well-known",
        False,
    ),  # four words: inner ' and - join
    # length_constraints:nth_paragraph_first_word: blank-line paragraphs
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "Summary"},
        "Intro text.\n\n**Summary:** the end.",
        True,
    ),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "summary"},
        'Intro text.\n  \n"Summary" is a word.',
        True,
    ),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "summary"},
        "Intro text.\n\nSummary: the end.",
        False,
    ),  # two paragraphs, not three
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "sum"},
        "Intro text.\n\nSummary: the end.",
        False,
    ),
    # detectable_content:number_placeholders
    (
        "detectable_content:number_placeholders",
        {"num_placeholders": 2},
        "At [address] on [date].",
        True,
    ),
    (
        "detectable_content:number_placeholders",
        {"num_placeholders": 2},
        "At [address] on [ ].",
        False,
    ),
    (
        "detectable_content:number_placeholders",
        {"num_placeholders": 1},
        "No placeholder here.",
        False,
    ),
    # detectable_content:postscript
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hello.\n\nP.S. Bye.", True),
    (
        "detectable_content:postscript",
        {"postscript_marker": "P.S."},
        "Hello.\n\n**P.S** Bye.",
        True,
    ),
    (
        "detectable_content:postscript",
        {"postscript_marker": "P.S."},
        "Hello.\n\nP.P.S. Bye.",
        False,
    ),
    (
        "detectable_content:postscript",
        {"postscript_marker": "P.P.S"},
        "Hi.\nP.S. a\nP.P.S. b",
        True,
    ),
    (
        "detectable_content:postscript",
        {"postscript_marker": "P.S."},
        "Hello, see the P.S. below.",
        False,
    ),  # must start a line
    # detectable_format:number_bullet_lists: exactly n
    ("detectable_format:number_bullet_lists", {"num_bullets": 3}, "Intro\n* a\n- b\n  * c", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* a\n* b\n* c", False),
    (
        "detectable_format:number_bullet_lists",
        {"num_bullets": 2},
        "* a\n---\n-5 degrees\n* b",
        True,
    ),  # a rule and a negative number are not bullets
    # detectable_format:constrained_response
    ("detectable_format:constrained_response", {}, "My answer is maybe.", True),
    ("detectable_format:constrained_response", {}, "My answer is yes", False),  # no period
    ("detectable_format:constrained_response", {}, "My answer is yes. My answer is no.", False),
    # detectable_format:number_highlighted_sections
    (
        "detectable_format:number_highlighted_sections",
        {"num_highlights": 2},
        "*first* and **second**",
        True,
    ),
    (
        "detectable_format:number_highlighted_sections",
        {"num_highlights": 2},
        "*first* and 2 * 3 * 4\n* bullet",
        False,
    ),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 1}, "** ** and **", False),
    (
        "detectable_format:number_highlighted_sections",
        {"num_highlights": 1},
        "*not closed *",
        False,
    ),
    # detectable_format:multiple_sections
    (
        "detectable_format:multiple_sections",
        {"section_spliter": "SECTION", "num_sections": 2},
        "SECTION 1\nabc\n## SECTION 2\ndef",
        True,
    ),
    (
        "detectable_format:multiple_sections",
        {"section_spliter": "Section", "num_sections": 2},
        "Section 1\nabc, as Section 2 says",
        False,
    ),
    (
        "detectable_format:multiple_sections",
        {"section_spliter": "SECTION", "num_sections": 2},
        "Section 1\nabc\nSection 2\ndef",
        False,
    ),  # the marker's case is part of the instruction
    # detectable_format:json_format
    ("detectable_format:json_format", {}, '{"a": [1, 2]}', True),
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```', True),
    ("detectable_format:json_format", {}, "```JSON\n[1, 2]\n```\n", True),
    ("detectable_format:json_format", {}, 'Here it is: {"a": 1}', False),
    ("detectable_format:json_format", {}, '```json\n{"a": 1,}\n```', False),
    # detectable_format:title
    ("detectable_format:title", {}, "<<A Poem>>\nRoses are red.", True),
    ("detectable_format:title", {}, "<<<<Nested>>>> text", True),
    ("detectable_format:title", {}, "<<<<>>>> text", False),
    ("detectable_format:title", {}, "<<Broken\ntitle>>", False),
    # combination:two_responses
    ("combination:two_responses", {}, "First answer.\n******\nSecond answer.", True),
    ("combination:two_responses", {}, "Same.\n******\n  Same.  ", False),
    ("combination:two_responses", {}, "One\n******\n\n******\nTwo", False),
    ("combination:two_responses", {}, "One\n*****\nTwo", False),  # five asterisks
    # combination:repeat_prompt
    (
        "combination:repeat_prompt",
        {"prompt_to_repeat": "Write a poem\nabout cats."},
        "write a poem about cats. Here it is: ...",
        True,
    ),
    (
        "combination:repeat_prompt",
        {"prompt_to_repeat": "Write a poem about cats."},
        "Sure! Write a poem about cats. ...",
        False,
    ),
    # startend:end_checker
    (
        "startend:end_checker",
        {"end_phrase": "Any other questions?"},
        'Done. Any other questions?"',
        True,
    ),
    (
        "startend:end_checker",
        {"end_phrase": "Any other questions?"},
        "Done. Any other questions? Thanks.",
        False,
    ),
    # change_case:capital_word_frequency
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 2, "capital_relation": "at least"},
        "The NASA and ESA teams.",
        True,
    ),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 2, "capital_relation": "less than"},
        "The NASA and ESA teams.",
        False,
    ),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 2, "capital_relation": "less than"},
        "The Nasa and ESA teams.",
        True,
    ),
    # change_case:english_capital / english_lowercase
    ("change_case:english_capital", {}, ENGLISH.upper(), True),
    ("change_case:english_capital", {}, "I AGREE WITH YOU COMPLETELY.", True),
    ("change_case:english_capital", {}, ENGLISH.upper()[:-1] + "t.", False),
    ("change_case:english_capital", {}, FRENCH.upper(), False),
    ("change_case:english_lowercase", {}, ENGLISH.lower(), True),
    ("change_case:english_lowercase", {}, ENGLISH.lower() + " I", False),
    ("change_case:english_lowercase", {}, FRENCH.lower(), False),
    # punctuation:no_comma: code blocks are not exempt
    ("punctuation:no_comma", {}, "No commas here; none at all.", True),
    ("punctuation:no_comma", {}, "Fine.\n```python\nf(a, b)\n```", False),
    ("punctuation:no_comma", {}, "中文，逗号", False),
    # startend:quotation
    ("startend:quotation", {}, '  "The whole answer."\n', True),
    ("startend:quotation", {}, "“Curly quotes.”", True),
    ("startend:quotation", {}, '"', False),
    ("startend:quotation", {}, '"Quoted" then not.', False),
]


def _param(case: tuple[str, dict, str, bool]) -> Any:
    return pytest.param(*case, id=f"{case[0].split(':')[1]}-{'pass' if case[3] else 'fail'}")


@pytest.mark.parametrize(
    ("instruction_id", "kwargs", "answer", "expected"), [_param(c) for c in CASES]
)
def test_check(instruction_id: str, kwargs: dict, answer: str, expected: bool) -> None:
    assert get_check(instruction_id)(answer, **kwargs) is expected


def test_every_ifeval_type_is_registered_and_tested() -> None:
    assert set(IFEVAL_IDS) <= set(known_instruction_ids())
    tested = {(c[0], c[3]) for c in CASES}
    for instruction_id in IFEVAL_IDS:
        assert (instruction_id, True) in tested and (instruction_id, False) in tested


@pytest.mark.parametrize(
    ("instruction_id", "params"),
    [
        ("keywords:letter_frequency", ["letter", "let_frequency", "let_relation"]),
        ("change_case:capital_word_frequency", ["capital_frequency", "capital_relation"]),
        ("detectable_format:multiple_sections", ["section_spliter", "num_sections"]),
        (
            "length_constraints:nth_paragraph_first_word",
            ["num_paragraphs", "nth_paragraph", "first_word"],
        ),
        ("detectable_format:json_format", []),
    ],
)
def test_kwarg_names_are_ifevals(instruction_id: str, params: list[str]) -> None:
    assert check_parameters(instruction_id) == params


def test_letter_frequency_counts_any_case() -> None:
    check = get_check("keywords:letter_frequency")
    assert check("A bAnana", letter="a", let_frequency=4, let_relation="at least")
    assert not check("A bAnana", letter="a", let_frequency=4, let_relation="less than")


def test_a_relation_outside_ifevals_two_is_an_error() -> None:
    with pytest.raises(ValueError, match="relation must be one of"):
        compare(3, 3, "at most")


def test_language_detection_is_repeatable() -> None:
    check = get_check("language:response_language")
    mixed = "Hola amigo, the weather is bueno today y mañana también."
    assert len({check(mixed, language="es") for _ in range(5)}) == 1
