"""IFBench's out-of-distribution constraints (AllenAI, arXiv 2507.02833) as instruction checks.

Instruction ids and kwarg names are IFBench's (`instructions_registry.py`). Each rule follows the
instruction's wording, with IFBench's checker deciding the details; where that checker contradicts
the wording we follow the wording (word trigrams for `ratio:overlap`, word indices for
`repeat:repeat_span`, whole-word keyword counts, ...), and the docstrings say so. A check is False
on a response with nothing to judge (no words, no sentences) instead of vacuously True, so an
empty answer earns no reward. Counts may arrive as floats from JSON (`N: 5.0`), so indices go
through int().

Left out: `words:start_verb` ("the response must start with a verb") needs a part-of-speech tagger
(IFBench uses NLTK's perceptron model, which cannot be installed from PyPI).
"""

import csv
import datetime
import io
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import pairwise

from verifiers.ifeval.registry import check
from verifiers.ifeval.text import lines, sentences, words

# --- word lists the constraints refer to -------------------------------------------------------


def _word_list(spaced: str) -> tuple[str, ...]:
    return tuple(spaced.split())


# NLTK's English stop-word list, the one IFBench counts against.
_STOP_WORDS = frozenset(
    _word_list("""
    i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself
    yourselves he him his himself she she's her hers herself it it's its itself they them their
    theirs themselves what which who whom this that that'll these those am is are was were be been
    being have has had having do does did doing a an the and but if or because as until while of
    at by for with about against between into through during before after above below to from up
    down in out on off over under again further then once here there when where why how all any
    both each few more most other some such no nor not only own same so than too very s t can will
    just don don't should should've now d ll m o re ve y ain aren aren't couldn couldn't didn
    didn't doesn doesn't hadn hadn't hasn hasn't haven haven't isn isn't ma mightn mightn't mustn
    mustn't needn needn't shan shan't shouldn shouldn't wasn wasn't weren weren't won won't wouldn
    wouldn't""")
)
_CONJUNCTIONS = frozenset(_word_list("and but for nor or so yet"))
_PRONOUNS = frozenset(
    _word_list("""
    i me we us you he him she her it they them my mine our ours your yours his hers its their
    theirs myself ourselves yourself yourselves himself herself itself themselves this that these
    those who whom whose which what whoever whomever whatever whichever anybody anyone anything
    everybody everyone everything nobody nothing somebody someone something each either neither
    both all some any none""")
)
# The names `count:person_names` lists in its instruction.
_PERSON_NAMES = _word_list("""
    Emma Liam Sophia Jackson Olivia Noah Ava Lucas Isabella Mason Mia Ethan Charlotte Alexander
    Amelia Benjamin Harper Leo Zoe Daniel Chloe Samuel Lily Matthew Grace Owen Abigail Gabriel Ella
    Jacob Scarlett Nathan Victoria Elijah Layla Nicholas Audrey David Hannah Christopher Penelope
    Thomas Nora Andrew Aria Joseph Claire Ryan Stella Jonathan""")
# Title case leaves these lowercase inside a title ("every *major* word").
_MINOR_WORDS = frozenset(
    _word_list("a an the and but or nor for so yet as at by in of off on per to up via vs")
)
# European capitals north of 45°N, north to south. IFBench's key omits Kyiv (50.45°N), which
# belongs between Brussels and Prague; we keep it so the correct answer passes.
_CAPITALS_NORTH_OF_45 = _word_list("""
    Reykjavik Helsinki Oslo Tallinn Stockholm Riga Moscow Copenhagen Vilnius Minsk Dublin Berlin
    Amsterdam Warsaw London Brussels Kyiv Prague Luxembourg Paris Vienna Bratislava Budapest Vaduz
    Chisinau Bern Ljubljana Zagreb""")

# --- shared helpers ------------------------------------------------------------------------------

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")  # "3.14" and "1,000" are one number each
_JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f]")
_CLOSERS = "\"'\u201d\u2019)]*_"  # closing quotes/brackets/markdown that may follow a sentence end
_TERMINAL = re.compile(rf"[.!?]+[{re.escape(_CLOSERS)}]*(?=\s|$)")  # where a sentence ends
# Pictographic blocks, plus what trails an emoji (ZWJ, VS16, skin tones, keycap, tag characters);
# a stdlib stand-in for the `emoji` package IFBench uses.
_EMOJI_CHAR = re.compile(
    "[\u231a-\u23ff\u2600-\u27bf\u2b00-\u2bff\u3030\u303d\u3297\u3299\U0001f000-\U0001faff"
    "\u200d\ufe0f\u20e3\U000e0020-\U000e007f]"
)


