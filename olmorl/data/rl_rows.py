"""The RL row schema (Dolci): `messages`, `ground_truth`, `dataset`, validated without I/O.

`dataset` names the verifier(s) that score the row; when it is a list the row's reward is the sum
of their scores, and a `ground_truth` list of the same length pairs up with it.
"""

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "user", "assistant", "tool")


class RowError(ValueError):
    """A row that does not fit the schema; `field` names the offending field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"field '{field}': {message}")
        self.field = field


class UnknownVerifierError(RowError):
    """`dataset` names a verifier olmorl does not have: the loader gathers every such row."""


@dataclass(frozen=True)
class RLRow:
    messages: tuple[Mapping[str, str], ...]
    """The prompt as chat messages, ending with the user's turn."""
    ground_truth: str | tuple[str, ...]
    """The label each verifier checks the response against."""
    dataset: str | tuple[str, ...]
    """The verifier name(s) that score this row."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """The row's other fields, passed on to the verifiers (e.g. `forbidden_words`)."""

    def as_verifier_row(self) -> dict[str, Any]:
        """The row as verifiers receive it."""
        return {
            **self.extra,
            "messages": list(self.messages),
            "ground_truth": self.ground_truth,
            "dataset": self.dataset,
        }

    @property
    def verifier_names(self) -> tuple[str, ...]:
        return self.dataset if isinstance(self.dataset, tuple) else (self.dataset,)


def validate_rl_row(
    row: Mapping[str, Any], known_verifiers: Collection[str] | None = None
) -> RLRow:
    """Checks one row and returns it typed; raises RowError naming the field."""
    for name in ("messages", "ground_truth", "dataset"):
        if name not in row or row[name] is None:
            raise RowError(name, "missing")
    messages = _messages(row["messages"])
    dataset = _names_or_labels("dataset", row["dataset"])
    ground_truth = _names_or_labels("ground_truth", row["ground_truth"])
    if (
        isinstance(dataset, tuple)
        and isinstance(ground_truth, tuple)
        and len(dataset) != len(ground_truth)
    ):
        raise RowError(
            "ground_truth",
            f"{len(ground_truth)} labels for {len(dataset)} verifiers {list(dataset)}; "
            "give one label per verifier or a single label",
        )
    names = dataset if isinstance(dataset, tuple) else (dataset,)
    if known_verifiers is not None:
        unknown = [n for n in names if n not in known_verifiers]
        if unknown:
            raise UnknownVerifierError(
                "dataset",
                f"unknown verifier {unknown[0]!r}; known: {', '.join(sorted(known_verifiers))}",
            )
    extra = {k: v for k, v in row.items() if k not in ("messages", "ground_truth", "dataset")}
    return RLRow(messages=messages, ground_truth=ground_truth, dataset=dataset, extra=extra)


def _messages(value: Any) -> tuple[Mapping[str, str], ...]:
    check_messages(value)
    if value[-1]["role"] != "user":
        raise RowError(
            "messages", f"the prompt must end with a user turn, not {value[-1]['role']!r}"
        )
    if not value[-1]["content"].strip():
        raise RowError(f"messages[{len(value) - 1}].content", "the user turn is empty")
    return tuple({"role": m["role"], "content": m["content"]} for m in value)


def _names_or_labels(name: str, value: Any) -> str | tuple[str, ...]:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list) and value and all(isinstance(v, (str, int, float)) for v in value):
        return tuple(str(v) for v in value)
    raise RowError(name, f"expected a string or a non-empty list of strings, got {value!r:.80}")


def check_messages(value: Any) -> None:
    """Raises RowError unless `value` is a non-empty list of {role, content} with known roles."""
    if not isinstance(value, list) or not value:
        raise RowError("messages", "expected a non-empty list of {role, content}")
    for i, message in enumerate(value):
        if not isinstance(message, Mapping):
            raise RowError(
                f"messages[{i}]",
                f"expected a {{role, content}} mapping, got {type(message).__name__}",
            )
        if message.get("role") not in ROLES:
            raise RowError(
                f"messages[{i}].role",
                f"expected one of {', '.join(ROLES)}, got {message.get('role')!r}",
            )
        if not isinstance(message.get("content"), str):
            raise RowError(f"messages[{i}].content", "expected a string")
