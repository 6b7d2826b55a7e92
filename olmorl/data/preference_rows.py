"""The DPO row schemas (Dolci preference sets), normalised to `PreferencePair`, and their loader.

Two schemas are accepted:
  (a) `chosen` and `rejected` are whole conversations (lists of {role, content}) that share the
      prompt turns and end with the assistant reply;
  (b) `prompt` (a string, read as one user turn, or a message list) with `chosen` and `rejected`
      replies, each a string or a list holding one assistant message.
Only `role` and `content` of each message are kept; the row's other fields are ignored.
"""

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from olmorl.data.checked_rows import BadRow, load_checked_rows
from olmorl.data.rl_rows import ROLES, RowError

SKIP_REASONS = (
    "bad_json",  # a line that is not JSON, or a row that is not an object
    "missing_field",  # no `chosen` or no `rejected`
    "bad_type",  # a field or message of the wrong type (e.g. content not a string)
    "missing_role",
    "unknown_role",
    "not_assistant",  # the reply turn is not an assistant turn
    "empty_reply",  # an assistant reply that is empty or whitespace
    "no_prompt",  # nothing before the reply: no prompt turns and no (or an empty) `prompt`
    "prompt_mismatch",  # schema (a): chosen and rejected differ before their last turn
    "identical",  # chosen and rejected replies equal (ignoring surrounding whitespace)
    "too_long",  # count_tokens(pair) > max_tokens
    "chat_template",  # the tokenizer's chat template cannot render the pair (count_tokens)
)
"""The keys of the skip Counter that `load_preference_pairs` returns."""


class PairError(RowError):
    """A preference row that does not fit; `field` names the field, `reason` the kind of fault."""

    def __init__(self, field: str, message: str, reason: str):
        super().__init__(field, message)
        self.reason = reason


@dataclass(frozen=True)
class PreferencePair:
    prompt_messages: tuple[Mapping[str, str], ...]
    """The conversation before the reply: system, user, tool and earlier assistant turns."""
    chosen: str
    """The preferred assistant reply, as written in the row."""
    rejected: str
    """The dispreferred assistant reply, as written in the row."""

    @property
    def chosen_messages(self) -> list[Mapping[str, str]]:
        """The prompt followed by the chosen reply, ready for a chat template."""
        return [*self.prompt_messages, {"role": "assistant", "content": self.chosen}]

    @property
    def rejected_messages(self) -> list[Mapping[str, str]]:
        """The prompt followed by the rejected reply, ready for a chat template."""
        return [*self.prompt_messages, {"role": "assistant", "content": self.rejected}]


def validate_preference_row(row: Mapping[str, Any]) -> PreferencePair:
    """Checks one row of either schema and returns it normalised; raises PairError naming the field."""
    for name in ("chosen", "rejected"):
        if row.get(name) is None:
            raise PairError(name, "missing", "missing_field")
    chosen, rejected = row["chosen"], row["rejected"]
    if isinstance(chosen, list):
        if not isinstance(rejected, list):
            raise PairError(
                "rejected",
                f"expected a message list like chosen, got {_kind(rejected)}",
                "bad_type",
            )
        chosen_prompt, chosen_reply = _conversation("chosen", chosen)
        rejected_prompt, rejected_reply = _conversation("rejected", rejected)
        _check_same_prompt(chosen_prompt, rejected_prompt)
        prompt = chosen_prompt or _prompt(row)  # schema (b) with one-message lists as replies
    elif isinstance(chosen, str):
        if not isinstance(rejected, str):
            raise PairError(
                "rejected", f"expected a string like chosen, got {_kind(rejected)}", "bad_type"
            )
        chosen_reply = _reply_text("chosen", chosen)
        rejected_reply = _reply_text("rejected", rejected)
        prompt = _prompt(row)
    else:
        raise PairError(
            "chosen", f"expected a message list or a string, got {_kind(chosen)}", "bad_type"
        )
    if chosen_reply.strip() == rejected_reply.strip():
        raise PairError("rejected", "the same reply as chosen", "identical")
    return PreferencePair(prompt_messages=prompt, chosen=chosen_reply, rejected=rejected_reply)


