"""The two sandboxed halves of a `code` test (see code_plan), and what they send back.

`program_source` runs the program, then the plan's steps, and only after the last one writes the
run's token and each probe's value as plain data; `checks_source` evaluates the checks that
`quick_check` cannot, in a sandbox holding no program code.
"""

import ast
import inspect
import operator
from typing import Any

from verifiers import plain
from verifiers.code_plan import PLAIN, PROBE

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
    call = f"{_program_main.__name__}({_PLAIN_SOURCE!r}, {program!r}, {PLAIN!r})\n"
    return inspect.getsource(_program_main) + call


def program_stdin(token: str, steps: tuple[tuple[str, str], ...]) -> str:
    """The token and the steps, which the harness reads before the program starts: the test is
    in no file the program could read, only in the harness's memory."""
    return f"{token}\n{steps!r}\n"


def read_values(stdout: str, token: str, count: int) -> list[Any] | None:
    """The `count` probe values the harness reported, or None unless it reported them all, after
    the token, and nothing else (a program that printed onto the channel fails)."""
    lines = stdout.split("\n")
    if len(lines) != count + 2 or lines[0] != token or lines[-1] != "":
        return None
    decode = plain.decoder()
    try:
        return [decode(_tokens(line)) for line in lines[1:-1]]
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


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


def checks_source(imports: str, values: list[Any], checks: list[str]) -> str:
    """main.py for a sandbox that evaluates `checks` on the probes' `values`; it prints a 1 or 0
    per check (see `read_checks`)."""
    encode = plain.encoder()
    encoded = [encode(value) for value in values]
    arguments = f"{_PLAIN_SOURCE!r}, {imports!r}, {encoded!r}, {checks!r}, {PROBE!r}"
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


def _tokens(line: str) -> tuple[str, ...]:
    tokens = ast.literal_eval(line)
    if type(tokens) is not tuple or not all(type(token) is str for token in tokens):
        raise ValueError("a record is a tuple of strs")
    return tokens


# The two functions below run in sandboxes, as the main module: they use nothing from this file.


def _program_main(plain_source, program, plain_name):
    """The harness. A split test's checks never enter this process; for a test run whole, passing
    stays forgeable by deliberate introspection (the token in this frame, a trace hook that skips
    the test), since the program can reach all of its own process: harder, not impossible. There is
    no function to call that reports success; exec, eval, compile, os.write, os._exit and the
    plain-data codec are bound before the program runs; its stdout is not the channel; the token
    and the test are read before it starts and are in no file; asserts compare plain-data copies,
    so no `__eq__` or `__bool__` of the program's can make them hold."""
    import ast
    import os
    import sys

    codec = {}
    exec(plain_source, codec)  # noqa: S102 - our own plain.py, in a namespace of its own
    encode, decode = codec["encoder"](), codec["decoder"]()
    # Bound before the program runs: names it rebinds or patches later do not reach these.
    run, evaluate, compile_, write, exit_ = exec, eval, compile, os.write, os._exit
    quote = str.__repr__
    token, steps = sys.stdin.readline(), ast.literal_eval(sys.stdin.readline())
    # The report goes to the real stdout; what the program prints goes to stderr.
    channel = os.dup(1)
    os.dup2(2, 1)
    namespace = globals()
    del namespace["_program_main"]
    run(compile_(program, "main.py", "exec"), namespace)
    namespace[plain_name] = lambda value: decode(encode(value))
    report = [token]
    for kind, source in steps:
        code = compile_(source, "<test>", kind)
        if kind == "exec":
            run(code, namespace)
        else:
            tokens = encode(evaluate(code, namespace))
            report.append("(" + "".join([quote(part) + "," for part in tokens]) + ")\n")
    data = "".join(report).encode()
    while data:
        data = data[write(channel, data) :]
    exit_(0)


def _checks_main(plain_source, imports, values, checks, probe):
    codec = {}
    exec(plain_source, codec)  # noqa: S102 - our own plain.py, in a namespace of its own
    decode = codec["decoder"]()
    namespace = {"__name__": "__main__"}
    exec(imports, namespace)  # noqa: S102 - the test's imports, in a sandbox with no program
    namespace.update({f"{probe}{i}": decode(tokens) for i, tokens in enumerate(values)})
    outcomes = []
    for check in checks:
        try:
            outcomes.append("1" if eval(check, namespace) else "0")
        except Exception:  # noqa: BLE001 - as in Python, an assert that raises fails
            outcomes.append("0")
    print("".join(outcomes))
