"""The two sandboxed halves of a `code` test (see code_plan), and what they send back.

`program_source` runs the program, then the plan's steps, and only after the last one writes the
run's token and each probe's value as plain data (json lists of str tokens, see plain.py), which
`read_values` decodes within bounds on size and cost; `checks_source` runs the test's setup and
evaluates the checks that `quick_check` cannot, in a sandbox holding no program code.
"""

import ast
import inspect
import json
import operator
from typing import Any

from verifiers import plain
from verifiers.code_plan import PROBE, REDUCERS, VALUE

MAX_TOKENS = 1 << 18
"""Plain-data tokens the verifier decodes from one run, all probes together."""

_PLAIN_SOURCE = inspect.getsource(plain)
_OPERATORS = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda item, container: item in container,
    ast.NotIn: lambda item, container: item not in container,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}


def program_source(program: str) -> str:
    """main.py for the program's sandbox; its stdin comes from `program_stdin`."""
    arguments = f"{_PLAIN_SOURCE!r}, {program!r}, {VALUE!r}, {REDUCERS!r}"
    call = f"{_program_main.__name__}({arguments})\n"
    return inspect.getsource(_program_main) + call


def program_stdin(token: str, steps: tuple[tuple, ...]) -> str:
    """The token and the steps, which the harness reads before the program starts: the test is
    in no file the program could read, only in the harness's memory."""
    return f"{token}\n{steps!r}\n"


def read_values(stdout: str, token: str, count: int) -> list[tuple[int, Any]] | None:
    """The `count` probes' values the harness reported, each with how many of its links were
    applied in the program's process; None unless it reported them all, after the token, and
    nothing else (a program that printed onto the channel fails), within MAX_TOKENS."""
    lines = stdout.split("\n")
    if len(lines) != count + 2 or lines[0] != token or lines[-1] != "":
        return None
    decode, budget, values = plain.decoder(), MAX_TOKENS, []
    try:
        for line in lines[1:-1]:
            record = json.loads(line)  # a list of strs: no eval, no containers built
            if type(record) is not list or not all(type(part) is str for part in record):
                return None
            budget -= len(record)
            applied = record[0] if record and budget >= 0 else ""
            if not (applied.isascii() and applied.isdigit() and len(applied) < 6):
                return None
            values.append((int(applied), decode(record[1:])))
    except (ValueError, TypeError, MemoryError, RecursionError):
        return None
    return values


def quick_check(check: str, values: list[Any]) -> bool | None:
    """The check's outcome where it is a probe's value, its negation, or one comparison between
    probe values and literals, evaluated here on plain data; None where it needs `checks_source`."""
    node = ast.parse(check, mode="eval").body
    negated = isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)
    if negated:
        node = node.operand
    try:
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            compare = _OPERATORS[type(node.ops[0])]
            outcome = compare(_operand(node.left, values), _operand(node.comparators[0], values))
        else:
            outcome = _operand(node, values)
        return bool(outcome) != negated
    except _NeedsSandbox:
        return None
    except Exception:  # noqa: BLE001 - as in Python, a comparison that raises fails the assert
        return False


def checks_source(setup: str, values: list[Any], checks: list[str]) -> str:
    """main.py for a sandbox that runs `setup` and evaluates `checks` on the probes' `values`; it
    prints a 1 or 0 per check (see `read_checks`)."""
    encode = plain.encoder()
    encoded = [encode(value) for value in values]
    arguments = f"{_PLAIN_SOURCE!r}, {setup!r}, {encoded!r}, {checks!r}, {PROBE!r}"
    call = f"{_checks_main.__name__}({arguments})\n"
    return inspect.getsource(_checks_main) + call


def read_checks(stdout: str, count: int) -> list[bool]:
    outcomes = stdout.strip()
    if len(outcomes) != count or set(outcomes) - {"0", "1"}:
        return [False] * count
    return [outcome == "1" for outcome in outcomes]


class _NeedsSandbox(Exception):
    """An operand that is neither a probe's value nor a literal."""


