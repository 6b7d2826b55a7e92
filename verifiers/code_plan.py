"""Splits a `code` test between the program's sandbox and the verifier: `plan(program, test)`.

Each assert of a test made of asserts and imports is cut at the program's values, the probes
(`f(x)`, `Solution().two_sum(a, t)`), which run in the program's sandbox and come back as plain
data; the rest, the check (`v0 == 4`, `abs(v0 - 2.5) < 1e-6`), runs outside. The expected values
never enter the program's sandbox: to forge a pass, a program must produce them, that is, solve.
"""

import ast
import builtins
from dataclasses import dataclass

PROBE = "__olmorl_v"
"""Prefix of the names the probes' values take in the checks: `__olmorl_v0`, `__olmorl_v1`..."""
PLAIN = "__olmorl_plain"
"""The harness's function that copies a value as plain data, for tests run whole."""
_BUILTINS = frozenset(dir(builtins))
# Scopes of their own: the names they bind are not the module's.
_SCOPES = (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
# Where a probe might be evaluated where Python would not evaluate it (`or`, `if else`), or could
# not be evaluated alone (a comprehension's or lambda's own variables), the test runs whole.
_OPAQUE = (*_SCOPES, ast.NamedExpr, ast.IfExp, ast.Await, ast.Yield, ast.YieldFrom)


@dataclass(frozen=True)
class Plan:
    steps: tuple[tuple[str, str], ...]
    """What runs in the program's process after the program, in order: ("exec", statements) or
    ("eval", a probe, whose value is sent back as plain data)."""
    checks: tuple[str, ...]
    """One expression per assert over the probes' values, true when the assert holds; evaluated
    outside the program's process. Empty for a test run whole."""
    imports: str
    """The test's import statements, run before the checks so that they may use them."""


class _RunWhole(Exception):
    """The test is not of the shape that can be split."""


def plan(program: str, test: str) -> Plan:
    """How to run `test` against `program`. Tests of other shapes, and a test or program that is
    not valid Python (which then fails), run whole in the program's process."""
    try:
        return _split(ast.parse(test), _program_names(program))
    except (_RunWhole, SyntaxError, ValueError, RecursionError, MemoryError):
        return Plan(steps=(("exec", _guarded(test)),), checks=(), imports="")


def _split(module: ast.Module, program_names: frozenset[str]) -> Plan:
    steps, checks, imports, imported = [], [], [], set()
    for statement in module.body:
        if isinstance(statement, (ast.Import, ast.ImportFrom)):
            names = {alias.asname or alias.name.split(".")[0] for alias in statement.names}
            if "*" in names:  # no knowing which names it brings
                raise _RunWhole
            imported |= names
            steps.append(("exec", ast.unparse(statement)))
            imports.append(ast.unparse(statement))
        elif isinstance(statement, ast.Assert):
            test_side = (_BUILTINS - program_names) | imported
            splitter = _Splitter(test_side, first=sum(kind == "eval" for kind, _ in steps))
            checks.append(ast.unparse(splitter.visit(statement.test)))
            steps += [("eval", probe) for probe in splitter.probes]
        else:
            raise _RunWhole
    if not checks:
        raise _RunWhole
    return Plan(steps=tuple(steps), checks=tuple(checks), imports="\n".join(imports))


class _Splitter(ast.NodeTransformer):
    """Replaces each probe of an assert's expression by a name, collecting the probes in order."""

    def __init__(self, test_side: frozenset[str] | set[str], first: int):
        self.test_side, self.first, self.probes = test_side, first, []

    def visit(self, node: ast.AST) -> ast.AST:
        if isinstance(node, ast.expr) and self._from_program(node):
            self.probes.append(ast.unparse(node))
            return ast.Name(f"{PROBE}{self.first + len(self.probes) - 1}", ast.Load())
        opaque = isinstance(node, _OPAQUE) or (
            isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or)
        )
        if opaque and any(
            isinstance(n, ast.Name) and n.id not in self.test_side for n in ast.walk(node)
        ):
            raise _RunWhole
        return self.generic_visit(node)

    def _from_program(self, node: ast.expr) -> bool:
        # A function applied to the program's values alone (`len(f(x))`) brings in none of the
        # test's constants: one probe, so that only its result, not a large value, leaves.
        call = isinstance(node, ast.Call) and node.args and not node.keywords
        if call and all(self._from_program(arg) for arg in node.args):
            return True
        while isinstance(node, (ast.Call, ast.Attribute, ast.Subscript)):
            node = node.func if isinstance(node, ast.Call) else node.value
        return isinstance(node, ast.Name) and node.id not in self.test_side


def _program_names(program: str) -> frozenset[str]:
    """Names the program binds at module level: they shadow builtins of the same name."""
    names, pending = set(), list(ast.parse(program).body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)  # their bodies bind local names only
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
        if not isinstance(node, _SCOPES):
            pending.extend(ast.iter_child_nodes(node))
    return frozenset(names)


def _guarded(test: str) -> str:
    """The test with every assert's expression, and the operands of its comparisons, taken as
    plain-data copies: an object's `__eq__` or `__bool__` cannot make such an assert hold."""
    try:
        tree = _Guard().visit(ast.parse(test))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return test  # it fails to compile in the sandbox too
    return ast.unparse(ast.fix_missing_locations(tree))


class _Guard(ast.NodeTransformer):
    def visit_Assert(self, node: ast.Assert) -> ast.Assert:
        node.test = _plain(_CompareGuard().visit(node.test))
        return node


class _CompareGuard(ast.NodeTransformer):
    def visit_Compare(self, node: ast.Compare) -> ast.Compare:
        self.generic_visit(node)
        if not any(isinstance(op, (ast.Is, ast.IsNot)) for op in node.ops):  # identity cannot lie
            node.left = _plain(node.left)
            node.comparators = [_plain(c) for c in node.comparators]
        return node


def _plain(node: ast.expr) -> ast.expr:
    return ast.Call(ast.Name(PLAIN, ast.Load()), [node], [])
