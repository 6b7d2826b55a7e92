"""The `code` and `code_stdio` verifiers: which block is run, how labels are read, how tests are
counted, honest solutions judged as Python would, and programs that try to pass without solving,
among them ones that tamper with the harness or its decoder, and the test shapes that are split
and those that fail as unsupported. Needs a sandbox (root, or user namespaces)."""

import asyncio
import json
import subprocess
import time
from typing import Any

import pytest

from verifiers import VerifierResult, build_verifier
from verifiers.code import last_python_block
from verifiers.sandbox import SandboxUnavailable
from verifiers.sandbox_probe import host_isolation


def no_sandbox() -> str | None:
    try:
        host_isolation()
    except SandboxUnavailable as error:
        return str(error)
    return None


pytestmark = pytest.mark.skipif(bool(no_sandbox()), reason=f"{no_sandbox()}")

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


# `assert solve(2) == 4`, split into probe and check; and the same inside a loop, unrolled.
SOLVE_FORMS = [["assert solve(2) == 4"], ["for n, want in [(2, 4)]:\n    assert solve(n) == want"]]
LIAR = """
class Liar:
    def __eq__(self, other):
        return True
"""
FIVE = """
class Five(int):  # 5, whatever it says
    def __eq__(self, other):
        return True
    __hash__ = int.__hash__
"""
FIND_TOKEN = """
import gc, os, re, sys, types
found = set()
def look(value):
    if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{32}\\n?", value):
        found.add(value.strip())
for obj in gc.get_objects():
    if isinstance(obj, types.FunctionType):
        for value in obj.__defaults__ or ():
            look(value)
frame = sys._getframe()
while frame is not None:
    for value in list(frame.f_locals.values()):
        look(value)
    frame = frame.f_back
def write_everywhere(text):
    for token in found:
        for fd in range(1, 10):
            try:
                os.write(fd, text.format(token=token).encode())
            except OSError:
                pass
"""
TAMPERING = {
    "calls_the_harness_completion": "import os\n__olmorl_done()\nos._exit(0)",
    "eq_always_true": LIAR + "def solve(n):\n    return Liar()",
    "int_subclass_with_lying_eq": FIVE + "def solve(n):\n    return Five(5)",
    "repr_of_the_expected_value": """
class Four:
    def __repr__(self):
        return "4"
def solve(n):
    return Four()
""",
    "system_exit_inside_eq": """
class Leave:
    def __eq__(self, other):
        raise SystemExit(0)
def solve(n):
    return Leave()
""",
    # The test read back from the file the program runs from, and its expected value returned.
    "reads_the_test_from_disk": """
import re
found = re.search(r"solve\\(2\\) == (\\d+)|\\(2, (\\d+)\\)", open(__file__).read())
def solve(n):
    return int(found.group(1) or found.group(2))
""",
    "overrides_builtins": """
import builtins
builtins.exec = builtins.eval = builtins.compile = lambda *args, **kwargs: None
builtins.repr = builtins.str = lambda value: "4"
builtins.print = lambda *args, **kwargs: None
builtins.type = lambda value: int
builtins.isinstance = lambda *args: True
def solve(n):
    return 5
""",
    "prints_a_fake_report": "print(\"('i4',)\")\nprint('\\n' + '0' * 32)\nimport os\nos._exit(0)",
    # The token found in the harness's function defaults or frames, and written wherever it may
    # count, as the harness would write it: to stdout and every other descriptor.
    "finds_the_token_by_introspection": FIND_TOKEN
    + "write_everywhere('\\n{token}\\n')\nos._exit(0)",
    # The same as a report in the harness's format: the token, then a guessed value.
    "forges_a_report_with_the_token": FIND_TOKEN
    + "write_everywhere(\"{token}\\n('i5',)\\n\")\nos._exit(0)",
}
HONEST = {
    "int": "def solve(n):\n    return 4",
    "float": "def solve(n):\n    return 4.0",  # 4.0 == 4, as in Python
    "int_enum": "import enum\nE = enum.IntEnum('E', {'FOUR': 4})\nsolve = lambda n: E.FOUR",
    "int_subclass_valued_4": FIVE + "def solve(n):\n    return Five(4)",
    "prints": "print('debugging', 4)\ndef solve(n):\n    return n * 2",
    # Annotations as strings: the future import must come first in the program.
    "future_import": "from __future__ import annotations\ndef solve(n: int) -> int:\n    return 4",
}


