"""Worked arithmetic documents for pretraining: every final answer is sympy's value of the
question, every step is right and reduces the expression in a valid order (multiplication
first), the eval split's expressions never appear in the train split, and documents hold
`per_document` problems each."""

import re
from fractions import Fraction

import pytest
import sympy

from olmorl.data.synth import arithmetic_rows, arithmetic_text_rows, build_synthetic_rows

PROBLEM = re.compile(r"Question: What is (.+)\?\nSolution: (.+)\. The answer is (-?\d+(?:/\d+)?)\.")
INTEGER_STEP = re.compile(r"(-?\d+) ([-+*]) (-?\d+) = (-?\d+)")


def value(text: str) -> sympy.Rational:
    return sympy.sympify(text, rational=True)


def exact(text: str) -> Fraction:
    """The value of "a op b op c ..." (integers or fractions a/b; * before + and -), faster than
    sympy for checking every step."""
    tokens = text.split()
    terms, signs = [Fraction(tokens[0])], []
    for op, operand in zip(tokens[1::2], tokens[2::2], strict=True):
        if op == "*":
            terms[-1] *= Fraction(operand)
        else:
            signs.append(1 if op == "+" else -1)
            terms.append(Fraction(operand))
    return terms[0] + sum(sign * term for sign, term in zip(signs, terms[1:], strict=True))


def problems(rows: list[dict]) -> list[tuple[str, str, str]]:
    """(expression, solution steps, answer) of every problem of every document."""
    found = []
    for row in rows:
        for problem in row["text"].split("\n\n"):
            match = PROBLEM.fullmatch(problem)
            assert match, problem
            found.append(match.groups())
    return found


@pytest.fixture(scope="module")
def worked() -> list[tuple[str, str, str]]:
    return problems(arithmetic_text_rows(75, seed=7)) + problems(
        arithmetic_text_rows(25, seed=8, split="eval")
    )


def test_every_final_answer_is_sympys_value(worked):
    assert len(worked) == 400
    for expression, _, answer in worked:
        assert value(answer) == value(expression), expression
        # The checks of the steps below use `exact`: it agrees with sympy.
        assert exact(expression) == value(expression), expression


def test_both_kinds_of_problem_and_negative_answers_occur(worked):
    assert any("/" in e for e, _, _ in worked)
    assert any("*" in e for e, _, _ in worked)
    assert any(a.startswith("-") for _, _, a in worked)


def test_integer_steps_are_right_and_reduce_the_expression_in_order(worked):
    for expression, solution, answer in worked:
        if "/" in expression:
            continue
        tokens = expression.split()
        for step in solution.split(". "):
            match = INTEGER_STEP.fullmatch(step)
            assert match, step
            left, op, right, result = match.groups()
            assert int(result) == {"+": int.__add__, "-": int.__sub__, "*": int.__mul__}[op](
                int(left), int(right)
            ), step
            # The step rewrites adjacent tokens of the current expression...
            at = next(
                (i for i in range(len(tokens) - 2) if tokens[i : i + 3] == [left, op, right]),
                None,
            )
            assert at is not None, f"{step!r} is not part of {' '.join(tokens)!r}"
            tokens[at : at + 3] = [result]
            # ...without changing its value (which a + before a * would).
            assert exact(" ".join(tokens)) == exact(expression), (expression, step)
        assert tokens == [answer]


def test_fraction_steps_are_equalities_ending_in_lowest_terms(worked):
    fractions = [w for w in worked if "/" in w[0]]
    assert len(fractions) > 50
    for expression, solution, answer in fractions:
        steps = solution.split(". ")
        assert steps[0].startswith(f"{expression} = ")
        for step in steps:
            sides = step.split(" = ")
            assert len(sides) >= 2
            assert all(exact(side) == exact(expression) for side in sides), step
        assert steps[-1].split(" = ")[-1] == answer
        assert answer == str(exact(expression))  # in lowest terms


def test_eval_expressions_never_appear_in_the_train_split():
    train = {e for seed in range(3) for e, _, _ in problems(arithmetic_text_rows(200, seed=seed))}
    held_out = {
        e
        for seed in range(3)
        for e, _, _ in problems(arithmetic_text_rows(200, seed=seed, split="eval"))
    }
    assert len(train) > 300 and len(held_out) > 300
    assert not train & held_out


def test_eval_split_holds_the_arithmetic_eval_expressions():
    text = [e for e, _, _ in problems(arithmetic_text_rows(10, seed=4, split="eval"))]
    prompts = [r["messages"][0]["content"] for r in arithmetic_rows(40, seed=4, split="eval")]
    assert [f"What is {e}? Put the final answer in \\boxed{{}}." for e in text] == prompts


@pytest.mark.parametrize(("n", "per_document"), [(5, 1), (7, 3), (4, 4)])
def test_documents_hold_per_document_problems(n, per_document):
    rows = arithmetic_text_rows(n, seed=2, per_document=per_document)
    assert len(rows) == n
    assert all(set(row) == {"text"} for row in rows)
    assert [len(problems([row])) for row in rows] == [per_document] * n


def test_same_seed_same_documents_and_synthetic_name():
    rows = arithmetic_text_rows(6, seed=9)
    assert build_synthetic_rows("arithmetic-text", 6, seed=9) == rows
    assert arithmetic_text_rows(6, seed=10) != rows


def test_max_operand_bounds_the_question_numbers():
    for expression, _, _ in problems(arithmetic_text_rows(50, max_operand=5, seed=1)):
        numbers = [int(n) for n in re.findall(r"\d+", expression)]
        assert numbers and max(numbers) <= 5


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="split must be 'train' or 'eval'"):
        arithmetic_text_rows(2, split="test")
