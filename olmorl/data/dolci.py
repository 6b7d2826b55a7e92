"""Dolci RL rows as AllenAI published them, turned into olmorl's RL row schema.

The published sets differ from the schema open-instruct's trainer documents (and olmorl takes):

- the prompt may be a flat string in `prompt` ("user: What is 2 + 2?"), with no `messages`;
- `dataset` and `ground_truth` are lists, mostly of one element, and `ground_truth` may be null
  (a judged row with no reference answer);
- `dataset` holds open-instruct's verifier names, matched there case-insensitively, or is absent
  (RL-Zero: one verifier per set, `data.source_verifiers`).

`dolci_rl_row` normalises a row; a row already in olmorl's schema comes back unchanged.
open-instruct names with no olmorl verifier (`string_f1`, `puzzle`, `max_length`, ...) are kept,
so the loader reports them with every row that uses them before the run starts.
"""

import re
from collections.abc import Collection, Mapping
from typing import Any

DOLCI_VERIFIERS = {
    "math": "math",
    "strict_math": "math",
    "gsm8k": "math",
    "code": "code",
    "code_stdio": "code_stdio",
    "ifeval": "ifeval",
    "general-quality": "judge",
    "general-quality_ref": "judge",
}
"""open-instruct's verifier names (`ground_truth_utils.build_all_verifiers` and the judge names
`general-<judge type>`) that the Olmo 3 RL sets use, and the olmorl verifier scoring each.
`strict_math` and `gsm8k` extract the answer differently there; olmorl's `math` reads a boxed or
final answer for all three. Other judge types (`general-safety`, ...) use prompts olmorl's judge
does not have, so they are not mapped."""

_IGNORES_LABEL = {"general-quality"}
"""open-instruct's judge without a reference ignores the label; olmorl's judge reads a non-empty
label as the reference answer, so it gets none."""

_ROLE_MARKER = re.compile(r"^(system|user|assistant):[ \t]?", re.IGNORECASE | re.MULTILINE)


def dolci_rl_row(
    row: Mapping[str, Any],
    known_verifiers: Collection[str] = (),
    source_verifier: str | None = None,
) -> dict[str, Any]:
    """The row in olmorl's RL schema. Verifier names in `known_verifiers` are never renamed, so a
    plug-in registered under one of open-instruct's names keeps its rows. A row with no `dataset`
    gets `source_verifier`: the RL-Zero sets name their verifier by the set, not per row."""
    out = dict(row)
    if out.get("dataset") is None and source_verifier is not None:
        out["dataset"] = source_verifier
    if out.get("messages") is None and isinstance(out.get("prompt"), str):
        out["messages"] = prompt_messages(out.pop("prompt"))
    names = _one_or_many(out.get("dataset"))
    if names is None:
        return out
    labels = _one_or_many(out.get("ground_truth"))
    renamed = [_olmorl_name(name, known_verifiers) for name in _as_list(names)]
    if isinstance(names, list) and isinstance(labels, list):  # one label per verifier
        labels = [_label(n, label) for n, label in zip(names, labels, strict=False)] + labels[
            len(names) :
        ]
    elif isinstance(names, str):
        labels = _label(names, labels) if renamed[0] == "judge" else labels
    elif labels is None and all(name == "judge" for name in renamed):
        labels = ""
    out["dataset"] = renamed if isinstance(names, list) else renamed[0]
    out["ground_truth"] = labels
    return out


def _label(name: Any, label: Any) -> Any:
    """A judged row's label: none where open-instruct's judge ignores it or the row has none
    (judged on its own, without a reference answer)."""
    return "" if _name(name) in _IGNORES_LABEL or label is None else label


def prompt_messages(prompt: str) -> list[dict[str, str]]:
    """A flat prompt string as chat messages: split at each `user:` / `assistant:` / `system:`
    opening a line (any case); with no marker the whole string is the user's turn."""
    markers = list(_ROLE_MARKER.finditer(prompt))
    if not markers or prompt[: markers[0].start()].strip():
        return [{"role": "user", "content": prompt.strip()}]
    ends = [m.start() for m in markers[1:]] + [len(prompt)]
    return [
        {"role": m.group(1).lower(), "content": prompt[m.end() : end].strip()}
        for m, end in zip(markers, ends, strict=True)
    ]


def _one_or_many(value: Any) -> Any:
    """A one-element list as its element (open-instruct wraps scalars so); else unchanged."""
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _name(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _olmorl_name(name: Any, known_verifiers: Collection[str]) -> Any:
    if not isinstance(name, str) or name in known_verifiers:
        return name
    return DOLCI_VERIFIERS.get(name.lower(), name)
