"""Splits a `code` test between the program's sandbox and the verifier: `plan(program, test)`.

The test is rewritten here into straight-line statements: a HumanEval `check(candidate)` called on
a program function is inlined, `for` loops over data (literals, `range`) are unrolled, and so are
comprehensions over data that call the program. Then each assert is cut at the program's values,
the probes (`f(x)`, `Solution().two_sum(a, t)`), which run in the program's sandbox and come back
as plain data; the rest, the check (`v0 == 4`, `abs(v0 - 2.5) < 1e-6`), runs outside. An
assignment from a program value (`s = Stack()`) runs in the program's process, its name a program
value from then on; other assignments are test data, also sent in where a probe takes them as an
argument. Builtins, the test's imports and the program's module-level imports are the test's: they
run outside, the real ones. A test of any other shape fails: `Unsupported`.

Security: the expected values and the test's code never run in or enter the program's process,
only the program's own inputs (probe arguments) do, and only plain data comes back. To forge a
pass a program must produce the expected values, that is, solve.
"""

import ast
import builtins
import contextlib
import copy
from dataclasses import dataclass

PROBE = "__olmorl_v"
"""Prefix of the names the probes' values take outside: `__olmorl_v0`, `__olmorl_v1`..."""
VALUE = "__olmorl_r"
"""The name a probe's link applies to: `__olmorl_r.startswith`, `__olmorl_r('dlrow')`."""
TEMP = "__olmorl_t"
"""Prefix of the test's own variables, renamed at each assignment so that a check sees the value
the assignment before it gave."""
MAX_UNROLLED = 1000
"""Iterations of loops and comprehensions unrolled in one test, all together; more is Unsupported."""
REDUCERS = ("len", "sum", "min", "max", "any", "all")
"""Builtins the harness may apply to a probe's plain copy, the check applying them to it alone."""
_BUILTINS = frozenset(dir(builtins))
_SCOPES = (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
# Constructs whose probes could not be evaluated alone, or that bind names of their own.
_OPAQUE = (*_SCOPES, ast.NamedExpr, ast.Await, ast.Yield, ast.YieldFrom)
# Builtins that turn data into data, with which a loop's iterable is computed here.
_DATA_CALLS = {
    "range": range,
    "zip": zip,
    "enumerate": enumerate,
    "list": list,
    "tuple": tuple,
    "reversed": reversed,
    "sorted": sorted,
}


class Unsupported(Exception):
    """The test is of a shape that cannot be split; it fails."""


@dataclass(frozen=True)
class Plan:
    steps: tuple[tuple, ...]
    """What runs in the program's process after the program, in order: ("exec", statement), or
    ("probe", root name, links): a probe, whose links (template over VALUE, attribute name or "")
    the harness applies one by one while the value is not plain data."""
    links: tuple[tuple[str, ...], ...]
    """Each probe's link templates, to apply outside those the harness did not."""
    reducers: tuple[str, ...]
    """Each probe's reducer, or "": a builtin of REDUCERS the check applies to the probe alone
    (`len(f(x))`), which the harness applies to its plain copy, so that a large value need not
    leave; it then reports one more link applied than the probe has."""
    setup: str
    """Statements run outside before the checks: the program's and the test's imports, the test's
    own assignments. Refers to probes by their PROBE names."""
    checks: tuple[str, ...]
    """One expression per assert over the probes' values, true when the assert holds."""
    test_setup: bool
    """Whether `setup` holds more than imports, so that the checks need it run."""

    def finish(self, applied: list[int]) -> tuple[str, list[str]]:
        """`setup` and `checks` with each probe's links past the `applied` ones put back after its
        name: the harness stopped where the value became plain data."""
        rest, reduced = {}, set()
        for i, (links, reducer, count) in enumerate(zip(self.links, self.reducers, applied)):
            if count > len(links) + bool(reducer):
                raise ValueError(f"probe {i} reported {count} links applied")
            rest[f"{PROBE}{i}"] = links[count:]
            if count > len(links):
                reduced.add(f"{PROBE}{i}")
        finisher = _Finisher(rest, reduced)
        setup = ast.unparse(finisher.visit(ast.parse(self.setup)))
        return setup, [ast.unparse(finisher.visit(ast.parse(c, mode="eval"))) for c in self.checks]


def plan(program: str, test: str) -> Plan:
    """How to run `test` against `program`. Raises Unsupported for a test of another shape, and
    SyntaxError, RecursionError... for a program or test that cannot be parsed here: both fail."""
    program_side, imports = _program_names(ast.parse(program))
    return _Planner(program_side, imports).plan(ast.parse(test))


class _Planner:
    def __init__(self, program_side: set[str], imports: list[str]):
        self.program_side = program_side
        """Names whose values are the program's: probes' roots."""
        self.steps: list[tuple] = []
        self.links: list[tuple[str, ...]] = []
        self.reducers: list[str] = []
        self.imported: set[str] = set()
        """Names the test's imports bind."""
        self.setup = [f"try:\n    {line}\nexcept ImportError:\n    pass" for line in imports]
        self.test_setup = False
        self.checks: list[str] = []
        self.defs: dict[str, ast.FunctionDef] = {}
        self.called: set[str] = set()
        self.known: dict[str, object] = {}
        """Test variables (renamed) holding literal data, for loops over them."""
        self.derived: set[str] = set()
        """Test variables computed from probes' values: they exist outside only."""
        self.temps = self.unrolled = 0

    def plan(self, module: ast.Module) -> Plan:
        self.block(module.body, {})
        if set(self.defs) - self.called:
            raise Unsupported("a function the test defines is not called")
        return Plan(
            steps=self._program_steps(),
            links=tuple(self.links),
            reducers=tuple(self.reducers),
            setup="\n".join(self.setup),
            checks=tuple(self.checks),
            test_setup=self.test_setup,
        )

    def block(self, body: list[ast.stmt], env: dict[str, ast.expr]) -> None:
        for statement in body:
            self.statement(statement, env)

    def statement(self, node: ast.stmt, env: dict[str, ast.expr]) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = {alias.asname or alias.name.split(".")[0] for alias in node.names}
            if "*" in names:  # no knowing which names it brings
                raise Unsupported("import *")
            for name in names:
                env.pop(name, None)
            self.program_side -= names
            self.imported |= names
            source = ast.unparse(node)
            self.steps.append(("exec", source))  # module names a probe may take as inputs
            self.setup.append(source)
        elif isinstance(node, ast.Assert):
            self.checks.append(self.split(_substitute(node.test, env)))
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            self.assign(node.targets[0], _substitute(node.value, env), env)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            value = ast.BinOp(ast.Name(node.target.id, ast.Load()), node.op, node.value)
            self.assign(node.target, _substitute(value, env), env)
        elif isinstance(node, ast.Expr):
            self.expression(node.value, env)
        elif isinstance(node, ast.For) and not node.orelse:
            for value in self.data(_substitute(node.iter, env)):
                _bind(node.target, value, env)
                self.block(node.body, env)
        elif isinstance(node, ast.FunctionDef) and _is_check(node):
            self.defs[node.name] = node
        elif not isinstance(node, ast.Pass):
            raise Unsupported(f"{type(node).__name__} statement")

    def expression(self, value: ast.expr, env: dict[str, ast.expr]) -> None:
        """An expression statement: a call of a `check` function, a program call, test code."""
        call = isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
        if call and value.func.id in self.defs and len(value.args) == 1 and not value.keywords:
            self.called.add(value.func.id)
            check = self.defs[value.func.id]
            # The function's own scope: its assignments do not reach the caller's names.
            inner = {**env, check.args.args[0].arg: _substitute(value.args[0], env)}
            self.block(check.body, inner)
            return
        value = _substitute(value, env)
        if isinstance(value, ast.Constant):  # a docstring
            return
        if self._chain(value) is not None:
            self._program_step(ast.unparse(value), value)
        elif self._uses_program(value):
            raise Unsupported("an expression statement mixing program and test values")
        else:
            self._test_step(ast.unparse(value), set(), value)

    def assign(self, target: ast.expr, value: ast.expr, env: dict[str, ast.expr]) -> None:
        names = _target_names(target)
        if self._chain(value) is not None:
            # A program value (`s = Stack()`): kept in the program's process, as it is.
            for name in names:
                env.pop(name, None)
            self.program_side |= names
            self._program_step(f"{ast.unparse(target)} = {ast.unparse(value)}", value)
            return
        renamed = {name: f"{TEMP}{self.temps + i}" for i, name in enumerate(sorted(names))}
        self.temps += len(names)
        new_target = _rename_target(target, renamed)
        if self._uses_program(value):
            # Computed from the program's values (`n = len(f(x))`): split like an assert.
            source = f"{ast.unparse(new_target)} = {self.split(value)}"
            self.derived |= set(renamed.values())
            self.setup.append(source)
            self.test_setup = True
        else:
            source = f"{ast.unparse(new_target)} = {ast.unparse(value)}"
            self._test_step(source, set(renamed.values()), value)
            if isinstance(new_target, ast.Name):
                with contextlib.suppress(Unsupported):
                    self.known[new_target.id] = _data(value, self.known)
        for name, temp in renamed.items():
            env[name] = ast.Name(temp, ast.Load())
            self.program_side.discard(temp)

    def split(self, expression: ast.expr) -> str:
        """The expression with its probes taken out as PROBE names, the probes added as steps."""
        return ast.unparse(_Splitter(self).visit(expression))

    def add_probe(self, node: ast.expr, reducer: str = "") -> ast.Name:
        root, links = self._chain(node)
        name = f"{PROBE}{len(self.links)}"
        self.links.append(tuple(template for template, _ in links))
        self.reducers.append(reducer)
        self._mark_inputs(node)
        self.steps.append(("probe", root, links, reducer))
        return ast.Name(name, ast.Load())

    def data(self, node: ast.expr) -> list:
        """The values of a loop's iterable, computed here: literal data, the test's variables
        holding it, and range, zip, enumerate... of them."""
        iterable = _data(node, self.known)
        if not isinstance(iterable, (list, tuple, set, frozenset, dict, str, bytes)):
            raise Unsupported(f"a loop over {ast.unparse(node)}")
        values = list(iterable)
        self.unrolled += len(values)
        if self.unrolled > MAX_UNROLLED:
            raise Unsupported(f"more than {MAX_UNROLLED} iterations")
        return values

    def _chain(self, node: ast.expr) -> tuple[str, tuple[tuple[str, str], ...]] | None:
        """A program name followed by calls, attributes and subscripts: its root and its links
        (each a template over VALUE, and the attribute's name or "")."""
        links = []
        while isinstance(node, (ast.Call, ast.Attribute, ast.Subscript)):
            inner = node.func if isinstance(node, ast.Call) else node.value
            link = ast.Name(VALUE, ast.Load())
            if isinstance(node, ast.Call):
                link = ast.Call(link, node.args, node.keywords)
                attribute = ""
            elif isinstance(node, ast.Attribute):
                link, attribute = ast.Attribute(link, node.attr, ast.Load()), node.attr
            else:
                link, attribute = ast.Subscript(link, node.slice, ast.Load()), ""
            links.append((ast.unparse(link), attribute))
            node = inner
        if isinstance(node, ast.Name) and node.id in self.program_side:
            return node.id, tuple(reversed(links))
        return None

    def _uses_program(self, node: ast.AST) -> bool:
        return any(isinstance(n, ast.Name) and n.id in self.program_side for n in ast.walk(node))

    def _program_step(self, source: str, node: ast.expr) -> None:
        self._mark_inputs(node)
        self.steps.append(("exec", source))

    def _test_step(self, source: str, targets: set[str], node: ast.expr) -> None:
        """Test code: run outside, and in the program's process too if a probe takes its names."""
        self.setup.append(source)
        self.test_setup = True
        uses = _temps(node)
        if not targets:  # `data.append(4)`: what is known of that data no longer holds
            for name in uses:
                self.known.pop(name, None)
        self.steps.append(("test", source, targets, uses))

    def _mark_inputs(self, node: ast.expr) -> None:
        # The program may change the test's data it is given (sort it in place): later uses of
        # that data read the program's copy.
        for name in _temps(node):
            self.program_side.add(name)
            self.known.pop(name, None)

    def _program_steps(self) -> tuple[tuple, ...]:
        """The steps, keeping the test's own statements only where a later program step takes
        their names."""
        needed, kept = set(), []
        for step in reversed(self.steps):
            if step[0] == "test":
                _, source, targets, uses = step
                if not (targets & needed or (not targets and uses & needed)):
                    continue
                needed = (needed - targets) | uses
                step = ("exec", source)
            elif step[0] == "exec":
                needed |= _temps(ast.parse(step[1]))
            else:
                needed |= {step[1]} | set().union(*(_temps(ast.parse(t)) for t, _ in step[2]))
            kept.append(step)
        if needed & self.derived:
            raise Unsupported("a program input computed from the program's values")
        return tuple(reversed(kept))


class _Splitter(ast.NodeTransformer):
    """Replaces each probe of an expression by a PROBE name, in evaluation order."""

    def __init__(self, planner: _Planner):
        self.planner = planner

    def visit(self, node: ast.AST) -> ast.AST:
        planner = self.planner
        if isinstance(node, ast.expr) and planner._chain(node) is not None:
            return planner.add_probe(node)
        if _reducer(node, planner) and planner._chain(node.args[0]) is not None:
            node.args[0] = planner.add_probe(node.args[0], node.func.id)
            return node
        comprehension = isinstance(node, (ast.GeneratorExp, ast.ListComp, ast.SetComp))
        if comprehension and planner._uses_program(node):
            return self.visit(self._unroll(node))
        if isinstance(node, _OPAQUE) and planner._uses_program(node):
            raise Unsupported(f"program values inside {type(node).__name__}")
        return self.generic_visit(node)

    def _unroll(self, node: ast.GeneratorExp | ast.ListComp | ast.SetComp) -> ast.expr:
        """`[f(x) for x in (1, 2)]` as `[f(1), f(2)]`; a generator as a tuple."""
        if len(node.generators) != 1 or node.generators[0].ifs or node.generators[0].is_async:
            raise Unsupported("a comprehension over program values")
        generator, elements = node.generators[0], []
        for value in self.planner.data(generator.iter):
            env: dict[str, ast.expr] = {}
            _bind(generator.target, value, env)
            elements.append(_substitute(node.elt, env))
        if isinstance(node, ast.SetComp):
            return ast.Set(elements) if elements else ast.Call(ast.Name("set", ast.Load()), [], [])
        return (ast.List if isinstance(node, ast.ListComp) else ast.Tuple)(elements, ast.Load())


class _Finisher(ast.NodeTransformer):
    def __init__(self, rest: dict[str, tuple[str, ...]], reduced: set[str]):
        self.rest, self.reduced = rest, reduced

    def visit_Call(self, node: ast.Call) -> ast.expr:
        argument = node.args[0] if len(node.args) == 1 else None
        if isinstance(argument, ast.Name) and argument.id in self.reduced:
            return argument  # the harness applied the reducer: the value is its result
        return self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> ast.expr:
        value: ast.expr = node
        for template in self.rest.get(node.id, ()):
            value = _Substitute({VALUE: value}).visit(ast.parse(template, mode="eval").body)
        return value


class _Substitute(ast.NodeTransformer):
    """Replaces the loads of names by expressions, except where a scope of its own rebinds them."""

    def __init__(self, env: dict[str, ast.expr]):
        self.env = env

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if isinstance(node.ctx, ast.Load) and node.id in self.env:
            return copy.deepcopy(self.env[node.id])
        return node

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if isinstance(node, _SCOPES):
            own = {
                n.id
                for n in ast.walk(node)
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
            }
            own |= {a.arg for a in ast.walk(node) if isinstance(a, ast.arg)}
            if own & self.env.keys():
                inner = _Substitute({k: v for k, v in self.env.items() if k not in own})
                return ast.NodeTransformer.generic_visit(inner, node)
        return super().generic_visit(node)


def _substitute(node: ast.expr, env: dict[str, ast.expr]) -> ast.expr:
    return _Substitute(env).visit(copy.deepcopy(node))


def _bind(target: ast.expr, value: object, env: dict[str, ast.expr]) -> None:
    """Binds a loop's target to one of its values, as a literal."""
    if isinstance(target, ast.Name):
        env[target.id] = _literal(value)
    elif isinstance(target, (ast.Tuple, ast.List)) and not any(
        isinstance(t, ast.Starred) for t in target.elts
    ):
        items = list(value) if isinstance(value, (tuple, list, str)) else None
        if items is None or len(items) != len(target.elts):
            raise Unsupported("a loop target that does not match its values")
        for element, item in zip(target.elts, items):
            _bind(element, item, env)
    else:
        raise Unsupported("a loop target other than names")


def _literal(value: object) -> ast.expr:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        return ast.UnaryOp(ast.USub(), _literal(-value))
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return ast.Constant(value)
    if isinstance(value, (tuple, list)):
        return (ast.Tuple if isinstance(value, tuple) else ast.List)(
            [_literal(v) for v in value], ast.Load()
        )
    if isinstance(value, (set, frozenset)) and value:
        node: ast.expr = ast.Set([_literal(v) for v in value])
        return (
            ast.Call(ast.Name("frozenset", ast.Load()), [node], [])
            if isinstance(value, frozenset)
            else node
        )
    if isinstance(value, dict):
        return ast.Dict([_literal(k) for k in value], [_literal(v) for v in value.values()])
    raise Unsupported(f"loop values of type {type(value).__name__}")


def _data(node: ast.expr, known: dict[str, object]) -> object:
    """The value of a data expression, computed here without running any program code."""
    if isinstance(node, ast.Name) and node.id in known:
        return known[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        function = _DATA_CALLS.get(node.func.id)
        if function is None or any(isinstance(a, ast.Starred) for a in node.args):
            raise Unsupported(f"a loop over {ast.unparse(node)}")
        arguments = [_data(a, known) for a in node.args]
        if function is range:
            if not all(type(a) is int for a in arguments) or len(range(*arguments)) > MAX_UNROLLED:
                raise Unsupported("a range of other than a few ints")
            return list(range(*arguments))
        try:
            return list(function(*arguments))
        except (TypeError, ValueError) as error:
            raise Unsupported(f"a loop over {ast.unparse(node)}: {error}") from None
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [_data(e, known) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise Unsupported(f"a loop over {ast.unparse(node)}") from None


def _reducer(node: ast.AST, planner: _Planner) -> bool:
    """Whether the node is a builtin of REDUCERS applied to one value alone."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in REDUCERS
        and node.func.id not in planner.imported
        and len(node.args) == 1
        and not isinstance(node.args[0], ast.Starred)
        and not node.keywords
    )


def _is_check(node: ast.FunctionDef) -> bool:
    """A HumanEval `def check(candidate):`: one plain parameter, no decorators."""
    args = node.args
    return (
        not node.decorator_list
        and len(args.args) == 1
        and not (args.posonlyargs or args.kwonlyargs or args.vararg or args.kwarg or args.defaults)
    )


def _target_names(target: ast.expr) -> set[str]:
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, (ast.Tuple, ast.List)):
        return set().union(*(_target_names(t) for t in target.elts))
    raise Unsupported("an assignment to other than names")


def _rename_target(target: ast.expr, renamed: dict[str, str]) -> ast.expr:
    if isinstance(target, ast.Name):
        return ast.Name(renamed[target.id], ast.Store())
    return type(target)([_rename_target(t, renamed) for t in target.elts], ast.Store())


def _temps(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id.startswith(TEMP)}


def _program_names(module: ast.Module) -> tuple[set[str], list[str]]:
    """Names the program binds at module level, but for builtins and the names its module-level
    imports bind: those are the test's, the real ones. And these import statements."""
    imports, names, pending = [], set(), []
    for node in module.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if getattr(node, "module", None) != "__future__":
                imports.append(ast.unparse(node))
        else:
            pending.append(node)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)  # their bodies bind local names only
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.alias):  # an import nested in an `if` or `try`: the program's
            names.add(node.asname or node.name.split(".")[0])
        if not isinstance(node, _SCOPES):
            pending.extend(ast.iter_child_nodes(node))
    return names - _BUILTINS, imports
