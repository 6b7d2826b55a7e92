"""How instruction checks split a response: words, sentences, paragraphs, lines.

One definition for every check, so "words" means the same thing in a word-count constraint and a
keyword-frequency one.
"""

import re

_WORD = re.compile(r"\b\w+(?:['’-]\w+)*\b")
# A sentence ends at . ! ? (possibly repeated, possibly followed by a closing quote or bracket)
# before whitespace, or at the end of the text; abbreviations like "e.g." are not special-cased.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


def words(text: str) -> list[str]:
    """Words as runs of letters/digits, keeping inner apostrophes and hyphens ("don't", "x-ray")."""
    return _WORD.findall(text)


def sentences(text: str) -> list[str]:
    """Non-empty sentences, split after . ! ? followed by whitespace."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def paragraphs(text: str, separator: str = r"\n\s*\n") -> list[str]:
    """Non-empty paragraphs; `separator` is a regex (IFEval uses `\\* \\* \\*` for some checks)."""
    return [p.strip() for p in re.split(separator, text.strip()) if p.strip()]


def lines(text: str) -> list[str]:
    """Non-empty lines, stripped."""
    return [line.strip() for line in text.splitlines() if line.strip()]