@pytest.mark.parametrize("program", TAMPERING.values(), ids=TAMPERING.keys())
@pytest.mark.parametrize("tests", SOLVE_FORMS, ids=["split", "loop"])
def test_tampering_with_the_harness_scores_zero(program: str, tests: list[str]) -> None:
    assert score("code", f"```python\n{program}\n```", tests).score == 0.0


@pytest.mark.parametrize("program", HONEST.values(), ids=HONEST.keys())
@pytest.mark.parametrize("tests", SOLVE_FORMS, ids=["split", "loop"])
def test_honest_solutions_pass(program: str, tests: list[str]) -> None:
    assert score("code", f"```python\n{program}\n```", tests).score == 1.0


COLLECTIONS = """
from collections import Counter, namedtuple
Pair = namedtuple("Pair", "a b")
def f():
    return Counter("aab"), Pair(1, {2}), frozenset({3})
"""


@pytest.mark.parametrize(
    ("program", "test", "expected"),
    [
        pytest.param("def f():\n    return (1, 2)", "assert f() == (1, 2)", 1.0, id="tuple"),
        # (1, 2) != [1, 2] in Python too.
        pytest.param(
            "def f():\n    return [1, 2]", "assert f() == (1, 2)", 0.0, id="list_for_tuple"
        ),
        pytest.param(
            "def f():\n    return 0.1 + 0.2", "assert f() == 0.3", 0.0, id="float_inexact"
        ),
        pytest.param(
            "def f():\n    return 0.1 + 0.2",
            "assert f() == 0.30000000000000004",
            1.0,
            id="float_exact",
        ),
        pytest.param(
            "def f():\n    return 0.1 + 0.2", "assert abs(f() - 0.3) < 1e-9", 1.0, id="tolerance"
        ),
        pytest.param(
            "def f():\n    return 0.1 + 0.2",
            "import math\nassert math.isclose(f(), 0.3)",
            1.0,
            id="imported_check",
        ),
        pytest.param(
            COLLECTIONS, "assert f() == ({'a': 2, 'b': 1}, (1, {2}), {3})", 1.0, id="subclasses"
        ),
        pytest.param("def f(n):\n    return -n / 1000", "assert f(1) == -1e-3", 1.0, id="negative"),
        pytest.param("def f(n):\n    return None", "assert f(1) is None", 1.0, id="is_none"),
        pytest.param(
            "def f(n):\n    return 'abc'",
            "assert 'b' in f(1) and not f(0).startswith('b')",
            1.0,
            id="in_and_not",
        ),
        pytest.param(
            "def f(n):\n    return [3, 1, 2]",
            "assert sorted(f(1)) == sorted([2, 3, 1])",
            1.0,
            id="computed_expected",
        ),
        pytest.param(
            "def f(n):\n    return float('inf')", "assert f(1) == float('inf')", 1.0, id="infinity"
        ),
        pytest.param(
            "class Solution:\n    def twoSum(self, nums, target):\n        return [0, 1]",
            "assert Solution().twoSum([2, 7, 11, 15], 9) == [0, 1]",
            1.0,
            id="method_chain",
        ),
        pytest.param(
            "def even(n):\n    return n % 2 == 0",
            "assert all(even(n) for n in (2, 4))",
            1.0,
            id="generator_unrolled",
        ),
        # Its list alone would pass the 1 MiB output cap; only its length leaves the sandbox.
        pytest.param(
            "def f():\n    return list(range(300_000))",
            "assert len(f()) == 300_000 and sum(f()) > 0",
            1.0,
            id="large_value_reduced",
        ),
        # Equal in Python, but not plain data: whatever is not plain data fails.
        pytest.param(
            "from fractions import Fraction\ndef f(n):\n    return Fraction(4)",
            "assert f(1) == 4",
            0.0,
            id="not_plain_data",
        ),
    ],
)
def test_values_compare_as_in_python(program: str, test: str, expected: float) -> None:
    assert score("code", f"```python\n{program}\n```", [test]).score == expected


