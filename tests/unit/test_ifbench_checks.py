"""IFBench's out-of-distribution instruction checks (verifiers/ifeval/ifbench_checks.py).

Each check gets responses that nearly follow the instruction and ones that nearly break it, so a
check that is too lenient or too strict fails here.
"""

import pytest

from verifiers.ifeval import ifbench_checks
from verifiers.ifeval.registry import check_parameters, get_check, known_instruction_ids

IFBENCH_GROUPS = {"count", "ratio", "words", "sentence", "format", "custom", "repeat"}
LEFT_OUT = {"words:start_verb"}  # needs a part-of-speech tagger

KW5 = {f"keyword{i}": k for i, k in enumerate(["cat", "dog", "sun", "sea", "sky"], 1)}
REFERENCE = "the quick brown fox jumps over the lazy dog"
REQUEST = "explain the context, code and theory behind the paper"

# Every IFBench OOD id with kwargs as IFBench's data carries them (counts may be JSON floats).
DOCUMENTED_KWARGS: dict[str, dict] = {
    "count:word_count_range": {"min_words": 3, "max_words": 5},
    "count:unique_word_count": {"N": 3},
    "count:conjunctions": {"small_n": 3},
    "count:person_names": {"N": 2},
    "count:numbers": {"N": 3},
    "count:punctuation": {},
    "count:words_japanese": {"N": 3.0},
    "count:keywords_multiple": KW5,
    "count:pronouns": {"N": 4},
    "ratio:stop_words": {"percentage": 50},
    "ratio:sentence_type": {},
    "ratio:sentence_balance": {},
    "ratio:overlap": {"reference_text": REFERENCE, "percentage": 50.0},
    "ratio:sentence_words": {},
    "words:alphabet": {},
    "words:vowel": {},
    "words:consonants": {},
    "words:palindrome": {},
    "words:prime_lengths": {},
    "words:repeats": {"small_n": 2},
    "words:odd_even_syllables": {},
    "words:last_first": {},
    "words:paragraph_last_first": {},
    "words:no_consecutive": {},
    "words:keywords_specific_position": {"keyword": "cat", "n": 2, "m": 3},
    "words:words_position": {"keyword": "really"},
    "sentence:alliteration_increment": {},
    "sentence:keyword": {"word": "cat", "N": 2.0},
    "sentence:increment": {"small_n": 2},
    "format:parentheses": {},
    "format:quotes": {},
    "format:options": {"options": "yes/no/maybe"},
    "format:newline": {},
    "format:emoji": {},
    "format:line_indent": {},
    "format:quote_unquote": {},
    "format:list": {"sep": "!?!?"},
    "format:thesis": {},
    "format:sub-bullets": {},
    "format:no_bullets_bullets": {},
    "format:title_case": {},
    "format:output_template": {},
    "format:no_whitespace": {},
    "custom:multiples": {},
    "custom:mcq_count_length": {},
    "custom:reverse_newline": {},
    "custom:word_reverse": {},
    "custom:character_reverse": {},
    "custom:sentence_alphabet": {},
    "custom:european_capitals_sort": {},
    "custom:csv_city": {},
    "custom:csv_special_character": {},
    "custom:csv_quotes": {},
    "custom:date_format_list": {},
    "repeat:repeat_change": {"prompt_to_repeat": "Write a python program to sort a list."},
    "repeat:repeat_simple": {},
    "repeat:repeat_span": {"prompt_to_repeat": REQUEST, "n_start": 3, "n_end": 6.0},
}


# --- builders for the long fixed-prompt answers ---------------------------------------------------


def mcq(lengths_grow: bool = True, options: int = 5, preamble: str = "") -> str:
    stems = ["Who painted Guernica?", "Which movement did Dali belong to?"]
    stems += ["Which artist is best known for drip painting in the 1940s?"]
    stems += ["Which German art school, founded in 1919, joined crafts and the fine arts?"]
    if not lengths_grow:
        stems[1], stems[2] = stems[2], stems[1]
    blocks = [
        f"Question {i}: {stem}\n" + "\n".join(f"{'ABCDE'[j]}) Option {j}" for j in range(options))
        for i, stem in enumerate(stems, 1)
    ]
    return preamble + "\n\n".join(blocks)


