"""The `contains` verifier: 1.0 when the label appears in the response as a whole word.

A row may also list `forbidden_words`; a response holding any of them scores 0. The synthetic
target-token task ("Write the word t5.", the other targets forbidden) uses both, so that writing
every target word at once earns nothing. Words are delimited by whitespace, punctuation or the
text's ends.
"""

import re
from collections.abc import Mapping
from typing import Any

from verifiers.base import Verifier, VerifierResult
from verifiers.registry import register


@register("contains")
class ContainsVerifier(Verifier):
    async def __call__(self, response: str, label: Any, row: Mapping[str, Any]) -> VerifierResult:
        if any(contains_word(response, word) for word in row.get("forbidden_words", ())):
            return VerifierResult(0.0, "forbidden_word")
        found = contains_word(response, label)
        return VerifierResult(1.0 if found else 0.0, "correct" if found else "wrong_answer")


def contains_word(text: str, word: str) -> bool:
    """Whether `word` occurs in `text` with no letter or digit right before or after it."""
    if not isinstance(word, str) or not word.strip():
        raise ValueError(f"a contains label is a non-empty word, got {word!r}")
    # [^\W_] is a letter or digit: "t17" is found in "(t17)." and "t17_x" but not in "t170" or "at17".
    return re.search(rf"(?<![^\W_]){re.escape(word.strip())}(?![^\W_])", text) is not None
