"""SFT data (Dolci SFT rows): validation, tokenisation with assistant-only loss masks, packing.

`tokenize_conversation` renders a conversation with the tokenizer's chat template and marks the
assistant turns (content and end-of-turn token, not the role header) as trained;
`pack_sft_examples` lays several conversations end to end in rows the learner's packed forward
pass takes, position ids restarting per document so that attention never crosses documents.
"""

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch

from olmorl.algo.masks import TrajectoryTokens
from olmorl.algo.packing import PackedRow, concatenate_documents, first_fit
from olmorl.data.checked_rows import BadRow, load_checked_rows
from olmorl.data.rl_rows import RowError, check_messages


@dataclass(frozen=True)
class SFTRow:
    messages: tuple[Mapping[str, str], ...]
    """The conversation; every assistant turn is trained, the rest is context."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """The row's other fields (`id`, `source`, ...), kept for bookkeeping."""


class TokenizedConversation(NamedTuple):
    """One conversation as aligned token arrays; unpacks as `(input_ids, loss_mask)`."""

    input_ids: list[int]
    """Token ids of the rendered conversation."""
    loss_mask: list[bool]
    """True on the tokens the model is trained to produce: assistant contents and end tokens."""


class ConversationTooLongError(ValueError):
    """A conversation longer than the token budget; the caller chooses to skip it or stop."""

    def __init__(self, num_tokens: int, max_tokens: int):
        super().__init__(
            f"the conversation has {num_tokens} tokens, more than max_tokens={max_tokens}"
        )
        self.num_tokens = num_tokens
        self.max_tokens = max_tokens


class ChatTemplateError(ValueError):
    """A chat template whose renderings of successive turns do not extend one another."""


def validate_sft_row(row: Mapping[str, Any]) -> SFTRow:
    """Checks one row and returns it typed; raises RowError naming the field."""
    value = row.get("messages")
    if value is None:
        raise RowError("messages", "missing")
    check_messages(value)
    if value[0]["role"] == "assistant":
        # Token t is trained from the logits at t-1: a trained turn needs context before it.
        raise RowError("messages[0].role", "a conversation must not open with an assistant turn")
    if not any(m["role"] == "assistant" and m["content"].strip() for m in value):
        raise RowError("messages", "no assistant turn with content: nothing to train on")
    messages = tuple({"role": m["role"], "content": m["content"]} for m in value)
    return SFTRow(messages=messages, extra={k: v for k, v in row.items() if k != "messages"})


def tokenize_conversation(
    messages: Sequence[Mapping[str, str]],
    tokenizer,
    max_tokens: int,
    end_of_turn_ids: Collection[int] | None = None,
) -> TokenizedConversation:
    """Token ids and loss mask of a conversation; raises ConversationTooLongError past max_tokens.

    The template is rendered for every prefix of the conversation, and, before each assistant
    turn, with the generation prompt. Each difference between successive renderings is tokenised
    on its own, so the mask is exact whatever the tokenizer merges; the context before an
    assistant turn is tokenised in one piece, as `render_prompt` does for generation. Of an
    assistant segment (content + template suffix) the tokens up to the last end-of-turn token
    (`end_of_turn_ids`, by default the tokenizer's eos) are trained; what follows it, such as the
    newline Olmo's template writes after `<|im_end|>`, is never generated and is not trained.
    A template that rewrites earlier turns (one that drops past reasoning, say) is refused.
    """
    end_ids = set(end_of_turn_ids or {tokenizer.eos_token_id})
    input_ids: list[int] = []
    loss_mask: list[bool] = []
    rendered = ""  # the template applied to messages[:i]
    pending = ""  # rendered context not yet tokenised
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            prompt = _render(tokenizer, messages[:i], add_generation_prompt=True)
            pending += _extension(rendered, prompt, i, "the generation prompt")
            input_ids += _encode(tokenizer, pending)
            loss_mask += [False] * (len(input_ids) - len(loss_mask))
            pending, rendered = "", prompt
        full = _render(tokenizer, messages[: i + 1], add_generation_prompt=False)
        segment = _extension(rendered, full, i, f"turn {i}")
        rendered = full
        if message["role"] != "assistant":
            pending += segment
            continue
        ids = _encode(tokenizer, segment)
        ends = [j for j, token in enumerate(ids) if token in end_ids]
        trained = ends[-1] + 1 if ends else len(ids)
        input_ids += ids
        loss_mask += [True] * trained + [False] * (len(ids) - trained)
    if pending:
        input_ids += _encode(tokenizer, pending)
        loss_mask += [False] * (len(input_ids) - len(loss_mask))
    if len(input_ids) > max_tokens:
        raise ConversationTooLongError(len(input_ids), max_tokens)
    return TokenizedConversation(input_ids, loss_mask)


