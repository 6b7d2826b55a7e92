"""The `code` and `code_stdio` verifiers: which block is run, how labels are read, how tests are
counted, and programs that try to pass without solving. Needs root (the sandbox does)."""

import asyncio
import json
import os
from typing import Any

import pytest

from verifiers import VerifierResult, build_verifier
from verifiers.code import last_python_block

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root for namespaces")

ADD = "```python\ndef add(a, b):\n    return a + b\n```"
ASSERTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add('a', 'b') == 'ab'"]
ECHO_SUM = "```python\nn = int(input())\nprint(sum(map(int, input().split())))\n```"
STDIO = [{"input": "3\n1 2 3\n", "output": "6\n"}, {"input": "1\n-5\n", "output": "-5"}]


def score(name: str, response: str, label: Any, **options: Any) -> VerifierResult:
    verifier = build_verifier(name, options)
    return asyncio.run(verifier(response, label, {"dataset": name, "ground_truth": label}))


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("```python\na = 1\n```", "a = 1\n"),
        ("```\na = 1\n```", "a = 1\n"),
        ("```py\na = 1\n```", "a = 1\n"),
        ("```python\nfirst\n```\ntext\n```python\nsecond\n```", "second\n"),
        ("```python\nkept\n```\n```bash\nls\n```", "kept\n"),  # other languages are skipped
        ("```python\nkept\n```\n```python\ncut off by max tokens", "kept\n"),
        ("no code here", None),
        ("```python\n\n```", None),
    ],
)
def test_last_python_block(response: str, expected: str | None) -> None:
    assert last_python_block(response) == expected


def test_correct_solution_passes_all_asserts() -> None:
    assert score("code", ADD, ASSERTS) == VerifierResult(1.0, "all_passed")


def test_label_may_be_a_json_string() -> None:
    assert score("code", ADD, json.dumps(ASSERTS)) == VerifierResult(1.0, "all_passed")
    assert score("code_stdio", ECHO_SUM, json.dumps(STDIO)) == VerifierResult(1.0, "all_passed")


def test_partial_pass_scores_the_fraction_and_all_or_nothing_scores_zero() -> None:
    numbers_only = "```python\ndef add(a, b):\n    return int(a) + int(b)\n```"
    assert score("code", numbers_only, ASSERTS) == VerifierResult(2 / 3, "some_failed")
    result = score("code", numbers_only, ASSERTS, all_or_nothing=True)
    assert result == VerifierResult(0.0, "some_failed")


@pytest.mark.parametrize(
    "program",
    [
        "def add(a, b):\n    return a - b",  # wrong
        "def add(a, b)\n    return a + b",  # syntax error
        "import sys\nsys.exit(0)",  # leaves before the asserts run
        "import os\nos._exit(0)",
        "def add(a, b):\n    while True:\n        pass",  # never returns
    ],
    ids=["wrong", "syntax_error", "sys_exit", "os_exit", "endless"],
)
def test_programs_that_do_not_solve_score_zero(program: str) -> None:
    response = f"```python\n{program}\n```"
    result = score("code", response, ASSERTS[:1], timeout_s=1.0)
    assert result == VerifierResult(0.0, "some_failed")


def test_last_block_is_the_one_run() -> None:
    response = f"Draft:\n```python\ndef add(a, b):\n    return 0\n```\nFixed:\n{ADD}"
    assert score("code", response, ASSERTS).score == 1.0
    assert score("code", f"{ADD}\nOops:\n```python\nadd = None\n```", ASSERTS).score == 0.0


def test_stdio_compares_stripped_lines() -> None:
    padded = (
        "```python\ninput()\nprint('  ' + str(sum(map(int, input().split()))) + '  \\n\\n')\n```"
    )
    assert score("code_stdio", padded, STDIO) == VerifierResult(1.0, "all_passed")
    wrong = "```python\nprint(6)\n```"
    assert score("code_stdio", wrong, STDIO) == VerifierResult(0.5, "some_failed")


def test_stdio_output_before_a_crash_does_not_pass() -> None:
    crash = "```python\nprint(6)\nraise SystemExit(1)\n```"
    assert score("code_stdio", crash, STDIO[:1]).score == 0.0


def test_stdio_program_may_call_exit() -> None:
    # Contest solutions end with exit(); it comes from site, which the sandbox keeps.
    quitter = "```python\ninput()\nprint(sum(map(int, input().split())))\nexit()\n```"
    assert score("code_stdio", quitter, STDIO).score == 1.0


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("code", []),
        ("code", "{not json"),
        ("code", [1, 2]),
        ("code", {"assert": "x"}),
        ("code_stdio", [{"input": "1"}]),
        ("code_stdio", json.dumps([{"input": 1, "output": "1"}])),
        ("code_stdio", ["assert True"]),
    ],
)
def test_bad_labels(name: str, label: Any) -> None:
    assert score(name, ADD, label) == VerifierResult(0.0, "bad_label")


def test_no_code() -> None:
    assert score("code", "The answer is add = lambda a, b: a + b", ASSERTS) == VerifierResult(
        0.0, "no_code"
    )


def test_a_row_with_one_assert_in_a_list_is_scored() -> None:
    from verifiers import score_row

    row = {"dataset": "code", "ground_truth": ["assert add(1, 2) == 3"]}
    result = asyncio.run(score_row(row, ADD, {"code": build_verifier("code")}))
    assert result.reasons == {"code": "all_passed"}
