"""Turning RL rows into prompt token ids: the chat template, or plain text for RL-Zero."""

from collections.abc import Sequence
from typing import Literal

from olmorl.data.loading import DataError
from olmorl.data.rl_rows import RLRow


def render_prompt(row: RLRow, tokenizer, prompt_format: Literal["chat", "plain"]) -> list[int]:
    if prompt_format == "chat":
        text = tokenizer.apply_chat_template(
            list(row.messages), add_generation_prompt=True, tokenize=False
        )
    else:
        # RL-Zero prompts a base model with the bare text: no role markers, no special tokens.
        text = "\n\n".join(m["content"] for m in row.messages)
    return tokenizer.encode(text, add_special_tokens=False)


def render_prompts(
    rows: Sequence[RLRow],
    tokenizer,
    prompt_format: Literal["chat", "plain"],
    max_tokens: int,
    source: str,
) -> list[list[int]]:
    """Token ids of every prompt; a prompt over `max_tokens` is an error naming its row."""
    prompts = []
    for index, row in enumerate(rows):
        ids = render_prompt(row, tokenizer, prompt_format)
        if len(ids) > max_tokens:
            raise DataError(
                f"{source} row {index + 1}: the prompt has {len(ids)} tokens, more than "
                f"data.max_prompt_tokens={max_tokens}"
            )
        prompts.append(ids)
    return prompts
