"""Small synthetic RL data sets for tests and tiny recipes, in the Dolci row schema.

- `target-token`: "Write the word t5." (or another phrasing of the copy sets below) rewarded by
  the `contains` verifier (the tiny tokenizer makes t0..t63 single tokens); writing several
  target words also earns the reward unless the set is `exclusive`. Its `split="eval"` asks in
  phrasings that no train split of any set uses, so a held-out score measures reading the word
  out of new context, not recall of a phrasing.
- `arithmetic`: integer and fraction arithmetic whose answers sympy computes, for the `math` verifier;
  `split="eval"` holds expressions the train split never contains.
- `arithmetic-text` (pretraining): documents of worked arithmetic, "Question: What is 3 + 4 * 2?
  Solution: 4 * 2 = 8. 3 + 8 = 11. The answer is 11.", several per document, in the `text` field;
  `split="eval"` holds the same expressions the `arithmetic` eval split holds.
- `chat-copy` (SFT) and `preference-copy` (DPO): a request, in one of several phrasings, to write
  a target word; the reply (chosen) is that word, the rejected reply another one. `split="eval"`
  draws only (phrasing, word) combinations that `split="train"` never uses, so held-out scores
  measure generalisation, not recall.
"""

import json
import random
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import sympy

from olmorl.io import atomic_write_text

MAX_TARGETS = 64
"""The tiny tokenizer has whole-word tokens t0..t63."""

SYNTHETIC_SETS = (
    "target-token",
    "arithmetic",
    "arithmetic-text",
    "arithmetic-chat",
    "arithmetic-preference",
    "chat-copy",
    "preference-copy",
)

COPY_PHRASINGS = (
    "Write the word {}.",
    "Repeat the word {}.",
    "Answer: {}",
    "Question: what is {}?",
    "Please write {} and nothing else.",
    "Find the value of {}.",
    "Print {}.",
    "The word is {}.",
    "Echo {} back.",
    "Give me {}.",
    "Respond with {}.",
    "{}",
    "Write {} please.",
    "Return {}.",
    "Can you write {}?",
    "Spell {}.",
)
"""Sixteen, so that copying is learnt across contexts: with the first six only, RL runs answered
the train phrasings right for every word yet wrote another word for some words in held-out ones
("Write the word t9." gave t9 16 times in 16, "Output t9 now." t0 15 times)."""

HELD_OUT_PHRASINGS = (
    "Say the word {}.",
    "Copy this word: {}",
    "Type {} and stop.",
    "Your reply is {}.",
    "Output {} now.",
)
"""Context words around the target that no train split shows (target-token's eval split)."""


def _copy_requests(n: int, num_targets: int, seed: int, split: str) -> list[tuple[str, str]]:
    """n (request, word) pairs from the split's share of phrasing × word combinations."""
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    if not 2 <= num_targets <= MAX_TARGETS:
        raise ValueError(f"num_targets must be in [2, {MAX_TARGETS}], got {num_targets}")
    combos = [(p, w) for p in range(len(COPY_PHRASINGS)) for w in range(num_targets)]
    # One combination in four is held out, fixed by the combination alone (not the seed).
    held_out = [(p, w) for p, w in combos if (p * 31 + w * 17) % 4 == 0]
    pool = held_out if split == "eval" else [c for c in combos if c not in held_out]
    rng = random.Random(seed)
    phrasings_of = {w: [p for p, pool_word in pool if pool_word == w] for w in range(num_targets)}
    picks = [(rng.choice(phrasings_of[w]), w) for w in _dealt(rng, range(num_targets), n)]
    return [(COPY_PHRASINGS[p].format(f"t{w}"), f"t{w}") for p, w in picks]


def _dealt(rng: random.Random, items: Iterable, n: int) -> list:
    """n draws that use every item equally often (give or take one), in shuffled rounds. Drawn
    independently, one word of 32 came 15 times in 1,024 rows and another 49."""
    items = list(items)
    drawn: list = []
    while len(drawn) < n:
        drawn += rng.sample(items, len(items))
    return drawn[:n]