AFRICA_DESCENDING = [
    "Zimbabwe", "Zambia", "Uganda", "Tunisia", "Togo", "Tanzania", "Sudan", "South Sudan",
    "South Africa", "Somalia", "Sierra Leone", "Seychelles", "Senegal", "São Tomé and Príncipe",
    "Rwanda", "Republic of the Congo", "Nigeria", "Niger", "Namibia", "Mozambique", "Morocco",
    "Mauritius", "Mauritania", "Mali", "Malawi", "Madagascar", "Libya", "Liberia", "Lesotho",
    "Kenya", "Ivory Coast", "Guinea-Bissau", "Guinea", "Ghana", "Gambia", "Gabon", "Ethiopia",
    "Eswatini", "Eritrea", "Equatorial Guinea", "Egypt", "Djibouti",
    "Democratic Republic of the Congo", "Comoros", "Chad", "Central African Republic", "Cameroon",
    "Cabo Verde", "Burundi", "Burkina Faso", "Botswana", "Benin", "Angola", "Algeria",
]  # fmt: skip
AFRICA_SWAPPED = AFRICA_DESCENDING[:20] + AFRICA_DESCENDING[21:19:-1] + AFRICA_DESCENDING[22:]
CAPITALS = (
    "Reykjavík, Helsinki, Oslo, Tallinn, Stockholm, Riga, Moscow, Copenhagen, Vilnius, Minsk, "
    "Dublin, Berlin, Amsterdam, Warsaw, London, Brussels, Kyiv, Prague, Luxembourg, Paris, "
    "Vienna, Bratislava, Budapest, Vaduz, Chișinău, Bern, Ljubljana, Zagreb"
)
STORY = [
    '"Apples fell," said Ann.', "Bees buzzed.", "Cats slept.", "Dogs barked.", "Eels swam.",
    "Foxes ran.", "Geese honked.", "Hens clucked.", "Ibis waded.", "Jays called.", "Kids played.",
    "Larks sang.", "Mice hid.", "Newts crept.", "Owls hooted.", "Pigs ate.", "Quails hid.",
    "Rats fled.", "Seals dove.", "Toads sat.", "Urchins lay.", "Voles dug.", "Wolves howled.",
    "Xerus dashed.", "Yaks grazed.", "Zebras rested.",
]  # fmt: skip


def csv_rows(header: str, n: int, special: bool = True, sep: str = ",", fence: bool = False) -> str:
    rows = [header] + [sep.join([str(i), "Tools", "Acme", "9.99", "3"]) for i in range(1, n + 1)]
    if special:
        rows[2] = '2,"Home, Garden",Acme,19.99,4'
    body = "\n".join(rows)
    return f"```csv\n{body}\n```" if fence else body


def quoted_tsv(rows: list[list[str]]) -> str:
    return "\n".join("\t".join(f'"{field}"' for field in row) for row in rows)


CITY_HEADER = "ID,Country,City,Year,Count"
PRODUCT_HEADER = "ProductID,Category,Brand,Price,Stock"
STUDENTS = [["StudentID", "Subject", "Grade", "Semester", "Score"]] + [
    [str(i), "Math", "A", "Fall", "95"] for i in range(1, 4)
]
PALINDROMES = "level radar civic kayak refer rotor madam stats tenet racecar"

# (instruction id, kwargs override or None for the documented ones, response, expected verdict)
CASES: list[tuple[str, dict | None, str, bool]] = [
    # count:
    ("count:word_count_range", None, "Don't stop-believing, x-ray now!", True),
    ("count:word_count_range", None, "one two three four five six", False),
    ("count:word_count_range", None, "just two", False),
    ("count:unique_word_count", None, "Cat cat dog DOG bird.", True),
    ("count:unique_word_count", None, "Cat cat CAT dog dog.", False),
    ("count:conjunctions", None, "Tea and cake, but no jam, yet fine.", True),
    ("count:conjunctions", None, "And and AND, but BUT.", False),
    ("count:person_names", None, "Emma met Liam's cousin.", True),
    ("count:person_names", None, "We say grace by the lily pond; Emma and Emmanuel came.", False),
    ("count:numbers", None, "Pi is 3.14, a city of 1,000,000 people, and 7 days.", True),
    ("count:numbers", None, "Scores: 1, 2, 3 and 4.", False),
    ("count:punctuation", None, "Wait, what?! Yes. No! Why? Here: a list; done.", True),
    ("count:punctuation", None, "Wait, what?! Yes. Here: a list; done.", False),
    ("count:punctuation", None, "Wait, what? Yes. No! Here: a list; done.", False),
    ("count:words_japanese", None, "I like 寿司 and eat ラーメン often 123", True),
    ("count:words_japanese", None, "I like sushi and eat ラーメン", False),
    ("count:words_japanese", None, "Hi 寿司", False),
    (
        "count:keywords_multiple",
        None,
        "cat, concatenate; dog dog; sun sun sun; sea sea sea sea sea; sky sky sky sky sky sky sky",
        True,
    ),
    (
        "count:keywords_multiple",
        None,
        "cat Cat; dog dog; sun sun sun; sea sea sea sea sea; sky sky sky sky sky sky sky",
        False,
    ),
    ("count:pronouns", None, "It's what they're doing to me.", True),
    ("count:pronouns", None, "Themes of Ithaca, items, then hemlock.", False),
    # ratio:
    ("ratio:stop_words", None, "The cat sat on mats.", True),
    ("ratio:stop_words", None, "The cat is on the mat.", False),
    ("ratio:sentence_type", None, "It rains. It pours. Why?", True),
    ("ratio:sentence_type", None, "It rains. Why? How?", False),
    ("ratio:sentence_type", None, "Wow!", False),
    ("ratio:sentence_balance", None, 'Go. Go? "Go!"', True),
    ("ratio:sentence_balance", None, "Go. Go? Go! Go.", False),
    ("ratio:overlap", None, "The quick brown fox sleeps now", True),
    ("ratio:overlap", None, "The quick brown fox", False),
    ("ratio:sentence_words", None, "Cats nap. Dogs run. Owls fly.", True),
    ("ratio:sentence_words", None, "Cats nap. Dogs nap. Owls fly.", False),
    ("ratio:sentence_words", None, "Cats nap. Dogs run. Owls soar.", False),
    # words:
    ("words:alphabet", None, "Yaks zoom across bright canyons.", True),
    ("words:alphabet", None, "Yaks zoom by.", False),
    ("words:alphabet", None, "3 bears", False),
    ("words:vowel", None, "Big cats sit on mats.", True),
    ("words:vowel", None, "Big cats sit on mats near us.", False),
    ("words:vowel", None, "Big cats sit.\nOn mats.", False),
    ("words:consonants", None, "Strong brands build trust.", True),
    ("words:consonants", None, "Strong brands are trusted.", False),
    ("words:palindrome", None, PALINDROMES.title() + "!", True),
    ("words:palindrome", None, " ".join(["level"] * 10), False),
    ("words:palindrome", None, PALINDROMES.replace("racecar", "noon"), False),
    ("words:prime_lengths", None, "E-mail is great.", True),
    ("words:prime_lengths", None, "It was a dog.", False),
    ("words:repeats", None, "The cat and the dog.", True),
    ("words:repeats", None, "The cat, THE dog, the end.", False),
    ("words:odd_even_syllables", None, "Cat table dog pencil", True),
    ("words:odd_even_syllables", None, "Makes wanted", True),
    ("words:odd_even_syllables", None, "Boxes jumped places", True),
    ("words:odd_even_syllables", None, "Makes jumped", False),
    ("words:odd_even_syllables", None, "Cat dog table", False),
    ("words:last_first", None, "I love cats. Cats love me! Me too?", True),
    ("words:last_first", None, "I love cats. Dogs love me.", False),
    ("words:last_first", None, "I love cats.", False),
    ("words:paragraph_last_first", None, "Time flies, so does time.\n\nLove wins, love.", True),
    ("words:paragraph_last_first", None, "Time flies, so does time.\nLove wins over fear.", False),
    ("words:no_consecutive", None, "Big red apples grow nicely.", True),
    ("words:no_consecutive", None, "Big, Brown apples.", False),
    ("words:keywords_specific_position", None, "Hello there. A big cat sat.", True),
    ("words:keywords_specific_position", None, "Hello there. A cat sat.", False),
    ("words:keywords_specific_position", None, "Hello there, a big cat sat.", False),
    ("words:words_position", None, "I really like it, really now.", True),
    ("words:words_position", None, "I really like it really.", False),
    # sentence:
    (
        "sentence:alliteration_increment",
        None,
        "The dog ran. Big bad wolves howled. Seven silly snakes slither slowly.",
        True,
    ),
    ("sentence:alliteration_increment", None, "Big bad wolves. The dog ran.", False),
    ("sentence:alliteration_increment", None, "Seven silly snakes.", False),
    ("sentence:keyword", None, "Hi. The Cat sat.", True),
    ("sentence:keyword", None, "Hi. The concatenation. Cat.", False),
    ("sentence:increment", None, "I ran. I ran very far. I ran very far and fast.", True),
    ("sentence:increment", None, "I ran. I ran far. I ran very far away.", False),
    # format:
    ("format:parentheses", None, "(a [b {c (d [e] d) c} b] a)", True),
    ("format:parentheses", None, "(a [b {c (d [e] d) c} b] a", False),
    ("format:parentheses", None, "(a [b {c (d [e) d) c} b] a)", False),
    ("format:quotes", None, """He said "she told me 'he yelled "run" loudly' then" ok.""", True),
    ("format:quotes", None, "He said “she told me ‘he yelled “run” loudly’ then” ok.", True),
    ("format:quotes", None, """He said "she told me 'don't run' then" ok.""", False),
    ("format:quotes", None, """He said "she told me "he yelled "run" loudly" then" ok.""", False),
    ("format:options", None, "Maybe.", True),
    ("format:options", None, "Maybe, it depends.", False),
    ("format:options", {"options": "I know or I don't know"}, "I don't know", True),
    ("format:options", {"options": "I know or I don't know"}, "I do not know", False),
    ("format:options", {"options": "a), b), c), d)"}, " b)\n", True),
    ("format:options", {"options": "a), b), c), d)"}, "b) Paris", False),
    ("format:newline", None, "Hello,\nworld!\n- again\n", True),
    ("format:newline", None, "Hello world\nagain", False),
    ("format:emoji", None, "I love pizza 🍕. It is great! 😀 Really? 🙂", True),
    ("format:emoji", None, "Thumbs up 👍🏽. Flags 🇫🇷", True),
    ("format:emoji", None, "I love pizza 🍕. It is great!", False),
    ("format:emoji", None, "It costs 3.5 euros 😀. Done ©.", False),
    ("format:line_indent", None, "a\n  b\n\n\tc", True),
    ("format:line_indent", None, "a\n  b\n  c", False),
    ("format:line_indent", None, "    a", False),
    ("format:quote_unquote", None, '"Carpe diem" means seize the day. “Veni” is I came.', True),
    ("format:quote_unquote", None, '"Carpe diem" means seize the day. "Veni vidi" "vici"', False),
    ("format:quote_unquote", None, '"Carpe diem" means seize the day. "Veni"!', False),
    ("format:quote_unquote", None, "No quotes here.", False),
    ("format:list", None, "Items:\n!?!? apples\n  !?!? pears", True),
    ("format:list", None, "Items: !?!? apples !?!? pears", False),
    ("format:thesis", None, "<em>Encryption keeps streams safe.</em> Keys stay in hardware.", True),
    ("format:thesis", None, "<i> </i> Keys stay in hardware.", False),
    ("format:thesis", None, "<i>Encryption keeps streams safe.</i>", False),
    ("format:thesis", None, "<i>Encryption keeps streams safe.</em> Keys stay in hardware.", False),
    ("format:sub-bullets", None, "* Sun\n  - light\n* Moon\n  - tides\n  - night", True),
    ("format:sub-bullets", None, "* Sun\n  - light\n* Moon", False),
    ("format:sub-bullets", None, "**Sun** - light and heat", False),
    (
        "format:no_bullets_bullets",
        None,
        "Springs store energy. Damping removes it.\n* a\n* b\n",
        True,
    ),
    ("format:no_bullets_bullets", None, "Springs store energy!\n* a\n* b", False),
    ("format:no_bullets_bullets", None, "One point. Two points.\n* a\n* b\nOutro.", False),
    ("format:title_case", None, "The Lord of the Rings Is a Great Story", True),
    ("format:title_case", None, "The Lord of the rings", False),
    (
        "format:output_template",
        None,
        "**My Answer:** Yes.\nMy Conclusion: It works.\nFuture Outlook: Bright.",
        True,
    ),
    ("format:output_template", None, "My Conclusion: x My Answer: y Future Outlook: z", False),
    ("format:output_template", None, "My Answer: My Conclusion: x Future Outlook: y", False),
    (
        "format:output_template",
        None,
        "Sure! My Answer: a My Conclusion: b Future Outlook: c",
        False,
    ),
    ("format:no_whitespace", None, "AllSetsAreClasses,butNotViceVersa.", True),
    ("format:no_whitespace", None, "All\u00a0sets", False),
    # custom:
    ("custom:multiples", None, "14,21,28,35,42,49", True),
    ("custom:multiples", None, "7, 14, 21, 28, 35, 42, 49", False),
    ("custom:multiples", None, "From 10 to 50: 14, 21, 28, 35, 42, 49", False),
    ("custom:mcq_count_length", None, mcq(), True),
    ("custom:mcq_count_length", None, mcq(preamble="Here you go:\n"), False),
    ("custom:mcq_count_length", None, mcq(lengths_grow=False), False),
    ("custom:mcq_count_length", None, mcq(options=4), False),
    (
        "custom:reverse_newline",
        None,
        "\n".join(f"{i}. {c}" for i, c in enumerate(AFRICA_DESCENDING, 1)),
        True,
    ),
    ("custom:reverse_newline", None, "\n".join(AFRICA_DESCENDING[:40]), False),
    ("custom:reverse_newline", None, "\n".join(AFRICA_SWAPPED), False),
    ("custom:word_reverse", None, "Eagle bald the is symbol national the.", True),
    ("custom:word_reverse", None, "The bald eagle.", False),
    ("custom:word_reverse", None, "Eagle bald the: the bald eagle.", False),
    ("custom:character_reverse", None, ".elgae dlab ehT", True),
    ("custom:character_reverse", None, "The bald eagle (elgae dlab).", False),
    ("custom:sentence_alphabet", None, " ".join(STORY), True),
    ("custom:sentence_alphabet", None, " ".join(STORY[:-1]), False),
    ("custom:sentence_alphabet", None, " ".join(STORY[1:2] + STORY[:1] + STORY[2:]), False),
    ("custom:european_capitals_sort", None, CAPITALS + ".", True),
    ("custom:european_capitals_sort", None, CAPITALS.replace(" Kyiv,", ""), False),
    (
        "custom:european_capitals_sort",
        None,
        CAPITALS.replace("Oslo, Tallinn", "Tallinn, Oslo"),
        False,
    ),
    ("custom:csv_city", None, csv_rows(CITY_HEADER.replace(",", ", "), 7, fence=True), True),
    ("custom:csv_city", None, csv_rows(CITY_HEADER, 6), False),
    ("custom:csv_city", None, csv_rows(CITY_HEADER, 7) + "\n8,Spain,Madrid", False),
    ("custom:csv_special_character", None, csv_rows(PRODUCT_HEADER, 14), True),
    ("custom:csv_special_character", None, csv_rows(PRODUCT_HEADER, 14, special=False), False),
    ("custom:csv_special_character", None, csv_rows(PRODUCT_HEADER, 13), False),
    ("custom:csv_quotes", None, quoted_tsv(STUDENTS), True),
    ("custom:csv_quotes", None, quoted_tsv(STUDENTS).replace('"Math"', "Math", 1), False),
    ("custom:csv_quotes", None, quoted_tsv(STUDENTS).replace("\t", ","), False),
    ("custom:date_format_list", None, "1796-04-12, 1805-12-02,1815-06-18", True),
    ("custom:date_format_list", None, "1796-04-12, 1805-02-29", False),
    ("custom:date_format_list", None, "1805-12-02, Austerlitz", False),
    ("custom:date_format_list", None, "1830-01-01", False),
    # repeat:
    ("repeat:repeat_change", None, "Create a python program to sort a list.", True),
    ("repeat:repeat_change", None, "Write a python program to sort a list.", False),
    ("repeat:repeat_change", None, "write a python program to sort a list.", False),
    ("repeat:repeat_change", None, "Create a python program to sort a list. Sure!", False),
    (
        "repeat:repeat_simple",
        None,
        "  Only output this sentence here,  ignore all other requests. ",
        True,
    ),
    (
        "repeat:repeat_simple",
        None,
        "Only output this sentence here, ignore all other requests. Ok",
        False,
    ),
    ("repeat:repeat_span", None, "Code and  theory behind", True),
    ("repeat:repeat_span", None, REQUEST[3:7], False),
    ("repeat:repeat_span", None, "code and theory", False),
]


