"""Decontamination: planted copies of evaluation rows are all found, in every row schema and
inside longer documents; a clean set with the same templates gives no false positives."""

import json
import random

import pytest

from olmorl.data.decontamination import decontaminate, words
from olmorl.data.loading import DataError
from olmorl.data.synth import arithmetic_rows, arithmetic_text_rows


def write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def sets(tmp_path):
    """A held-out RL split, and clean training sets in three schemas made from the train split
    (the same templates, other expressions)."""
    eval_rows = arithmetic_rows(64, seed=1, split="eval")
    rl = arithmetic_rows(300, seed=2)
    sft = [
        {"messages": [*row["messages"], {"role": "assistant", "content": row["ground_truth"]}]}
        for row in arithmetic_rows(200, seed=3)
    ]
    text = arithmetic_text_rows(100, seed=4)
    return tmp_path, eval_rows, rl, sft, text


def test_planted_overlaps_are_all_found_and_clean_rows_kept(sets):
    tmp_path, eval_rows, rl, sft, text = sets
    rng = random.Random(0)
    planted: dict[str, set[int]] = {"rl": set(), "sft": set(), "text": set()}
    # A verbatim RL row, an SFT conversation asking an eval question, and an eval question
    # pasted into the middle of a longer pretraining document.
    for name, rows, make in (
        ("rl", rl, lambda e: dict(e)),
        (
            "sft",
            sft,
            lambda e: {"messages": [*e["messages"], {"role": "assistant", "content": "42"}]},
        ),
        (
            "text",
            text,
            lambda e: {"text": "Some worked problems.\n" + e["messages"][0]["content"] + "\nMore."},
        ),
    ):
        for e in rng.sample(eval_rows, 5):
            at = rng.randrange(len(rows) + 1)
            rows.insert(at, make(e))
            planted[name] = {i + (i >= at) for i in planted[name]} | {at}
    files = [
        write(tmp_path / f"{name}.jsonl", rows)
        for name, rows in (("rl", rl), ("sft", sft), ("text", text))
    ]
    against = write(tmp_path / "eval.jsonl", eval_rows)
    report = decontaminate(
        [str(f) for f in files], [str(against)], tmp_path / "clean", progress=False
    )
    for name, rows in (("rl", rl), ("sft", sft), ("text", text)):
        entry = report["files"][str(tmp_path / f"{name}.jsonl")]
        assert set(entry["removed_rows"]) == {i + 1 for i in planted[name]}, name
        clean = [
            json.loads(line)
            for line in (tmp_path / "clean" / f"{name}.jsonl").read_text().splitlines()
        ]
        assert clean == [row for i, row in enumerate(rows) if i not in planted[name]]
    assert json.loads((tmp_path / "clean" / "decontamination_report.json").read_text()) == report


def test_a_shared_template_alone_is_not_contamination(sets):
    """Every arithmetic prompt ends "? Put the final answer in \\boxed{}.": 11 of a 13-gram."""
    tmp_path, eval_rows, rl, _, _ = sets
    report = decontaminate(
        [str(write(tmp_path / "rl.jsonl", rl))],
        [str(write(tmp_path / "eval.jsonl", eval_rows))],
        tmp_path / "clean",
        progress=False,
    )
    assert report["files"][str(tmp_path / "rl.jsonl")]["removed"] == 0
    # Counting any shared n-gram instead would have flagged rows of the clean set.
    eval_grams = {" ".join(words(r["messages"][0]["content"])[-13:]) for r in eval_rows}
    assert any(" ".join(words(r["messages"][0]["content"])[-13:]) in eval_grams for r in rl)


def test_short_evaluation_rows_are_matched_whole(tmp_path):
    against = write(tmp_path / "eval.jsonl", [{"text": "What is 12 * 12?"}])
    train = write(
        tmp_path / "train.jsonl",
        [{"text": "Q: what is 12 * 12 ? A: 144"}, {"text": "What is 12 * 13?"}],
    )
    report = decontaminate([str(train)], [str(against)], tmp_path / "out", progress=False)
    assert report["files"][str(train)]["removed_rows"] == [1]


def test_an_output_over_its_input_is_refused(tmp_path):
    train = write(tmp_path / "train.jsonl", [{"text": "a"}])
    with pytest.raises(DataError, match="would overwrite it"):
        decontaminate([str(train)], [str(train)], tmp_path, progress=False)


def test_the_clean_copy_holds_the_kept_rows_exactly_as_written(tmp_path):
    """Rows of different shapes and field types, as Dolci mixes them: read through `datasets`,
    each would gain the others' fields as null and "1" next to a list would change type."""
    kept = [
        {"text": "hello world", "id": 1},
        {"messages": [{"role": "user", "content": "Say hi."}], "ground_truth": "1"},
        {"messages": [{"role": "user", "content": "Pick two."}], "ground_truth": ["1", "2"]},
    ]
    against = write(tmp_path / "eval.jsonl", [{"text": "What is 12 * 12?"}])
    train = write(tmp_path / "train.jsonl", [kept[0], {"text": "What is 12 * 12?"}, *kept[1:]])
    decontaminate([str(train)], [str(against)], tmp_path / "out", progress=False)
    lines = (tmp_path / "out" / "train.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == kept


def test_a_bad_line_stops_the_copy_naming_the_row_and_leaves_no_partial_file(tmp_path):
    against = write(tmp_path / "eval.jsonl", [{"text": "What is 12 * 12?"}])
    train = tmp_path / "train.jsonl"
    train.write_text('{"text": "a"}\n\n{"text": "b"\n')
    with pytest.raises(DataError, match=r"train.jsonl row 2: not JSON"):
        decontaminate([str(train)], [str(against)], tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "train.jsonl").exists()