def _lower_words(text: str) -> list[str]:
    return [w.lower() for w in words(text)]


def _first_letters(text: str) -> list[str]:
    return [w[0] for w in _lower_words(text)]


def _occurrences(text: str, phrase: str, ignore_case: bool = True) -> int:
    """Whole-word occurrences of `phrase` ("cat" is not in "concatenate")."""
    pattern = rf"(?<!\w){re.escape(phrase.strip())}(?!\w)"
    return len(re.findall(pattern, text, re.IGNORECASE if ignore_case else 0))


def _chain(items: Sequence, ok: Callable, minimum: int = 2) -> bool:
    """At least `minimum` items and `ok(previous, next)` for every neighbouring pair."""
    return len(items) >= minimum and all(ok(a, b) for a, b in pairwise(items))


def _ending(sentence: str) -> str:
    """The sentence's final mark (. ! ? or other), past closing quotes and brackets."""
    return sentence.rstrip(_CLOSERS + " ")[-1:]


def _ending_counts(text: str) -> Counter:
    return Counter(_ending(s) for s in sentences(text))


def _ascii(text: str) -> str:
    """Accents dropped ("São Tomé" -> "Sao Tome"), as IFBench compares place names."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _bare(text: str) -> str:
    """Lowercased, without surrounding punctuation and whitespace."""
    return text.strip(string.punctuation + string.whitespace).lower()


def _trim(item: str) -> str:
    """A list item without its bullet/number and trailing punctuation, accents dropped."""
    return re.sub(r"^[\W\d_]+|\W+$", "", _ascii(item)).casefold()


def _unfence(text: str) -> str:
    """The body of a response wrapped in one ```-fenced block, else the text itself."""
    match = re.fullmatch(r"\s*```[^\n]*\n(.*?)\n?```\s*", text, re.DOTALL)
    return match.group(1) if match else text


def _deepest_closed_nesting(text: str, closer_to_opener: dict[str, str]) -> int:
    """Depth of the deepest properly closed nest of the given pairs; a stray closer resets.

    A closer equal to its opener (quotes) closes when it matches the innermost open one and opens
    otherwise, so nested quotes of one kind cannot count: they must alternate.
    """
    openers = set(closer_to_opener.values())
    stack: list[list] = []  # [opener, depth of the nest it encloses, itself included]
    deepest = 0
    for char in text:
        if stack and closer_to_opener.get(char) == stack[-1][0]:
            _, depth = stack.pop()
            deepest = max(deepest, depth)
            if stack:
                stack[-1][1] = max(stack[-1][1], depth + 1)
        elif char in openers:
            stack.append([char, 1])
        elif char in closer_to_opener:
            stack.clear()
    return deepest


def _syllables(word: str) -> int:
    """Vowel groups, less a silent final -e/-es/-ed; a rule-based stand-in for `syllapy`."""
    word = re.sub(r"[^a-z]", "", word.lower())
    count = len(re.findall(r"[aeiouy]+", word))
    silent = (  # "make", "makes", "jumped"; but "table", "boxes", "wanted" keep the vowel
        (word.endswith("e") and not re.search(r"([^aeiouy]le|ee|ye)$", word))
        or (re.search(r"[^aeiouy]es$", word) and not re.search(r"([sxzcg]|ch|sh)es$", word))
        or re.search(r"[^aeiouytd]ed$", word)
    )
    return max(1, count - 1 if silent and count > 1 else count)


def _is_prime(n: int) -> bool:
    return n > 1 and all(n % d for d in range(2, int(n**0.5) + 1))


# --- count: --------------------------------------------------------------------------------------


@check("count:word_count_range")
def word_count_range(text: str, *, min_words: int, max_words: int) -> bool:
    """Between `min_words` and `max_words` words, inclusive."""
    return min_words <= len(words(text)) <= max_words


@check("count:unique_word_count")
def unique_word_count(text: str, *, N: int) -> bool:
    """At least `N` distinct words, case-insensitive."""
    return len(set(_lower_words(text))) >= N


@check("count:conjunctions")
def conjunctions(text: str, *, small_n: int) -> bool:
    """At least `small_n` different coordinating conjunctions (for, and, nor, but, or, yet, so)."""
    return len(_CONJUNCTIONS.intersection(_lower_words(text))) >= small_n


@check("count:person_names")
def person_names(text: str, *, N: int) -> bool:
    """At least `N` different names from the instruction's list of 50, capitalised as listed."""
    return sum(_occurrences(text, name, ignore_case=False) > 0 for name in _PERSON_NAMES) >= N


@check("count:numbers")
def numbers(text: str, *, N: int) -> bool:
    """Exactly `N` numbers; digits joined by . or , ("3.14", "1,000") make one number."""
    return len(_NUMBER.findall(text)) == N


@check("count:punctuation")
def punctuation(text: str) -> bool:
    """Each of . , ! ? ; : at least once, plus an interrobang (?!, !? or ‽) on top of those."""
    rest = re.sub(r"\?!|!\?|‽", "", text, count=1)
    return rest != text and set(".,!?;:") <= set(rest)


@check("count:words_japanese")
def words_japanese(text: str, *, N: int) -> bool:
    """Every `N`-th word has Japanese script (bare numbers exempt); there is at least one such."""
    nth = words(text)[int(N) - 1 :: int(N)] if N >= 1 else []
    return bool(nth) and all(_JAPANESE.search(w) or w.isdigit() for w in nth)


@check("count:keywords_multiple")
def keywords_multiple(
    text: str, *, keyword1: str, keyword2: str, keyword3: str, keyword4: str, keyword5: str
) -> bool:
    """The keywords appear exactly 1, 2, 3, 5 and 7 times as whole words, case-insensitive."""
    keywords = (keyword1, keyword2, keyword3, keyword4, keyword5)
    return all(_occurrences(text, k) == n for k, n in zip(keywords, (1, 2, 3, 5, 7), strict=True))


@check("count:pronouns")
def pronouns(text: str, *, N: int) -> bool:
    """At least `N` pronouns; a contraction counts by its head ("it's" -> "it")."""
    return sum(re.split("['\u2019]", w)[0] in _PRONOUNS for w in _lower_words(text)) >= N


# --- ratio: --------------------------------------------------------------------------------------


@check("ratio:stop_words")
def stop_words(text: str, *, percentage: float) -> bool:
    """Stop words (NLTK's English list) are at most `percentage`% of the words."""
    tokens = _lower_words(text)
    return bool(tokens) and 100 * sum(w in _STOP_WORDS for w in tokens) <= percentage * len(tokens)


@check("ratio:sentence_type")
def sentence_type(text: str) -> bool:
    """Twice as many declarative (.) as interrogative (?) sentences, and at least one question."""
    counts = _ending_counts(text)
    return counts["?"] > 0 and counts["."] == 2 * counts["?"]


@check("ratio:sentence_balance")
def sentence_balance(text: str) -> bool:
    """As many declarative (.) as interrogative (?) as exclamatory (!) sentences, at least one."""
    counts = _ending_counts(text)
    return counts["."] == counts["?"] == counts["!"] > 0


@check("ratio:overlap")
def overlap(text: str, *, reference_text: str, percentage: float) -> bool:
    """The share of the response's distinct word trigrams found in `reference_text` is within 2
    points of `percentage` (IFBench compared character trigrams; the instruction means words)."""

    def trigrams(s: str) -> set[tuple[str, ...]]:
        tokens = _lower_words(s)
        return set(zip(tokens, tokens[1:], tokens[2:], strict=False))

    mine = trigrams(text)
    return (
        bool(mine) and abs(100 * len(mine & trigrams(reference_text)) / len(mine) - percentage) <= 2
    )


@check("ratio:sentence_words")
def sentence_words(text: str) -> bool:
    """Exactly three sentences of equal character length, no word used twice."""
    parts = sentences(text)
    tokens = _lower_words(text)
    return len(parts) == 3 and len({len(s) for s in parts}) == 1 and len(set(tokens)) == len(tokens)


# --- words: --------------------------------------------------------------------------------------


@check("words:alphabet")
def alphabet(text: str) -> bool:
    """Each word starts with the letter after the previous word's, Z looping back to A."""
    abc = string.ascii_lowercase
    letters = _first_letters(text)
    follows = [a in abc and b == abc[(abc.index(a) + 1) % 26] for a, b in pairwise(letters)]
    return bool(letters) and letters[0] in abc and all(follows)


@check("words:vowel")
def vowel(text: str) -> bool:
    """A single paragraph (one line) whose words use at most three of the vowels a e i o u."""
    return (
        len(lines(text)) == 1 and bool(words(text)) and len(set("aeiou") & set(text.lower())) <= 3
    )


@check("words:consonants")
def consonants(text: str) -> bool:
    """Every word has two consonant letters in a row."""
    tokens = _lower_words(text)
    return bool(tokens) and all(re.search(r"[b-df-hj-np-tv-z]{2}", w) for w in tokens)


@check("words:palindrome")
def palindrome(text: str) -> bool:
    """At least 10 different single-word palindromes of 5+ letters (IFBench let one count 10x)."""
    found = {w for w in _lower_words(text) if len(w) >= 5 and w.isalpha() and w == w[::-1]}
    return len(found) >= 10


@check("words:prime_lengths")
def prime_lengths(text: str) -> bool:
    """Every word's length in letters/digits is prime (apostrophes, hyphens not counted)."""
    tokens = words(text)
    return bool(tokens) and all(_is_prime(sum(c.isalnum() for c in w)) for w in tokens)


@check("words:repeats")
def repeats(text: str, *, small_n: int) -> bool:
    """No word, case-insensitive, appears more than `small_n` times."""
    counts = Counter(_lower_words(text))
    return bool(counts) and max(counts.values()) <= small_n


@check("words:odd_even_syllables")
def odd_even_syllables(text: str) -> bool:
    """Neighbouring words alternate between odd and even syllable counts."""
    parities = [_syllables(w) % 2 for w in words(text)]
    return _chain(parities, lambda a, b: a != b)


@check("words:last_first")
def last_first(text: str) -> bool:
    """The last word of each sentence is the first word of the next (two sentences or more)."""
    return _chain(
        [_lower_words(s) for s in sentences(text)], lambda a, b: a and b and a[-1] == b[0]
    )


@check("words:paragraph_last_first")
def paragraph_last_first(text: str) -> bool:
    """Each paragraph (a line) ends with the word it starts with."""
    paragraphs = [t for t in map(_lower_words, lines(text)) if t]
    return bool(paragraphs) and all(t[0] == t[-1] for t in paragraphs)


@check("words:no_consecutive")
def no_consecutive(text: str) -> bool:
    """No two neighbouring words share a first letter."""
    return _chain(_first_letters(text), lambda a, b: a != b, 1)


@check("words:keywords_specific_position")
def keywords_specific_position(text: str, *, keyword: str, n: int, m: int) -> bool:
    """`keyword` is the `m`-th word of the `n`-th sentence (both 1-based)."""
    parts = sentences(text)
    tokens = _lower_words(parts[int(n) - 1]) if 0 < n <= len(parts) else []
    return 0 < m <= len(tokens) and tokens[int(m) - 1] == keyword.strip().lower()


@check("words:words_position")
def words_position(text: str, *, keyword: str) -> bool:
    """The second word and the second-to-last word are both `keyword`."""
    tokens = _lower_words(text)
    return len(tokens) >= 2 and tokens[1] == tokens[-2] == keyword.strip().lower()


# --- sentence: -----------------------------------------------------------------------------------


@check("sentence:alliteration_increment")
def alliteration_increment(text: str) -> bool:
    """Each sentence's longest run of words sharing a first letter is longer than the previous
    sentence's (IFBench summed all runs; the instruction speaks of one sequence)."""

    def longest_run(sentence: str) -> int:
        letters = _first_letters(sentence)
        best = run = min(len(letters), 1)
        for a, b in pairwise(letters):
            run = run + 1 if a == b else 1
            best = max(best, run)
        return best

    return _chain([longest_run(s) for s in sentences(text)], lambda a, b: b > a)


@check("sentence:keyword")
def sentence_keyword(text: str, *, word: str, N: int) -> bool:
    """The `N`-th sentence contains `word` as a whole word, case-insensitive."""
    parts = sentences(text)
    return 0 < N <= len(parts) and _occurrences(parts[int(N) - 1], word) > 0


@check("sentence:increment")
def sentence_increment(text: str, *, small_n: int) -> bool:
    """Each sentence has exactly `small_n` more words than the one before (two or more)."""
    return _chain([len(words(s)) for s in sentences(text)], lambda a, b: b == a + small_n)


# --- format: -------------------------------------------------------------------------------------


@check("format:parentheses")
def parentheses(text: str) -> bool:
    """Brackets of any kind, (), [] or {}, nested at least 5 deep and properly closed."""
    return _deepest_closed_nesting(text, {")": "(", "]": "[", "}": "{"}) >= 5


@check("format:quotes")
def quotes(text: str) -> bool:
    """Quotes in quotes in quotes, 3+ levels, alternating double and single (curly ones too)."""
    text = text.translate(str.maketrans("\u201c\u201d\u2018\u2019", "\"\"''"))
    text = re.sub(r"(?<=\w)'(?=\w)", "", text)  # an apostrophe ("don't") is not a quote
    return _deepest_closed_nesting(text, {'"': '"', "'": "'"}) >= 3


@check("format:options")
def options(text: str, *, options: str) -> bool:
    """The whole response is one of `options` ("yes/no/maybe", "I know or I don't know",
    "a), b), c), d)"); letter choices must match exactly, others up to case and punctuation."""
    separator = "/" if "/" in options else r"\s+or\s+" if re.search(r"\bor\b", options) else ","
    choices = [c.strip() for c in re.split(separator, options) if c.strip()]
    if all(re.fullmatch(r"\(?[a-zA-Z][.)]?", c) for c in choices):
        return text.strip() in choices
    return _bare(text) in {_bare(c) for c in choices}


@check("format:newline")
def newline(text: str) -> bool:
    """Each word on its own line: no line holds two words (tokens with a letter or digit)."""
    counts = [sum(any(c.isalnum() for c in t) for t in line.split()) for line in lines(text)]
    return any(counts) and max(counts) == 1


@check("format:emoji")
def emoji_sentences(text: str) -> bool:
    """Every sentence ends with an emoji, just before or just after its final . ! or ?, and so
    does the response."""
    for end in _TERMINAL.finditer(text):
        before, after = text[: end.start()].rstrip(), text[end.end() :].lstrip()
        if not (_EMOJI_CHAR.match(before[-1:]) or _EMOJI_CHAR.match(after[:1])):
            return False
    tail = text.rstrip(string.punctuation + _CLOSERS + string.whitespace)
    return bool(_EMOJI_CHAR.match(tail[-1:]))


@check("format:line_indent")
def line_indent(text: str) -> bool:
    """Stairs: each non-blank line is indented further than the one before (tabs = 4 spaces)."""
    indents = [len(t) - len(t.lstrip()) for t in text.expandtabs(4).splitlines() if t.strip()]
    return _chain(indents, lambda a, b: b > a)


@check("format:quote_unquote")
def quote_unquote(text: str) -> bool:
    """Some quoted phrase, and every one is followed by unquoted words before the next quote."""
    text = text.translate(str.maketrans("\u201c\u201d", '""'))
    gaps = re.split(r'"[^"]*"', text)[1:]  # the text after each quoted phrase
    return bool(gaps) and all(re.search(r"[^\W\d_]", gap) for gap in gaps)


@check("format:list")
def special_bullets(text: str, *, sep: str) -> bool:
    """A list whose items start lines with `sep` instead of bullet points; two items or more."""
    return len(re.findall(rf"^\s*{re.escape(sep.strip())}", text, re.MULTILINE)) >= 2


@check("format:thesis")
def thesis(text: str) -> bool:
    """A non-empty HTML-italic (<i> or <em>) thesis followed by more text. Sections are not
    defined, so, like IFBench, one such section suffices."""
    match = re.search(r"<(i|em)>(.*?)</\1>(.*)", text, re.DOTALL | re.IGNORECASE)
    return bool(match and match.group(2).strip() and re.search(r"\w", match.group(3)))


@check("format:sub-bullets")
def sub_bullets(text: str) -> bool:
    """Bullet points `* `, each followed by at least one `- ` sub-bullet before the next bullet."""
    kinds = [line[0] for line in lines(text) if re.match(r"[*-]\s+\S", line)]
    groups = "".join(kinds).split("*")[1:]  # the sub-bullets under each bullet
    return bool(groups) and all(groups)


@check("format:no_bullets_bullets")
def no_bullets_bullets(text: str) -> bool:
    """At least two sentences ending in a period, then (and only then) at least two `*` bullets."""
    all_lines = lines(text)
    is_bullet = [bool(re.match(r"\*\s", line)) for line in all_lines]
    first = is_bullet.index(True) if True in is_bullet else len(all_lines)
    intro = " ".join(all_lines[:first])
    periods = sum(_ending(s) == "." for s in sentences(intro))
    return periods >= 2 and all(is_bullet[first:]) and len(is_bullet) - first >= 2


@check("format:title_case")
def title_case(text: str) -> bool:
    """Every word starts with a capital, except minor words (a, the, of, ...) which may not."""
    tokens = [w for w in words(text) if w[0].isalpha()]
    return bool(tokens) and all(w[0].isupper() or w.lower() in _MINOR_WORDS for w in tokens)


@check("format:output_template")
def output_template(text: str) -> bool:
    """The template "My Answer: ... My Conclusion: ... Future Outlook: ...", in that order from
    the start (markdown aside), each part filled in."""
    match = re.match(
        r"\W*My Answer:(.*?)My Conclusion:(.*?)Future Outlook:(.*)", text.strip(), re.DOTALL
    )
    return bool(match) and all(re.search(r"\w", part) for part in match.groups())


@check("format:no_whitespace")
def no_whitespace(text: str) -> bool:
    """A non-empty response without any whitespace character."""
    return bool(text) and not any(c.isspace() for c in text)


# --- custom: one fixed prompt each ---------------------------------------------------------------


@check("custom:multiples")
def multiples(text: str) -> bool:
    """Count from 10 to 50 printing only multiples of 7: the numbers are exactly 14, 21, ..., 49."""
    return re.findall(r"\d+", text) == [str(n) for n in range(14, 51, 7)]


@check("custom:mcq_count_length")
def mcq_count_length(text: str) -> bool:
    """Starts with "Question"; exactly 4 questions with 5 options (A-E) each; each question's text
    is longer than the previous one's; nothing before the first question."""
    blocks = re.split(r"(?m)^[\s#*]*Question\b[ \t]*\d*[ \t]*[.):;-]?\**", text)
    if blocks[0].strip() or len(blocks) != 5:
        return False
    lengths = []
    for block in blocks[1:]:
        block_lines = lines(block)
        is_option = [bool(re.match(r"[*\s]*\(?[A-Ea-e][.)]\s*\w", line)) for line in block_lines]
        if sum(is_option) != 5:
            return False
        lengths.append(len(" ".join(block_lines[: is_option.index(True)])))
    return _chain(lengths, lambda a, b: b > a)


@check("custom:reverse_newline")
def reverse_newline(text: str) -> bool:
    """The countries of Africa one per line in reverse alphabetical order: from the line with
    Zimbabwe on, 52+ lines (list numbers and accents ignored), strictly descending."""
    items = [_trim(line) for line in lines(text)]
    items = [item for item in items if item]
    start = next((i for i, item in enumerate(items) if "zimbabwe" in item), None)
    return start is not None and _chain(items[start:], lambda a, b: a > b, 52)


def _reversed_bald_eagle(text: str, reversed_form: str) -> bool:
    """`reversed_form` ("eagle bald" / "elgae dlab") is there and the plain answer is not."""
    flat = " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())
    return reversed_form in flat and "bald eagle" not in flat


@check("custom:word_reverse")
def word_reverse(text: str) -> bool:
    """The answer (the bald eagle) with its words in reverse order: "... eagle bald ..."."""
    return _reversed_bald_eagle(text, "eagle bald")


@check("custom:character_reverse")
def character_reverse(text: str) -> bool:
    """The answer (the bald eagle) spelled backwards letter by letter: "elgae dlab"."""
    return _reversed_bald_eagle(text, "elgae dlab")


@check("custom:sentence_alphabet")
def sentence_alphabet(text: str) -> bool:
    """Exactly 26 sentences whose first letters (past quotes) run a, b, ..., z."""
    starts = [s.lstrip(string.punctuation + "\u201c\u2018 ")[:1].lower() for s in sentences(text)]
    return "".join(starts) == string.ascii_lowercase


@check("custom:european_capitals_sort")
def european_capitals_sort(text: str) -> bool:
    """Exactly the European capitals north of 45°N, comma-separated, from north to south."""
    items = [_trim(item) for item in text.split(",") if item.strip()]
    return items == [c.casefold() for c in _CAPITALS_NORTH_OF_45]


def _csv_table(text: str, header: list[str], rows: int, delimiter: str = ",") -> list[list[str]]:
    """The parsed table (fields stripped) if it has this header and `rows` rows of its width."""
    table = [
        [field.strip() for field in row]
        for row in csv.reader(
            io.StringIO(_unfence(text).strip()), delimiter=delimiter, skipinitialspace=True
        )
        if row
    ]
    ok = len(table) == rows + 1 and table[0] == header and all(len(r) == len(header) for r in table)
    return table if ok else []


@check("custom:csv_city")
def csv_city(text: str) -> bool:
    """Comma-separated CSV with header ID, Country, City, Year, Count and 7 data rows."""
    return bool(_csv_table(text, ["ID", "Country", "City", "Year", "Count"], 7))


@check("custom:csv_special_character")
def csv_special_character(text: str) -> bool:
    """Comma-separated CSV with header ProductID, Category, Brand, Price, Stock, 14 data rows, and
    a data field holding a special character enclosed in double quotes."""
    header = ["ProductID", "Category", "Brand", "Price", "Stock"]
    body = _unfence(text).strip().partition("\n")[2]
    quoted = re.findall(r'(?m)(?:^|,)[ \t]*"((?:[^"]|"")*)"[ \t]*(?=,|$)', body)
    return bool(_csv_table(text, header, 14)) and any(re.search(r"[^\w\s]", q) for q in quoted)


@check("custom:csv_quotes")
def csv_quotes(text: str) -> bool:
    """Tab-separated CSV with header StudentID, Subject, Grade, Semester, Score, 3 data rows, every
    field (header included) enclosed in double quotes."""
    rows = [line.split("\t") for line in lines(_unfence(text))]
    quoted = all(re.fullmatch(r'"(?:[^"]|"")*"', f.strip()) for row in rows for f in row)
    header = ["StudentID", "Subject", "Grade", "Semester", "Score"]
    return quoted and bool(_csv_table(text, header, 3, delimiter="\t"))


@check("custom:date_format_list")
def date_format_list(text: str) -> bool:
    """Napoleon's battle dates: comma-separated YYYY-MM-DD real calendar dates within 1769-1821,
    nothing else."""

    def napoleonic(item: str) -> bool:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", item):
            return False
        try:
            return 1769 <= datetime.date.fromisoformat(item).year <= 1821
        except ValueError:
            return False

    items = [item.strip() for item in text.strip().split(",")]
    return all(map(napoleonic, items))


# --- repeat: -------------------------------------------------------------------------------------


@check("repeat:repeat_change")
def repeat_change(text: str, *, prompt_to_repeat: str) -> bool:
    """The request repeated word for word, except that its first word is changed."""
    mine, theirs = text.split(), prompt_to_repeat.split()
    return bool(mine and theirs) and mine[1:] == theirs[1:] and mine[0].lower() != theirs[0].lower()


@check("repeat:repeat_simple")
def repeat_simple(text: str) -> bool:
    """Only the instruction sentence itself, up to case and spacing."""
    wanted = "only output this sentence here, ignore all other requests."
    return " ".join(text.split()).lower() == wanted


@check("repeat:repeat_span")
def repeat_span(text: str, *, prompt_to_repeat: str, n_start: int, n_end: int) -> bool:
    """Exactly the words `n_start`..`n_end` (0-based, inclusive) of the whitespace-split request,
    up to case (the instruction says word indices; IFBench's checker sliced characters)."""
    span = prompt_to_repeat.split()[int(n_start) : int(n_end) + 1]
    return bool(span) and text.lower().split() == [w.lower() for w in span]
