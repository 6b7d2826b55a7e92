"""Turning RL rows into prompt token ids: the chat template, or plain text for RL-Zero."""

from collections.abc import Collection, Sequence
from functools import partial
from typing import Literal

from olmorl.config import DataConfig
from olmorl.data.checked_rows import BadRow, load_checked_rows
from olmorl.data.dolci import dolci_rl_row
from olmorl.data.loading import DataError
from olmorl.data.rl_rows import RLRow, RowError, validate_rl_row


def render_prompt(row: RLRow, tokenizer, prompt_format: Literal["chat", "plain"]) -> list[int]:
    if prompt_format == "chat":
        text = tokenizer.apply_chat_template(
            list(row.messages), add_generation_prompt=True, tokenize=False
        )
    else:
        # RL-Zero prompts a base model with the bare text: no role markers, no special tokens.
        text = "\n\n".join(m["content"] for m in row.messages)
    return tokenizer.encode(text, add_special_tokens=False)


def checked_rl_row(
    row: dict, known_verifiers: Collection[str] | None, source_verifier: str | None = None
) -> RLRow:
    """A row in olmorl's schema or as a Dolci set was published (`dolci_rl_row`), validated;
    raises BadRow."""
    try:
        dolci = dolci_rl_row(row, known_verifiers or (), source_verifier)
        return validate_rl_row(dolci, known_verifiers)
    except RowError as e:
        raise BadRow.from_row_error(e) from None


def load_rl_rows(
    sources: Sequence[str], known_verifiers: Collection[str] | None = None, split: str = "train"
) -> list[RLRow]:
    """Every row of `sources`, validated (`checked_rl_row`): the first bad row stops the load
    with a DataError naming the file, row and field, after every row naming an unknown verifier
    has been found."""
    return [
        row
        for source in sources
        for row in load_checked_rows(
            source, lambda r: checked_rl_row(r, known_verifiers), "stop", split
        )[0]
    ]


def load_prompts(
    data: DataConfig, tokenizer, known_verifiers: Collection[str] | None = None
) -> tuple[list[RLRow], list[list[int]], dict[str, dict[str, int]]]:
    """The rows of every `data.train` source, their prompts' token ids, and per source the rows
    kept and skipped by reason.

    A bad row (schema, unknown verifier, a prompt over data.max_prompt_tokens) stops the load with
    a DataError naming the file, row and field, or is skipped and counted (data.on_bad_row).
    """
    rows: list[RLRow] = []
    prompts: list[list[int]] = []
    report: dict[str, dict[str, int]] = {}

    def check(row: dict, source: str) -> tuple[RLRow, list[int]]:
        checked = checked_rl_row(row, known_verifiers, data.source_verifiers.get(source))
        ids = render_prompt(checked, tokenizer, data.prompt_format)
        if len(ids) > data.max_prompt_tokens:
            raise BadRow(
                f"the prompt has {len(ids)} tokens, more than "
                f"data.max_prompt_tokens={data.max_prompt_tokens}",
                "too_long",
            )
        return checked, ids

    for source in data.train:
        kept, skipped = load_checked_rows(
            source, partial(check, source=source), data.on_bad_row, data.split
        )
        rows += [row for row, _ in kept]
        prompts += [ids for _, ids in kept]
        report[source] = {"prompts": len(kept), **{f"skipped/{k}": v for k, v in skipped.items()}}
    if not rows:
        raise DataError(f"{', '.join(data.train)}: no usable prompts (see the skipped rows)")
    return rows, prompts, report
