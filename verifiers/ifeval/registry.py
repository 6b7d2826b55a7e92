"""The table of instruction-following checks, keyed by IFEval / IFBench `instruction_id`.

A check is a pure function `(text, **kwargs) -> bool` registered with `@check("group:name")`;
its keyword arguments are the constraint's kwargs as the data carries them. Modules that define
checks (ifeval_checks, ifbench_checks) register them when imported.
"""

import inspect
from collections.abc import Callable

Check = Callable[..., bool]

_checks: dict[str, Check] = {}


def check(instruction_id: str) -> Callable[[Check], Check]:
    """Decorator: `instruction_id` constraints are decided by this function."""

    def decorator(fn: Check) -> Check:
        if instruction_id in _checks:
            raise ValueError(f"instruction check {instruction_id!r} is defined twice")
        _checks[instruction_id] = fn
        return fn

    return decorator


def get_check(instruction_id: str) -> Check | None:
    return _checks.get(instruction_id)


def known_instruction_ids() -> list[str]:
    return sorted(_checks)


def check_parameters(instruction_id: str) -> list[str]:
    """The kwargs a check accepts, for error messages."""
    return [p for p in inspect.signature(_checks[instruction_id]).parameters if p != "text"]
