"""The `ifeval` verifier: the fraction of a row's instruction-following constraints met.

The label lists constraints as IFEval does, `{"instruction_id": [ids], "kwargs": [dicts]}`, or as
Olmo 3's Dolci IF data and open-instruct carry it: that dict in a one-element list, or either as a
JSON or Python-literal string, with every kwarg key present and the unused ones null. Only the
answer is checked: the text after the last `</think>`, stripped (verifiers.thinking).

A label naming an unknown instruction, or kwargs its check does not take, raises ValueError: that
is bad data to fix, not a response to score 0.
"""

import ast
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from verifiers.base import Verifier, VerifierResult
from verifiers.ifeval.registry import check_parameters, get_check, known_instruction_ids
from verifiers.labels import decoded_label
from verifiers.options import did_you_mean
from verifiers.registry import register
from verifiers.thinking import final_answer


@dataclass(frozen=True)
class Constraint:
    instruction_id: str
    kwargs: dict[str, Any]


@register("ifeval")
class IFEvalVerifier(Verifier):
    @dataclass(frozen=True)
    class Config(Verifier.Config):
        all_or_nothing: bool = False
        """Score 1 only when every constraint holds, else 0; by default the fraction that hold."""

    config: Config

    async def __call__(self, response: str, label: Any, row: Mapping[str, Any]) -> VerifierResult:
        constraints = parse_label(label)  # first: a bad label raises whatever the response
        answer = (final_answer(response) or "").strip()
        if not answer:
            return VerifierResult(0.0, "empty_response")
        failed = [c.instruction_id for c in constraints if not run_check(c, answer)]
        if not failed:
            return VerifierResult(1.0, "correct")
        passed = len(constraints) - len(failed)
        fraction = 0.0 if self.config.all_or_nothing else passed / len(constraints)
        return VerifierResult(fraction, "failed:" + ",".join(failed))


def parse_label(label: Any) -> list[Constraint]:
    """The label's constraints, each checked against the table; raises ValueError on bad data."""
    data = _load(label)
    groups = data if isinstance(data, (list, tuple)) else [data]
    constraints = [c for group in groups for c in _constraints(group, label)]
    if not constraints:
        raise ValueError(f"an ifeval label lists no constraints: {label!r}")
    return constraints


def run_check(constraint: Constraint, answer: str) -> bool:
    try:
        return bool(get_check(constraint.instruction_id)(answer, **constraint.kwargs))
    except (ValueError, TypeError) as e:  # a kwarg of the wrong value or type
        raise ValueError(
            f"instruction {constraint.instruction_id!r} with kwargs {constraint.kwargs}: {e}"
        ) from e


def _load(label: Any) -> Any:
    return decoded_label(label, _python_literal)


def _python_literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)  # the repr of a Python dict: single quotes, None
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        raise ValueError(f"an ifeval label is neither JSON nor a Python literal: {text!r}") from e


def _constraints(group: Any, label: Any) -> list[Constraint]:
    if not (isinstance(group, Mapping) and "instruction_id" in group):
        raise ValueError(
            'an ifeval label is {"instruction_id": [...], "kwargs": [...]} or a list of them, '
            f"got {label!r}"
        )
    ids = group["instruction_id"]
    ids = [ids] if isinstance(ids, str) else list(ids)
    kwargs = group.get("kwargs")
    kwargs = [None] * len(ids) if kwargs is None else kwargs
    kwargs = [kwargs] if isinstance(kwargs, Mapping) else list(kwargs)
    if len(kwargs) != len(ids):
        raise ValueError(f"an ifeval label has {len(ids)} instruction ids but {len(kwargs)} kwargs")
    return [_constraint(i, k) for i, k in zip(ids, kwargs)]


def _constraint(instruction_id: Any, kwargs: Mapping[str, Any] | None) -> Constraint:
    fn = get_check(instruction_id) if isinstance(instruction_id, str) else None
    if fn is None:
        known = known_instruction_ids()
        raise ValueError(
            f"unknown instruction_id {instruction_id!r}"
            f"{did_you_mean(str(instruction_id), known)} ({len(known)} known)"
        )
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise ValueError(f"instruction {instruction_id!r}: kwargs must be a dict, got {kwargs!r}")
    # The data carries every kwarg key of every instruction, null where unused.
    given = {k: v for k, v in (kwargs or {}).items() if v is not None}
    try:
        inspect.signature(fn).bind("", **given)
    except TypeError as e:
        accepted = ", ".join(check_parameters(instruction_id)) or "none"
        raise ValueError(
            f"instruction {instruction_id!r} cannot take kwargs {sorted(given)}: {e} "
            f"(accepts: {accepted})"
        ) from e
    return Constraint(instruction_id, given)