def chat_copy_rows(
    n: int, num_targets: int = 16, seed: int = 0, split: str = "train"
) -> list[dict]:
    return [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in _copy_requests(n, num_targets, seed, split)
    ]


def preference_copy_rows(
    n: int, num_targets: int = 16, seed: int = 0, split: str = "train"
) -> list[dict]:
    rng = random.Random(f"rejected:{seed}")
    rows = []
    for q, a in _copy_requests(n, num_targets, seed, split):
        wrong = rng.choice([f"t{w}" for w in range(num_targets) if f"t{w}" != a])
        rows.append({"prompt": q, "chosen": a, "rejected": wrong})
    return rows


def target_token_rows(
    n: int, num_targets: int = 8, seed: int = 0, exclusive: bool = False, split: str = "train"
) -> list[dict]:
    """Requests to write a target word: in the copy sets' train phrasings, or with
    `split="eval"` in `HELD_OUT_PHRASINGS`. With `exclusive`, the other target words are
    forbidden, so writing them all earns nothing."""
    words = [f"t{i}" for i in range(num_targets)]
    if split == "eval":
        _copy_requests(0, num_targets, seed, split)  # validates num_targets
        rng = random.Random(seed)
        requests = [
            (phrasing.format(word), word)
            for phrasing, word in zip(
                _dealt(rng, HELD_OUT_PHRASINGS, n), _dealt(rng, words, n), strict=True
            )
        ]
    else:
        requests = _copy_requests(n, num_targets, seed, split)
    rows = []
    for request, word in requests:
        row = _row(request, word, "contains")
        if exclusive:
            row["forbidden_words"] = [w for w in words if w != word]
        rows.append(row)
    return rows


def _expressions(
    n: int, max_operand: int, seed: int, split: str, fraction_share: float = 0.25
) -> list[str]:
    """Integer and fraction expressions of the split: `split="eval"` draws only from the one
    expression in four that `split="train"` never uses (fixed by the expression, not the seed)."""
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    rng = random.Random(seed)
    expressions: list[str] = []
    while len(expressions) < n:
        expression = (
            _fraction_sum(rng, max_operand)
            if rng.random() < fraction_share
            else _integer_expression(rng, max_operand)
        )
        if (zlib.crc32(expression.encode()) % 4 == 0) == (split == "eval"):
            expressions.append(expression)
    return expressions


def arithmetic_rows(
    n: int, max_operand: int = 20, seed: int = 0, split: str = "train", fraction_share: float = 0.25
) -> list[dict]:
    """Integer and fraction expressions for the `math` verifier (see `_expressions`)."""
    return [
        _row(_question(e), sympy.latex(_answer(e)), "math")
        for e in _expressions(n, max_operand, seed, split, fraction_share)
    ]


def arithmetic_text_rows(
    n: int,
    max_operand: int = 20,
    seed: int = 0,
    split: str = "train",
    per_document: int = 4,
    fraction_share: float = 0.25,
    boxed: bool = False,
) -> list[dict]:
    """n documents of `per_document` worked problems each, as `{"text": ...}` rows; `boxed`
    asks and answers as the chat sets do ("Put the final answer in \\boxed{}.")."""
    expressions = _expressions(n * per_document, max_operand, seed, split, fraction_share)
    ask = _question if boxed else (lambda e: f"What is {e}?")
    return [
        {
            "text": "\n\n".join(
                f"Question: {ask(e)}\nSolution: {_solution(e, boxed)}"
                for e in expressions[i : i + per_document]
            )
        }
        for i in range(0, len(expressions), per_document)
    ]


def arithmetic_chat_rows(
    n: int, max_operand: int = 20, seed: int = 0, split: str = "train", fraction_share: float = 0.25
) -> list[dict]:
    """SFT conversations: the `arithmetic` RL prompt answered with a worked solution whose answer
    is boxed, as the `math` verifier reads it."""
    return [
        {
            "messages": [
                {"role": "user", "content": _question(e)},
                {"role": "assistant", "content": _solution(e, boxed=True)},
            ]
        }
        for e in _expressions(n, max_operand, seed, split, fraction_share)
    ]


