"""Turns a verifier's options (a plain mapping from YAML or the CLI) into its typed `Config`.

Unknown keys and values of the wrong type fail with one line naming the verifier and the key.
Lists become tuples and ints become floats where the field asks for them, since YAML has neither
tuples nor a float/int distinction.
"""

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar

C = TypeVar("C")


class VerifierConfigError(ValueError):
    """Options that do not fit a verifier's `Config`."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """The hint `; did you mean 'x'?` for the closest of `choices`, or "" when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def build_config(config_cls: type[C], options: Mapping[str, Any] | None, owner: str) -> C:
    """`config_cls(**options)` after checking keys and types; `owner` names the verifier."""
    fields = [f.name for f in dataclasses.fields(config_cls)]
    hints = typing.get_type_hints(config_cls)
    values = {}
    for key, value in (options or {}).items():
        if key not in fields:
            known = ", ".join(fields) or "none"
            raise VerifierConfigError(
                f"verifier {owner!r}: unknown option {key!r} (options: {known})"
                f"{did_you_mean(key, fields)}"
            )
        try:
            values[key] = _coerce(value, hints[key])
        except _Mismatch as e:
            raise VerifierConfigError(f"verifier {owner!r}: option {key!r} {e}") from None
    try:
        return config_cls(**values)
    except ValueError as e:  # range checks in the Config's __post_init__
        raise VerifierConfigError(f"verifier {owner!r}: {e}") from e


class _Mismatch(Exception):
    """A value that does not fit a type hint; the message completes "option 'key' ..."."""


def _coerce(value: Any, hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            try:
                return _coerce(value, arg)
            except _Mismatch:
                pass
        raise _Mismatch(f"must be {_describe(hint)}, got {value!r}")
    if origin is Literal:
        if value in args:
            return value
        choices = ", ".join(repr(a) for a in args)
        suggestion = did_you_mean(value, map(str, args)) if isinstance(value, str) else ""
        raise _Mismatch(f"must be one of {choices}, got {value!r}{suggestion}")
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch(f"must be a list, got {value!r}")
        return tuple(_coerce(item, args[0]) for item in value)
    # bool is an int subclass, but `timeout_s: true` is a mistake, not a number.
    if hint in (int, float) and isinstance(value, bool):
        raise _Mismatch(f"must be {_describe(hint)}, got {value!r}")
    if hint is float and isinstance(value, int):
        return float(value)
    expected = origin or hint
    if isinstance(expected, type) and not isinstance(value, expected):
        raise _Mismatch(f"must be {_describe(hint)}, got {value!r}")
    return value


def _describe(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