def load_preference_pairs(
    path: str | Path,
    on_bad_row: Literal["stop", "skip"],
    max_tokens: int | None = None,
    count_tokens: Callable[[PreferencePair], int] | None = None,
) -> tuple[list[PreferencePair], Counter[str]]:
    """The valid pairs of one data set, and how many rows were skipped for each reason.

    Rows are read by `load_checked_rows` (which says what files it reads): with on_bad_row="stop"
    the first bad row raises DataError naming the file, the 1-based row and the field; with
    "skip" it is counted under one of SKIP_REASONS. A pair longer than `max_tokens`, as
    `count_tokens` measures it, is a bad row.
    """
    if (max_tokens is None) != (count_tokens is None):
        raise ValueError("max_tokens and count_tokens must be given together")

    def check(row: Mapping[str, Any]) -> PreferencePair:
        try:
            pair = validate_preference_row(row)
        except PairError as e:
            raise BadRow(str(e), e.reason) from None
        if count_tokens is not None and max_tokens is not None:
            tokens = count_tokens(pair)
            if tokens > max_tokens:
                raise BadRow(f"{tokens} tokens, more than max_tokens = {max_tokens}", "too_long")
        return pair

    return load_checked_rows(path, check, on_bad_row)


def _conversation(name: str, value: list) -> tuple[tuple[Mapping[str, str], ...], str]:
    """Schema (a): the prompt turns and the final assistant reply of one side."""
    messages = _messages(name, value)
    last = len(messages) - 1
    if messages[last]["role"] != "assistant":
        raise PairError(
            f"{name}[{last}].role",
            f"the last turn must be the assistant reply, not {messages[last]['role']!r}",
            "not_assistant",
        )
    return messages[:last], _reply_text(f"{name}[{last}].content", messages[last]["content"])


def _check_same_prompt(
    chosen: tuple[Mapping[str, str], ...], rejected: tuple[Mapping[str, str], ...]
) -> None:
    for i, (c, r) in enumerate(zip(chosen, rejected, strict=False)):
        if c != r:
            raise PairError(
                f"rejected[{i}]",
                f"differs from chosen[{i}]; both must share the turns before the reply",
                "prompt_mismatch",
            )
    if len(chosen) != len(rejected):
        raise PairError(
            "rejected",
            f"{len(rejected)} turns before the reply, chosen has {len(chosen)}; "
            "both must share the turns before the reply",
            "prompt_mismatch",
        )


def _prompt(row: Mapping[str, Any]) -> tuple[Mapping[str, str], ...]:
    """Schema (b): the `prompt` field as messages."""
    prompt = row.get("prompt")
    if prompt is None:
        raise PairError(
            "prompt", "missing (chosen and rejected carry no turns before the reply)", "no_prompt"
        )
    if isinstance(prompt, str):
        if not prompt.strip():
            raise PairError("prompt", "empty", "no_prompt")
        return ({"role": "user", "content": prompt},)
    if isinstance(prompt, list):
        return _messages("prompt", prompt)
    raise PairError(
        "prompt", f"expected a string or a message list, got {_kind(prompt)}", "bad_type"
    )


def _messages(name: str, value: list) -> tuple[Mapping[str, str], ...]:
    if not value:
        raise PairError(name, "expected a non-empty list of {role, content}", "bad_type")
    for i, message in enumerate(value):
        if not isinstance(message, Mapping):
            raise PairError(
                f"{name}[{i}]",
                f"expected a {{role, content}} mapping, got {_kind(message)}",
                "bad_type",
            )
        role = message.get("role")
        if role is None:
            raise PairError(f"{name}[{i}].role", "missing", "missing_role")
        if role not in ROLES:
            raise PairError(
                f"{name}[{i}].role",
                f"expected one of {', '.join(ROLES)}, got {role!r}",
                "unknown_role",
            )
        if not isinstance(message.get("content"), str):
            raise PairError(
                f"{name}[{i}].content",
                f"expected a string, got {_kind(message.get('content'))}",
                "bad_type",
            )
    return tuple({"role": m["role"], "content": m["content"]} for m in value)


def _reply_text(name: str, text: str) -> str:
    if not text.strip():
        raise PairError(name, "the assistant reply is empty", "empty_reply")
    return text


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