def _operand(node: ast.expr, values: list[Any]) -> Any:
    if isinstance(node, ast.Name) and node.id.startswith(PROBE):
        return values[int(node.id.removeprefix(PROBE))]
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise _NeedsSandbox from None


# The two functions below run in sandboxes, as the main module: they use nothing from this file.


def _program_main(plain_source, program, value_name, reducer_names):
    """The harness. The test's checks and expected values never enter this process: it runs the
    program, then the plan's steps, and sends back each probe's value as plain data. A probe's
    links (`.twoSum`, `(nums, 9)`) are applied here only while its value is not plain data, save
    an attribute that the value's plain type lacks (a namedtuple's field); the rest are applied to
    the plain copy outside. A probe's reducer (`len`), the real builtin, applies to a plain copy of
    its value here, so that only the result leaves. What the program prints goes to stderr; the report, json lists of str
    tokens, to the real stdout, with the token first, after the last step."""
    import ast
    import builtins
    import json
    import os
    import sys

    codec = {}
    exec(plain_source, codec)  # noqa: S102 - our own plain.py, in a namespace of its own
    encode, decode = codec["encoder"](), codec["decoder"]()
    reducers = {name: getattr(builtins, name) for name in reducer_names}
    # Bound before the program runs: names it rebinds or patches later do not reach these.
    run, evaluate, compile_, write, exit_ = exec, eval, compile, os.write, os._exit
    dumps = json.dumps
    type_, issubclass_, hasattr_, str_, len_, enumerate_ = (
        type, issubclass, hasattr, str, len, enumerate
    )  # fmt: skip
    plain_types = (bool, int, float, str, list, tuple, dict, set, frozenset, type(None))
    token, steps = sys.stdin.readline(), ast.literal_eval(sys.stdin.readline())
    channel = os.dup(1)
    os.dup2(2, 1)
    namespace = globals()
    del namespace["_program_main"]
    run(compile_(program, "main.py", "exec"), namespace)

    def plain(value, attribute):
        """The value's tokens if it is plain data and the link is the plain type's own."""
        try:
            tokens = encode(value)
        except (TypeError, ValueError):
            return None
        kind = type_(value)
        if attribute and not any(
            issubclass_(kind, base) and hasattr_(base, attribute) for base in plain_types
        ):
            return None
        return tokens

    report = [token]
    for step in steps:
        if step[0] == "exec":
            run(compile_(step[1], "<test>", "exec"), namespace)
            continue
        _, root, links, reducer = step
        value, tokens = evaluate(compile_(root, "<test>", "eval"), namespace), None
        for applied, (template, attribute) in enumerate_(links):
            tokens = plain(value, attribute)
            if tokens is not None:
                break
            namespace[value_name] = value
            value = evaluate(compile_(template, "<test>", "eval"), namespace)
        else:
            applied, tokens = len_(links), encode(value)
            if reducer:  # the real builtin, on a plain copy: no code of the value's own runs
                applied, tokens = applied + 1, encode(reducers[reducer](decode(tokens)))
        report.append(dumps([str_(applied), *tokens]) + "\n")
    data = "".join(report).encode()
    while data:
        data = data[write(channel, data) :]
    exit_(0)


def _checks_main(plain_source, setup, values, checks, probe):
    import contextlib
    import sys

    codec = {}
    exec(plain_source, codec)  # noqa: S102 - our own plain.py, in a namespace of its own
    decode = codec["decoder"]()
    namespace = {"__name__": "__main__"}
    namespace.update({f"{probe}{i}": decode(tokens) for i, tokens in enumerate(values)})
    outcomes, out = [], sys.stdout
    with contextlib.redirect_stdout(sys.stderr):  # the test's prints are not the outcomes
        try:
            exec(setup, namespace)  # noqa: S102 - test code, in a sandbox with no program
        except Exception:  # noqa: BLE001 - as in Python, a test whose setup raises fails
            checks = []
        for check in checks:
            try:
                outcomes.append("1" if eval(check, namespace) else "0")
            except Exception:  # noqa: BLE001 - as in Python, an assert that raises fails
                outcomes.append("0")
    print("".join(outcomes), file=out)