YES = """
class Yes:
    def __bool__(self):
        return True
def even(n):
    return Yes()
"""


@pytest.mark.parametrize(
    "test", ["assert even(3)", "for n in (3,):\n    assert even(n)"], ids=["split", "loop"]
)
def test_truthiness_cannot_lie(test: str) -> None:
    assert score("code", f"```python\n{YES}\n```", [test]).score == 0.0


# The harness's frame holds the token and the report's descriptor: a program may write a report.
FRAME_FORGE = """
import os, sys
found = sys._getframe(1).f_locals
os.write(found["channel"], found["token"].encode())
os._exit(0)
"""
# Once, tests of other shapes ran in the program's process, their asserts through this name.
REBINDS_THE_COPIER = """
class Any:
    def __eq__(self, other):
        return True
    def __bool__(self):
        return True
def solve(*args):
    globals()["__olmorl_plain"] = lambda value: Any()
    return 0
"""
NOT_ASSERTS = {
    "loop": "for i in range(3):\n    assert solve(i) == 2 * i + 7",
    "assignment": "x = solve(12345)\nassert x == 67890",
    "humaneval_check": "def check(candidate):\n    assert candidate(12345) == 67890\ncheck(solve)",
}


@pytest.mark.parametrize("program", [FRAME_FORGE, REBINDS_THE_COPIER], ids=["forge", "rebind"])
@pytest.mark.parametrize("test", NOT_ASSERTS.values(), ids=NOT_ASSERTS.keys())
def test_no_test_code_runs_in_the_programs_process(program: str, test: str) -> None:
    assert score("code", f"```python\n{program}\n```", [test]).score == 0.0


DOUBLE = "def solve(x):\n    return x * 2"


@pytest.mark.parametrize(
    ("program", "test"),
    [
        pytest.param(DOUBLE, "def check(candidate):\n    assert candidate(2) == 4\ncheck(solve)"),
        pytest.param(
            DOUBLE,
            "METADATA = {}\n\n\ndef check(candidate):\n    import math\n"
            "    assert math.isclose(candidate(1.5), 3.0)\n    for x in range(5):\n"
            "        assert candidate(x) == 2 * x\n\n\ncheck(solve)",
            id="humaneval_with_import_and_loop",
        ),
        pytest.param(DOUBLE, "x = solve(3)\nassert x == 6\ny = 5\nassert solve(y) == 10"),
        pytest.param(DOUBLE, "n = len(str(solve(50)))\nassert n == 3", id="derived"),
        pytest.param(
            DOUBLE, "cases = [(1, 2), (-2, -4)]\nfor a, b in cases:\n    assert solve(a) == b"
        ),
        pytest.param(
            "def add(a, b):\n    return a + b",
            "inputs = [[1, 2], [3, 4]]\nresults = [3, 7]\nfor inp, exp in zip(inputs, results):\n"
            "    assert add(*inp) == exp",
            id="zip",
        ),
        pytest.param(DOUBLE, "assert [solve(i) for i in range(3)] == [0, 2, 4]"),
        pytest.param(DOUBLE, "assert solve(1) == 2 or solve(1) == 3"),
        pytest.param(
            "def f(s):\n    return s[::-1]", "assert f('hello world').startswith('dlrow')"
        ),
        pytest.param(
            "from collections import namedtuple\nP = namedtuple('P', 'a b')\ndef f():\n"
            "    return P(1, 2)",
            "assert f().a == 1",
            id="namedtuple_field",
        ),
        pytest.param(
            "class LRU:\n    def __init__(self):\n        self.d = {}\n"
            "    def put(self, k, v):\n        self.d[k] = v\n"
            "    def get(self, k):\n        return self.d.get(k, -1)",
            "c = LRU()\nc.put(1, 1)\nassert c.get(1) == 1\nassert c.get(2) == -1",
            id="object_state",
        ),
        pytest.param(
            "def sort_in_place(a):\n    a.sort()",
            "a = [3, 1, 2]\nsort_in_place(a)\nassert a == [1, 2, 3]",
            id="input_changed_in_place",
        ),
        pytest.param(
            "import math\ndef root(x):\n    return math.sqrt(x)",
            "assert math.isclose(root(2), 1.41421356, rel_tol=1e-6)",
            id="programs_import_used_by_the_test",
        ),
    ],
)
def test_supported_shapes_pass(program: str, test: str) -> None:
    assert score("code", f"```python\n{program}\n```", [test]) == VerifierResult(1.0, "all_passed")