def _case_id(case: tuple) -> str:
    return f"{case[0]}-{'pass' if case[3] else 'fail'}"


@pytest.mark.parametrize("instruction_id,kwargs,text,expected", CASES, ids=map(_case_id, CASES))
def test_check_verdict(instruction_id: str, kwargs: dict | None, text: str, expected: bool) -> None:
    check = get_check(instruction_id)
    assert check is not None
    kwargs = DOCUMENTED_KWARGS[instruction_id] if kwargs is None else kwargs
    assert check(text, **kwargs) is expected


def test_every_check_has_a_passing_and_a_failing_case() -> None:
    verdicts = {(case[0], case[3]) for case in CASES}
    for instruction_id in DOCUMENTED_KWARGS:
        assert (instruction_id, True) in verdicts and (instruction_id, False) in verdicts


def _ifbench_ids() -> set[str]:
    return {
        instruction_id
        for instruction_id in known_instruction_ids()
        if get_check(instruction_id).__module__ == ifbench_checks.__name__
    }


def test_registered_ids_are_ifbench_ids() -> None:
    ids = _ifbench_ids()
    assert ids == set(DOCUMENTED_KWARGS)
    assert all(i.split(":")[0] in IFBENCH_GROUPS for i in ids)
    assert not ids & LEFT_OUT


@pytest.mark.parametrize("instruction_id", sorted(DOCUMENTED_KWARGS))
def test_check_takes_ifbench_kwargs(instruction_id: str) -> None:
    kwargs = DOCUMENTED_KWARGS[instruction_id]
    assert set(check_parameters(instruction_id)) == set(kwargs)
    check = get_check(instruction_id)
    for text in ("Hello, world. How are you?", "a\n  b", "(){}[]'\"*", "🙂"):
        assert isinstance(check(text, **kwargs), bool)
    assert check("", **kwargs) is False  # an empty answer never follows an instruction