def load_sft_examples(
    path: str | Path, tokenizer, max_tokens: int, on_bad_row: Literal["stop", "skip"]
) -> tuple[list[TokenizedConversation], Counter[str]]:
    """Every conversation of one data set tokenized, and the skipped rows counted per reason.

    Reasons are the offending field with indices elided (`messages[].role`), `too_long`,
    `chat_template` or `bad_json`; with on_bad_row="stop" the first bad row raises DataError
    naming the file and row instead.
    """

    def check(row: Mapping[str, Any]) -> TokenizedConversation:
        try:
            return tokenize_conversation(validate_sft_row(row).messages, tokenizer, max_tokens)
        except RowError as e:
            raise BadRow.from_row_error(e) from None
        except ConversationTooLongError as e:
            raise BadRow(str(e), "too_long") from None
        except ChatTemplateError as e:
            raise BadRow(str(e), "chat_template") from None

    return load_checked_rows(path, check, on_bad_row)


def _render(tokenizer, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool) -> str:
    if not messages and not add_generation_prompt:
        return ""
    return tokenizer.apply_chat_template(
        list(messages), add_generation_prompt=add_generation_prompt, tokenize=False
    )


def _extension(before: str, after: str, index: int, what: str) -> str:
    if not after.startswith(before):
        raise ChatTemplateError(
            f"messages[{index}]: the chat template's rendering with {what} does not extend "
            "its rendering of the earlier turns, so the trained tokens cannot be located; "
            "use a template that renders each turn the same whatever follows it"
        )
    return after[len(before) :]


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False) if text else []


def pack_sft_examples(
    examples: Sequence[tuple[Sequence[int], Sequence[bool]]], max_tokens: int
) -> list[PackedRow]:
    """Packs every example into exactly one row of at most max_tokens tokens, first fit in order.

    Each example goes, in the given order, into the first row with room, so rows keep roughly the
    data order. Rows are the learner's PackedRow (position ids restart per document, see
    `PackedRow.model_inputs`); SFT has no sampler logprobs or advantages, which are left 0 and
    must not be read. `trajectory_indices` are the indices of the examples.
    """
    lengths = [len(ids) for ids, _ in examples]
    too_long = [i for i, n in enumerate(lengths) if n > max_tokens]
    if too_long:
        raise ValueError(
            f"example {too_long[0]} has {lengths[too_long[0]]} tokens, more than "
            f"max_tokens={max_tokens} ({len(too_long)} such examples)"
        )
    bins = first_fit(range(len(lengths)), lengths, max_tokens)
    docs = [conversation_document(ids, mask) for ids, mask in examples]
    return [concatenate_documents([docs[i] for i in indices], tuple(indices)) for indices in bins]


def conversation_document(input_ids: Sequence[int], loss_mask: Sequence[bool]) -> TrajectoryTokens:
    if len(input_ids) != len(loss_mask):
        raise ValueError(
            f"{len(input_ids)} token ids but {len(loss_mask)} loss-mask entries: they must align"
        )
    length = len(input_ids)
    return TrajectoryTokens(
        input_ids=torch.as_tensor(input_ids, dtype=torch.long).reshape(-1),  # [T]
        loss_mask=torch.as_tensor(loss_mask, dtype=torch.bool).reshape(-1),  # [T]
        sampler_logprobs=torch.zeros(length, dtype=torch.float32),
        advantages=torch.zeros(length, dtype=torch.float32),
    )