def arithmetic_preference_rows(
    n: int, max_operand: int = 20, seed: int = 0, split: str = "train", fraction_share: float = 0.25
) -> list[dict]:
    """DPO pairs: the worked, boxed solution against the same steps ending in a wrong answer
    (the right one plus or minus 1 to 3)."""
    rng = random.Random(f"rejected:{seed}")
    rows = []
    for e in _expressions(n, max_operand, seed, split, fraction_share):
        chosen = _solution(e, boxed=True)
        wrong = _answer(e) + rng.choice((-3, -2, -1, 1, 2, 3))
        rejected = chosen[: chosen.rindex("The answer is")] + f"The answer is \\boxed{{{wrong}}}."
        rows.append({"prompt": _question(e), "chosen": chosen, "rejected": rejected})
    return rows


def _question(expression: str) -> str:
    return f"What is {expression}? Put the final answer in \\boxed{{}}."


def _answer(expression: str) -> sympy.Rational:
    # rational=True keeps 1/3 exact instead of 0.333..., so the label is \frac{1}{3}.
    return sympy.sympify(expression, rational=True)


def _solution(expression: str, boxed: bool = False) -> str:
    """ "4 * 2 = 8. 3 + 8 = 11. The answer is 11." for 3 + 4 * 2 (boxed: \\boxed{11})."""
    if "/" in expression:
        (a, b), (c, d) = (map(int, f.split("/")) for f in expression.split(" + "))
        common = b * d
        total = sympy.Rational(a * d + c * b, common)
        steps = [f"{expression} = {a * d}/{common} + {c * b}/{common} = {a * d + c * b}/{common}"]
        answer = str(total)
        if answer != f"{a * d + c * b}/{common}":
            steps.append(f"{a * d + c * b}/{common} = {answer}")
    else:
        parts = expression.split()
        steps = []
        while len(parts) > 1:
            # Multiplication first, then left to right.
            at = parts.index("*") if "*" in parts else 1
            left, op, right = int(parts[at - 1]), parts[at], int(parts[at + 1])
            value = {"+": left + right, "-": left - right, "*": left * right}[op]
            steps.append(f"{left} {op} {right} = {value}")
            parts[at - 1 : at + 2] = [str(value)]
        answer = parts[0]
    final = f"\\boxed{{{answer}}}" if boxed else answer
    return f"{'. '.join(steps)}. The answer is {final}."


def build_synthetic_rows(
    kind: str, n: int, seed: int = 0, **options: int | bool | str
) -> list[dict]:
    if kind == "target-token":
        return target_token_rows(n, seed=seed, **options)
    if kind == "arithmetic":
        return arithmetic_rows(n, seed=seed, **options)
    if kind == "arithmetic-text":
        return arithmetic_text_rows(n, seed=seed, **options)
    if kind == "arithmetic-chat":
        return arithmetic_chat_rows(n, seed=seed, **options)
    if kind == "arithmetic-preference":
        return arithmetic_preference_rows(n, seed=seed, **options)
    if kind == "chat-copy":
        return chat_copy_rows(n, seed=seed, **options)
    if kind == "preference-copy":
        return preference_copy_rows(n, seed=seed, **options)
    raise ValueError(f"unknown synthetic set {kind!r}; choose one of {', '.join(SYNTHETIC_SETS)}")


def write_jsonl(rows: Iterable[Mapping], path: str | Path) -> Path:
    return atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def _row(prompt: str, ground_truth: str, dataset: str) -> dict:
    return {
        "messages": [{"role": "user", "content": prompt}],
        "ground_truth": ground_truth,
        "dataset": dataset,
    }


def _integer_expression(rng: random.Random, max_operand: int) -> str:
    operands = [rng.randint(1, max_operand) for _ in range(rng.choice((2, 3)))]
    operators = [rng.choice("+-*") for _ in operands[1:]]
    parts = [str(operands[0])]
    for op, value in zip(operators, operands[1:]):
        parts += [op, str(value)]
    return " ".join(parts)


def _fraction_sum(rng: random.Random, max_operand: int) -> str:
    a, b = rng.randint(1, max_operand), rng.randint(2, max_operand)
    c, d = rng.randint(1, max_operand), rng.randint(2, max_operand)
    return f"{a}/{b} + {c}/{d}"
