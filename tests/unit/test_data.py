"""RL data: schema validation with file and row in every error, and the synthetic sets."""

import json
import re
from fractions import Fraction

import pytest

from olmorl.data.loading import DataError
from olmorl.data.prompts import load_rl_rows
from olmorl.data.rl_rows import RowError, validate_rl_row
from olmorl.data.synth import arithmetic_rows, build_synthetic_rows, target_token_rows, write_jsonl

GOOD = {
    "messages": [{"role": "user", "content": "What is 1 + 1?"}],
    "ground_truth": "2",
    "dataset": "math",
}


def with_(**changes):
    return {**GOOD, **changes}


@pytest.mark.parametrize(
    "row, field, fragment",
    [
        ({k: v for k, v in GOOD.items() if k != "dataset"}, "dataset", "missing"),
        (with_(messages=[]), "messages", "non-empty list"),
        (with_(messages="hi"), "messages", "non-empty list"),
        (with_(messages=[{"role": "robot", "content": "x"}]), "messages[0].role", "robot"),
        (with_(messages=[{"role": "user", "content": 3}]), "messages[0].content", "string"),
        (with_(messages=[{"role": "user", "content": "  "}]), "messages[0].content", "empty"),
        (
            with_(messages=[{"role": "assistant", "content": "x"}]),
            "messages",
            "end with a user turn",
        ),
        (
            with_(dataset=["math", "contains"], ground_truth=["1", "2", "3"]),
            "ground_truth",
            "3 labels for 2",
        ),
        (with_(ground_truth={"a": 1}), "ground_truth", "string or a non-empty list"),
        (with_(dataset="mth"), "dataset", "unknown verifier 'mth'"),
    ],
)
def test_bad_rows_name_the_field(row, field, fragment):
    with pytest.raises(RowError) as info:
        validate_rl_row(row, known_verifiers={"math", "contains"})
    assert info.value.field == field
    assert fragment in str(info.value)


def test_extra_fields_reach_the_verifiers():
    row = validate_rl_row(with_(forbidden_words=["t2"], id=7))
    assert row.as_verifier_row() == {**GOOD, "forbidden_words": ["t2"], "id": 7}


def test_lists_and_numbers_are_accepted():
    row = validate_rl_row(with_(dataset=["math", "contains"], ground_truth=[4, "t1"]))
    assert row.verifier_names == ("math", "contains")
    assert row.ground_truth == ("4", "t1")


def test_loader_names_file_and_row(tmp_path):
    path = write_jsonl([GOOD, GOOD, with_(dataset="nope")], tmp_path / "train.jsonl")
    with pytest.raises(DataError) as info:
        load_rl_rows([str(path)], known_verifiers={"math"})
    assert str(info.value).startswith(f"{path} row 3: field 'dataset': unknown verifier 'nope'")


def test_loader_reads_jsonl_and_parquet(tmp_path):
    import datasets

    jsonl = write_jsonl(arithmetic_rows(5, seed=1), tmp_path / "a.jsonl")
    parquet = tmp_path / "a.parquet"
    datasets.Dataset.from_list(arithmetic_rows(3, seed=2)).to_parquet(str(parquet))
    rows = load_rl_rows([str(jsonl), str(parquet)], known_verifiers={"math"})
    assert len(rows) == 8 and all(r.dataset == "math" for r in rows)


def test_loader_errors_for_missing_and_unsupported_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_rl_rows([str(tmp_path / "absent.jsonl")])
    (tmp_path / "rows.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="unsupported file type"):
        load_rl_rows([str(tmp_path / "rows.csv")])
    (tmp_path / "broken.jsonl").write_text('{"messages": [\n')
    with pytest.raises(DataError, match="broken.jsonl row 1: not valid JSON"):
        load_rl_rows([str(tmp_path / "broken.jsonl")])


def test_arithmetic_eval_split_holds_expressions_train_never_has():
    train = {r["messages"][0]["content"] for r in arithmetic_rows(2000, max_operand=5)}
    held_out = {
        r["messages"][0]["content"]
        for r in arithmetic_rows(200, max_operand=5, seed=1, split="eval")
    }
    assert len(held_out) > 20 and not train & held_out


def test_arithmetic_labels_are_exact_answers():
    # Independent of sympy: evaluate with exact fractions, read the LaTeX label with a regex.
    for row in arithmetic_rows(200, seed=3):
        expression = row["messages"][0]["content"].removeprefix("What is ").split("?")[0]
        expected = eval(re.sub(r"\d+", r"Fraction(\g<0>)", expression))
        assert _label_value(row["ground_truth"]) == expected, row


def _label_value(label: str) -> Fraction:
    fraction = re.fullmatch(r"(-?)\s*\\frac\{(\d+)\}\{(\d+)\}", label)
    if fraction:
        sign, num, den = fraction.groups()
        return Fraction(int(num), int(den)) * (-1 if sign else 1)
    return Fraction(int(label))


def test_target_token_rows():
    rows = target_token_rows(100, num_targets=4, seed=0)
    assert {r["ground_truth"] for r in rows} == {"t0", "t1", "t2", "t3"}
    assert all(r["ground_truth"] in r["messages"][0]["content"] for r in rows)
    assert all("forbidden_words" not in r for r in rows)
    exclusive = target_token_rows(20, num_targets=4, exclusive=True)
    assert all(
        set(r["forbidden_words"]) == {"t0", "t1", "t2", "t3"} - {r["ground_truth"]}
        for r in exclusive
    )
    assert rows == target_token_rows(100, num_targets=4, seed=0)
    with pytest.raises(ValueError, match=r"num_targets must be in \[2, 64\]"):
        target_token_rows(1, num_targets=65)
    held_out = target_token_rows(100, num_targets=4, split="eval")
    assert not {r["messages"][0]["content"] for r in held_out} & {
        r["messages"][0]["content"] for r in target_token_rows(400, num_targets=4)
    }
    with pytest.raises(ValueError, match="unknown synthetic set"):
        build_synthetic_rows("poetry", 1)


def test_write_jsonl_round_trip(tmp_path):
    rows = arithmetic_rows(3)
    path = write_jsonl(rows, tmp_path / "sub" / "x.jsonl")
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows
