"""RL prompts before the run starts: bad rows stop it naming file, row and field, or are skipped
and counted per reason (data.on_bad_row)."""

import json

import pytest

from olmorl.config import DataConfig
from olmorl.data.loading import DataError
from olmorl.data.prompts import load_prompts
from olmorl.models.tokenizer import build_tiny_tokenizer

GOOD = {
    "messages": [{"role": "user", "content": "Write t1."}],
    "ground_truth": "t1",
    "dataset": "contains",
}
ROWS = [
    GOOD,
    {"messages": [{"role": "user", "content": "Write t2."}], "ground_truth": "t2"},
    {**GOOD, "dataset": "mth"},
    {**GOOD, "messages": []},
    {**GOOD, "messages": [{"role": "user", "content": "word " * 300}]},
    {**GOOD, "messages": [{"content": "no role"}]},
    GOOD,
]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def write(tmp_path, rows):
    path = tmp_path / "rl.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    return str(path)


def test_the_first_bad_row_stops_the_run_naming_it(tmp_path, tokenizer):
    data = DataConfig(train=[write(tmp_path, ROWS)], max_prompt_tokens=64)
    with pytest.raises(DataError, match=r"rl\.jsonl row 2: field 'dataset': missing"):
        load_prompts(data, tokenizer, {"contains", "math"})


def test_skipping_keeps_the_good_rows_and_counts_the_rest(tmp_path, tokenizer):
    source = write(tmp_path, ROWS)
    data = DataConfig(train=[source], max_prompt_tokens=64, on_bad_row="skip")
    rows, prompts, report = load_prompts(data, tokenizer, {"contains", "math"})
    assert len(rows) == len(prompts) == 2
    assert all(len(p) <= 64 for p in prompts)
    assert report[source] == {
        "prompts": 2,
        "skipped/dataset": 2,  # missing, unknown verifier
        "skipped/messages": 1,  # empty
        "skipped/too_long": 1,
        "skipped/messages[].role": 1,
        "skipped/bad_json": 1,
    }


def test_nothing_usable_is_an_error(tmp_path, tokenizer):
    data = DataConfig(train=[write(tmp_path, ROWS[1:6])], on_bad_row="skip", max_prompt_tokens=64)
    with pytest.raises(DataError, match="no usable prompts"):
        load_prompts(data, tokenizer, {"contains"})
