"""Think blocks on the tokenizer side: whether a prompt opened one, and decoding that keeps them.

Olmo 3 Think's chat template ends the generation prompt with `<think>`, so the response holds
only the closing tag. Both facts must reach the verifiers intact (verifiers/thinking.py), even
where the tokenizer declares the tags special tokens, which a plain `skip_special_tokens` drops.
"""

from collections.abc import Callable, Sequence
from typing import Literal

from olmorl.data.rl_rows import RLRow
from verifiers.thinking import THINK_END, THINK_START


def opens_thinking(row: RLRow, tokenizer, prompt_format: Literal["chat", "plain"]) -> bool:
    """Whether the rendered prompt leaves a think block open for the response to continue.

    With a chat template only what the generation prompt adds counts, however the template writes
    it, so that a user message quoting the tags does not; a plain prompt counts as a whole.
    """
    if prompt_format == "chat":
        messages = list(row.messages)
        with_prompt, without = (
            tokenizer.apply_chat_template(messages, add_generation_prompt=g, tokenize=False)
            for g in (True, False)
        )
        tail = with_prompt.removeprefix(without)
    else:
        tail = "\n\n".join(m["content"] for m in row.messages)
    return tail.rfind(THINK_START) > tail.rfind(THINK_END)


def response_decoder(tokenizer) -> Callable[[Sequence[int]], str]:
    """Decodes a response for the verifiers: special tokens (end of turn, padding) are dropped,
    except the think tags, which say where the answer starts."""
    skipped = {
        token_id
        for token_id, token in tokenizer.added_tokens_decoder.items()
        if token.special and token.content not in (THINK_START, THINK_END)
    } | set(tokenizer.all_special_ids)
    skipped -= {tokenizer.convert_tokens_to_ids(tag) for tag in (THINK_START, THINK_END)}

    def decode(token_ids: Sequence[int]) -> str:
        kept = [t for t in token_ids if t not in skipped]
        return tokenizer.decode(kept, skip_special_tokens=False)

    return decode