@pytest.mark.parametrize(
    "test",
    [
        "while True:\n    assert solve(1) == 2\n    break",
        "for i in range(2000):\n    assert solve(i) == 2 * i",  # past MAX_UNROLLED
        "for i in solve(3):\n    assert i",  # a loop over program values
        "from math import *\nassert solve(1) == 2",
        "def check(candidate):\n    assert candidate(2) == 4",  # never called
        "assert (lambda: solve(2))() == 4",
    ],
)
def test_unsupported_shapes_fail_and_say_so(test: str) -> None:
    tests = [test, "assert solve(2) == 4"]
    result = score("code", f"```python\n{DOUBLE}\n```", tests)
    assert result == VerifierResult(0.5, "unsupported_test")


def test_a_program_too_deep_to_parse_here_fails() -> None:
    # The sandbox compiles it; the verifier's parser recurses past its limit. Once, that made the
    # test run whole in the program's process, where FRAME_FORGE passed it.
    program = "_ = " + "-" * 2978 + "1\n" + FRAME_FORGE
    assert score("code", f"```python\n{program}\n```", ["assert solve(12345) == 67890"]).score == 0


SHADOWS_BUILTINS = """
def abs(x):
    return 0
def sorted(*args, **kwargs):
    return 0
def solve(*args):
    return 0
"""
PATCHES_MATH = (
    "import math\nmath.isclose = lambda *args, **kwargs: True\ndef solve(x):\n    return 0"
)


@pytest.mark.parametrize(
    ("program", "test"),
    [
        (SHADOWS_BUILTINS, "assert abs(solve(2) - 1.41421) < 1e-4"),
        (SHADOWS_BUILTINS, "assert sorted(solve(7)) == sorted([3, 1, 2])"),
        (PATCHES_MATH, "assert math.isclose(solve(2), 1.41421, rel_tol=1e-6)"),
    ],
    ids=["abs", "sorted", "math_isclose"],
)
def test_builtins_and_imports_are_the_tests(program: str, test: str) -> None:
    assert score("code", f"```python\n{program}\n```", [test]).score == 0.0


LYING_STR = """
class S(str):
    def startswith(self, *args):
        return True
def solve(s):
    return S("zzz")
"""


def test_methods_of_a_plain_value_run_outside() -> None:
    test = 'assert solve("hello world").startswith("dlrow")'
    assert score("code", f"```python\n{LYING_STR}\n```", [test]).score == 0.0


def colliding_set_record(members: int) -> str:
    """A report line holding a set of ints whose hashes are all equal."""
    modulus = (1 << 61) - 1
    return json.dumps(["0", f"S{members}", *(f"i{k * modulus:x}" for k in range(1, members + 1))])


@pytest.mark.parametrize("members", [45_000, 9_000], ids=["past_max_members", "colliding"])
def test_decoding_a_forged_report_is_cheap(members: int) -> None:
    from verifiers.code_harness import read_values

    token = "0" * 32
    stdout = f"{token}\n{colliding_set_record(members)}\n"
    started = time.monotonic()
    assert read_values(stdout, token, 1) is None
    assert time.monotonic() - started < 2  # building it took 11 s


def test_a_raw_literal_report_is_refused() -> None:
    from verifiers.code_harness import read_values

    assert read_values("0" * 32 + "\n{1, 2}\n", "0" * 32, 1) is None
    assert read_values("0" * 32 + '\n["0", "i4"]\n', "0" * 32, 1) == [(0, 4)]


def test_a_run_that_ended_by_its_deadline_is_not_timed_out() -> None:
    from verifiers.sandbox import SandboxLimits, _collect

    proc = subprocess.Popen(["echo", "done"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.wait()  # ended, its output still in the pipe, and the deadline already past
    try:
        stdout, _, timed_out, _ = _collect(proc, SandboxLimits(wall_s=0))
    finally:
        proc.stdout.close()
        proc.stderr.close()
    assert (stdout, timed_out) == (b"done\n", False)
