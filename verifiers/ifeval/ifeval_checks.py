"""The 25 IFEval instruction types (Zhou et al. 2023) as checks, with IFEval's kwarg names.

Semantics follow Google's IFEval reference where it is sound, and are stricter where it is easy to
satisfy by accident: keywords match as whole words (not as substrings of longer words), a
postscript marker must start a line, a section marker must start a line, and `***` splits
paragraphs only as a divider line of its own. Counts are "at least" unless the instruction says
"exactly" (bullet lists, paragraphs).
"""

import json
import re
from functools import cache

from verifiers.ifeval import text as split
from verifiers.ifeval.registry import check

_RELATIONS = ("less than", "at least")


def compare(count: float, limit: float, relation: str) -> bool:
    """IFEval's two relations; any other value is bad data, not a failed check."""
    if relation == "less than":
        return count < limit
    if relation == "at least":
        return count >= limit
    raise ValueError(f"relation must be one of {_RELATIONS}, got {relation!r}")


def _word_pattern(phrase: str) -> re.Pattern[str]:
    """`phrase` as whole words, any case, any run of whitespace between its words."""
    words = r"\s+".join(re.escape(w) for w in phrase.split())
    if not words:
        raise ValueError(f"a keyword must not be blank, got {phrase!r}")
    # [^\W_] is a letter or digit: "cat" is found in "(cat)." but not in "category" or "bobcat".
    return re.compile(rf"(?<![^\W_]){words}(?![^\W_])", re.IGNORECASE)


def _count_phrase(text: str, phrase: str) -> int:
    return len(_word_pattern(phrase).findall(text))


# ---- keywords ----


@check("keywords:existence")
def keywords_existence(text: str, keywords: list[str]) -> bool:
    return all(_count_phrase(text, k) > 0 for k in keywords)


@check("keywords:frequency")
def keywords_frequency(text: str, keyword: str, frequency: int, relation: str) -> bool:
    return compare(_count_phrase(text, keyword), frequency, relation)


@check("keywords:forbidden_words")
def keywords_forbidden_words(text: str, forbidden_words: list[str]) -> bool:
    return not any(_count_phrase(text, w) for w in forbidden_words)


@check("keywords:letter_frequency")
def keywords_letter_frequency(
    text: str, letter: str, let_frequency: int, let_relation: str
) -> bool:
    if len(letter) != 1:
        raise ValueError(f"letter must be a single character, got {letter!r}")
    return compare(text.lower().count(letter.lower()), let_frequency, let_relation)


# ---- language and case ----


@cache
def _langdetect():
    # Imported on first use: loading the language profiles takes a moment.
    from langdetect import DetectorFactory, detect
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0  # langdetect samples at random; a fixed seed makes it repeatable
    return detect, LangDetectException


def detect_language(text: str) -> str | None:
    """langdetect's ISO 639-1 code ("en", "zh-cn"), or None for text without language features."""
    detect, error = _langdetect()
    try:
        return detect(text)
    except error:
        return None


def _is_language(text: str, language: str) -> bool:
    detected = detect_language(text)
    # langdetect tells "zh-cn" from "zh-tw"; a label of "zh" accepts either.
    return detected is not None and language.lower() in (detected, detected.split("-")[0])


@check("language:response_language")
def response_language(text: str, language: str) -> bool:
    return _is_language(text, language)


@check("change_case:english_capital")
def english_capital(text: str) -> bool:
    # Detected on the lowercase text: langdetect reads many all-caps English texts as Somali.
    return text.isupper() and _is_language(text.lower(), "en")


@check("change_case:english_lowercase")
def english_lowercase(text: str) -> bool:
    return text.islower() and _is_language(text, "en")


@check("change_case:capital_word_frequency")
def capital_word_frequency(text: str, capital_frequency: int, capital_relation: str) -> bool:
    capitals = [w for w in split.words(text) if w.isupper()]
    return compare(len(capitals), capital_frequency, capital_relation)


# ---- length ----


@check("length_constraints:number_sentences")
def number_sentences(text: str, num_sentences: int, relation: str) -> bool:
    return compare(len(split.sentences(text)), num_sentences, relation)


@check("length_constraints:number_words")
def number_words(text: str, num_words: int, relation: str) -> bool:
    return compare(len(split.words(text)), num_words, relation)


# A markdown divider on a line of its own: "***" or "* * *", possibly more asterisks.
_DIVIDER = re.compile(r"^[ \t]*\*(?:[ \t]*\*){2,}[ \t]*$", re.MULTILINE)


@check("length_constraints:number_paragraphs")
def number_paragraphs(text: str, num_paragraphs: int) -> bool:
    parts = [p.strip() for p in _DIVIDER.split(text.strip())]
    # A divider at the very start or end is harmless; two in a row leave an empty paragraph.
    if parts and not parts[0]:
        parts = parts[1:]
    if parts and not parts[-1]:
        parts = parts[:-1]
    return all(parts) and len(parts) == num_paragraphs


@check("length_constraints:nth_paragraph_first_word")
def nth_paragraph_first_word(
    text: str, num_paragraphs: int, nth_paragraph: int, first_word: str
) -> bool:
    paragraphs = split.paragraphs(text)
    if len(paragraphs) != num_paragraphs or not 1 <= nth_paragraph <= len(paragraphs):
        return False
    # The first word, past leading quotes or markdown ("**Summary:**" starts with "summary").
    words = split.words(paragraphs[int(nth_paragraph) - 1])
    return bool(words) and words[0].lower() == first_word.strip().lower()


# ---- detectable content ----


@check("detectable_content:number_placeholders")
def number_placeholders(text: str, num_placeholders: int) -> bool:
    placeholders = [p for p in re.findall(r"\[([^\[\]\n]*)\]", text) if p.strip()]
    return len(placeholders) >= num_placeholders


@check("detectable_content:postscript")
def postscript(text: str, postscript_marker: str) -> bool:
    marker = postscript_marker.strip()
    if not marker:
        raise ValueError("postscript_marker must not be blank")
    if re.fullmatch(r"[A-Za-z.\s]+", marker) and "." in marker:
        # An abbreviation ("P.S.", "P.P.S") is written loosely ("P.S", "p. s.", "PS"): dots and
        # spaces between the letters are optional, the letters are not ("P.P.S." is no "P.S.").
        letters = [c for c in marker if c.isalpha()]
        pattern = r"\.?\s?".join(letters) + r"\.?"
    else:
        pattern = re.escape(marker)
    # At the start of a line, after optional markdown emphasis, and not inside a longer word.
    start = re.compile(rf"^[ \t>*_#]*{pattern}(?![^\W_])", re.IGNORECASE | re.MULTILINE)
    return start.search(text) is not None


# ---- detectable format ----

_BULLET = re.compile(r"^[ \t]*[*+-][ \t]+\S", re.MULTILINE)


@check("detectable_format:number_bullet_lists")
def number_bullet_lists(text: str, num_bullets: int) -> bool:
    # Markdown bullets need a space after the marker: "---" and "-5 °C" are not bullets.
    return len(_BULLET.findall(text)) == num_bullets


_ANSWER_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


@check("detectable_format:constrained_response")
def constrained_response(text: str) -> bool:
    # Exactly one of the options: writing all three to be safe does not pass.
    return sum(option in text for option in _ANSWER_OPTIONS) == 1


# Emphasis cannot open or close on whitespace, so bullets ("* a") and products ("2 * 3 * 4") are not
# highlights.
_HIGHLIGHT = re.compile(r"\*\*(?!\s)([^\n*]+?)(?<!\s)\*\*|\*(?!\s)([^\n*]+?)(?<!\s)\*")


@check("detectable_format:number_highlighted_sections")
def number_highlighted_sections(text: str, num_highlights: int) -> bool:
    return len(_HIGHLIGHT.findall(text)) >= num_highlights


@check("detectable_format:multiple_sections")
def multiple_sections(text: str, section_spliter: str, num_sections: int) -> bool:
    # "SECTION 1" at the start of a line, possibly as a markdown heading or in bold; a mention in
    # running text ("as in Section 2") is not a section.
    marker = re.compile(rf"^[ \t#*_]*{re.escape(section_spliter.strip())}\s*\d+", re.MULTILINE)
    return len(marker.findall(text)) >= num_sections


@check("detectable_format:json_format")
def json_format(text: str) -> bool:
    body = text.strip()
    # A single fenced block is accepted, tagged json or not.
    fenced = re.fullmatch(r"```[ \t]*(?:json)?\s*(.*?)\s*```", body, re.DOTALL | re.IGNORECASE)
    if fenced:
        body = fenced.group(1)
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


@check("detectable_format:title")
def title(text: str) -> bool:
    # <<title>> on one line; the non-greedy match reads "<<<<>>>>" as an empty title.
    return any(t.strip("<> \t") for t in re.findall(r"<<([^\n]+?)>>", text))


# ---- combination ----


@check("combination:two_responses")
def two_responses(text: str) -> bool:
    parts = [p.strip() for p in text.split("******")]
    if parts and not parts[0]:
        parts = parts[1:]
    if parts and not parts[-1]:
        parts = parts[:-1]
    return len(parts) == 2 and all(parts) and parts[0] != parts[1]


def _normalize(s: str) -> str:
    return " ".join(s.split()).lower()


@check("combination:repeat_prompt")
def repeat_prompt(text: str, prompt_to_repeat: str) -> bool:
    # Case and line breaks may differ; the words may not.
    return _normalize(text).startswith(_normalize(prompt_to_repeat))


# ---- start and end ----


@check("startend:end_checker")
def end_checker(text: str, end_phrase: str) -> bool:
    # A closing quote after the phrase is allowed (the whole answer may be quoted).
    end = text.strip().rstrip("\"'”").rstrip()
    return _normalize(end).endswith(_normalize(end_phrase))


@check("startend:quotation")
def quotation(text: str) -> bool:
    body = text.strip()
    return len(body) > 1 and body[0] in '"“' and body[-1] in '"”'


# ---- punctuation ----


@check("punctuation:no_comma")
def no_comma(text: str) -> bool:
    # The fullwidth comma of CJK text is a comma too; code blocks are not exempt.
    return "," not in text and "，" not in text
