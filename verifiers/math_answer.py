"""Finds the final answer in a math response and tidies it for math-verify; pure string functions.

`extract_answer` tries the configured sources in order: the last `\\boxed{}`, the last
`Answer: ...` line (Minerva's "Final Answer: The final answer is X. I hope it is correct."
included), or the last number in the text. `normalize_answer` fixes the few forms math-verify
misreads; everything else (fractions, `\\dfrac`, `\\%`, `\\$`, units in `\\text{}`, `1,000`) it handles.
"""

import re
from collections.abc import Callable, Sequence
from typing import Literal

AnswerSource = Literal["boxed", "answer_line", "last_number"]

_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")
# Markdown may wrap the keyword: "**Answer:** 5", "**Final Answer**: 5", "> Answer: 5".
_ANSWER_LINE = re.compile(
    r"^[ \t>*#_-]*(?:final[ \t]+)?answer[ \t*_]*:(.*)$", re.IGNORECASE | re.MULTILINE
)
_MINERVA_PREFIX = re.compile(r"^the final answer is\s*", re.IGNORECASE)
_MINERVA_SUFFIX = re.compile(r"\s*I hope it is correct\.?$", re.IGNORECASE)
# A number not glued to a word or another number: thousands groups, decimals, exponent.
_NUMBER = re.compile(
    r"(?<![\w.])[-−]?(?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?"
)


def extract_answer(text: str, sources: Sequence[AnswerSource]) -> str | None:
    """The answer from the first of `sources` that finds one, or None."""
    for source in sources:
        answer = _EXTRACTORS[source](text)
        if answer:
            return answer
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` / `\\fbox{...}`, nested braces matched."""
    opens = list(_BOX_OPEN.finditer(text))
    if not opens:
        return None
    start = i = opens[-1].end()
    depth = 1
    while i < len(text):
        char = text[i]
        if char == "\\":  # `\{`, `\}` and `\\` are escapes, not grouping
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start:i].strip() or None
        i += 1
    # Unclosed: the response was cut off inside its final box, so it has no final answer.
    return None


def answer_line(text: str) -> str | None:
    """What follows the last `Answer:` / `Final Answer:` line, Minerva's wrapping removed."""
    for match in reversed(list(_ANSWER_LINE.finditer(text))):
        answer = _MINERVA_SUFFIX.sub("", _MINERVA_PREFIX.sub("", match.group(1).strip(" \t*_")))
        answer = answer.rstrip(". \t")
        if answer:
            return answer
    return None


def last_number(text: str) -> str | None:
    """The last number in the text, thousands separators dropped."""
    numbers = _NUMBER.findall(text)
    return numbers[-1].replace(",", "").replace("−", "-") if numbers else None


_EXTRACTORS: dict[AnswerSource, Callable[[str], str | None]] = {
    "boxed": last_boxed,
    "answer_line": answer_line,
    "last_number": last_number,
}

_DOLLAR = re.compile(r"(?<!\\)\$")
_WHOLE_TEXT = re.compile(r"^\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}$")
_THIN_SPACE_THOUSANDS = re.compile(r"(?<=\d)\\[,!](?=\d{3}(?!\d))")
_SCIENTIFIC = re.compile(r"^(-?\d+(?:\.\d+)?)[eE]([-+]?\d+)$")
# Words of three letters or more, so "5 pi" stays; "and" would turn "2 and 3" into "2".
_NUMBER_WITH_UNIT_WORDS = re.compile(r"^(-?[\d.,]*\d)\s+(?!and\b)[a-zA-Z]{3,}(?:\s+[a-zA-Z]+)*$")


def normalize_answer(answer: str) -> str:
    """`answer` with the forms math-verify misreads rewritten; otherwise unchanged."""
    # Inline-math delimiters left around an answer line's content; `\$` (currency) stays.
    answer = _DOLLAR.sub("", answer).strip()
    if answer.startswith(("\\(", "\\[")) and answer.endswith(("\\)", "\\]")):
        answer = answer[2:-2].strip()
    # math-verify reads `\text{5 cm}` as one symbol "5cm"; unwrapped, it drops the unit itself.
    answer = _WHOLE_TEXT.sub(r"\1", answer).strip()
    # math-verify reads the LaTeX thousands separator in `1\,000` as a product, 1·000 = 0.
    answer = _THIN_SPACE_THOUSANDS.sub("", answer)
    # math-verify knows `\emptyset` but reads `\varnothing` as a symbol of that name.
    answer = answer.replace("\\varnothing", "\\emptyset")
    # math-verify reads `1e-3` as 1·e − 3, with Euler's e.
    answer = _SCIENTIFIC.sub(r"\1 \\times 10^{\2}", answer)
    # math-verify knows a list of units; others ("12 dollars") become a product of letters.
    return _NUMBER_WITH_UNIT_WORDS.sub(r"\1", answer)
