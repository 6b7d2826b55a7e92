"""DPO rows: both Dolci schemas, every bad case named by field, and the loader's stop/skip modes."""

import json
from collections import Counter

import pytest

from olmorl.data.loading import DataError
from olmorl.data.preference_rows import (
    SKIP_REASONS,
    PairError,
    PreferencePair,
    load_preference_pairs,
    validate_preference_row,
)

SYSTEM = {"role": "system", "content": "Be brief."}
USER = {"role": "user", "content": "What is 2 + 2?"}

CONVERSATIONS = {  # schema (a)
    "chosen": [SYSTEM, USER, {"role": "assistant", "content": "4"}],
    "rejected": [SYSTEM, USER, {"role": "assistant", "content": "5"}],
}
PROMPT_AND_REPLIES = {"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5"}  # schema (b)


def conversations(**changes):
    row = json.loads(json.dumps(CONVERSATIONS))  # a deep copy the cases may edit
    for path, value in changes.items():
        side, index, key = path.split("__")
        row[side][int(index)][key] = value
    return row


def replies(**changes):
    return {**PROMPT_AND_REPLIES, **changes}


def test_conversations_schema():
    pair = validate_preference_row(CONVERSATIONS)
    assert pair == PreferencePair(prompt_messages=(SYSTEM, USER), chosen="4", rejected="5")
    assert pair.chosen_messages == CONVERSATIONS["chosen"]
    assert pair.rejected_messages == CONVERSATIONS["rejected"]


def test_prompt_and_replies_schema():
    pair = validate_preference_row(PROMPT_AND_REPLIES)
    assert pair == PreferencePair(prompt_messages=(USER,), chosen="4", rejected="5")
    as_messages = validate_preference_row(replies(prompt=[SYSTEM, USER]))
    assert as_messages.prompt_messages == (SYSTEM, USER)
    # Replies as one-message assistant lists (TRL's explicit-prompt conversational form).
    one_message = validate_preference_row(
        replies(
            chosen=[{"role": "assistant", "content": "4"}],
            rejected=[{"role": "assistant", "content": "5"}],
        )
    )
    assert one_message == pair


def test_multi_turn_and_extra_keys():
    turns = [USER, {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"}]
    row = {
        "chosen": [*turns, {"role": "assistant", "content": "6", "tool_calls": None}],
        "rejected": [*turns, {"role": "assistant", "content": "7"}],
        "prompt": "ignored: the conversations carry the prompt",
        "id": "x-1",
    }
    pair = validate_preference_row(row)
    assert pair.prompt_messages == tuple(turns)
    assert (pair.chosen, pair.rejected) == ("6", "7")
    assert pair.chosen_messages[-1] == {"role": "assistant", "content": "6"}


BAD_ROWS = [
    # (row, field, reason, message fragment)
    ({"rejected": CONVERSATIONS["rejected"]}, "chosen", "missing_field", "missing"),
    (replies(rejected=None), "rejected", "missing_field", "missing"),
    (conversations(chosen__1__role=None), "chosen[1].role", "missing_role", "missing"),
    (conversations(rejected__0__role="robot"), "rejected[0].role", "unknown_role", "'robot'"),
    (conversations(chosen__2__content="  \n"), "chosen[2].content", "empty_reply", "empty"),
    (replies(rejected=""), "rejected", "empty_reply", "empty"),
    (conversations(rejected__2__content=" 4 "), "rejected", "identical", "same reply"),
    (replies(rejected="4"), "rejected", "identical", "same reply"),
    (
        conversations(rejected__1__content="What is 2 + 3?"),
        "rejected[1]",
        "prompt_mismatch",
        "differs from chosen[1]",
    ),
    (
        {**CONVERSATIONS, "rejected": CONVERSATIONS["rejected"][1:]},
        "rejected[0]",
        "prompt_mismatch",
        "share the turns",
    ),
    (
        {**CONVERSATIONS, "rejected": [USER, *CONVERSATIONS["rejected"]]},
        "rejected[0]",
        "prompt_mismatch",
        "share the turns",
    ),
    (
        {**CONVERSATIONS, "rejected": [SYSTEM, USER, USER, CONVERSATIONS["rejected"][-1]]},
        "rejected",
        "prompt_mismatch",
        "3 turns before the reply, chosen has 2",
    ),
    (conversations(chosen__2__role="user"), "chosen[2].role", "not_assistant", "last turn"),
    ({k: v for k, v in PROMPT_AND_REPLIES.items() if k != "prompt"}, "prompt", "no_prompt", ""),
    (replies(prompt=" "), "prompt", "no_prompt", "empty"),
    (
        replies(
            chosen=[{"role": "assistant", "content": "4"}],
            rejected=[{"role": "assistant", "content": "5"}],
            prompt=None,
        ),
        "prompt",
        "no_prompt",
        "missing",
    ),
    (conversations(chosen__2__content=None), "chosen[2].content", "bad_type", "got null"),
    (replies(prompt={"text": "hi"}), "prompt", "bad_type", "got dict"),
    (replies(chosen=CONVERSATIONS["chosen"]), "rejected", "bad_type", "message list like chosen"),
    (replies(chosen=4), "chosen", "bad_type", "got int"),
    ({**CONVERSATIONS, "chosen": ["4"]}, "chosen[0]", "bad_type", "got str"),
    ({**CONVERSATIONS, "chosen": []}, "chosen", "bad_type", "non-empty list"),
]


@pytest.mark.parametrize("row, field, reason, fragment", BAD_ROWS)
def test_bad_rows_name_the_field(row, field, reason, fragment):
    with pytest.raises(PairError) as info:
        validate_preference_row(row)
    assert (info.value.field, info.value.reason) == (field, reason)
    assert str(info.value).startswith(f"field '{field}': ")
    assert fragment in str(info.value)
    assert reason in SKIP_REASONS


def write_lines(path, rows):
    path.write_text("".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("row, field, reason, fragment", BAD_ROWS)
def test_stop_names_file_row_and_field(tmp_path, row, field, reason, fragment):
    path = write_lines(tmp_path / "prefs.jsonl", [CONVERSATIONS, PROMPT_AND_REPLIES, row])
    with pytest.raises(DataError) as info:
        load_preference_pairs(path, on_bad_row="stop")
    assert str(info.value).startswith(f"{path} row 3: field '{field}': ")


def test_skip_counts_every_reason(tmp_path):
    rows = [CONVERSATIONS, *(bad[0] for bad in BAD_ROWS), PROMPT_AND_REPLIES]
    path = write_lines(tmp_path / "prefs.jsonl", rows)
    pairs, skipped = load_preference_pairs(path, on_bad_row="skip")
    assert pairs == [validate_preference_row(CONVERSATIONS), validate_preference_row(replies())]
    assert skipped == Counter(bad[2] for bad in BAD_ROWS)


def test_row_numbers_are_line_numbers_and_bad_json_is_a_bad_row(tmp_path):
    path = write_lines(
        tmp_path / "prefs.jsonl", [CONVERSATIONS, "\n", '{"chosen": [\n', "[1, 2]\n"]
    )
    with pytest.raises(DataError, match=r"prefs.jsonl row 3: not valid JSON"):
        load_preference_pairs(path, on_bad_row="stop")
    pairs, skipped = load_preference_pairs(path, on_bad_row="skip")
    assert len(pairs) == 1 and skipped == Counter(bad_json=2)
    write_lines(path, [CONVERSATIONS, "\n", "[1, 2]\n"])
    with pytest.raises(DataError, match=r"prefs.jsonl row 3: expected a JSON object, got list"):
        load_preference_pairs(path, on_bad_row="stop")


def test_over_long_pairs(tmp_path):
    long = replies(chosen="four " * 10)
    path = write_lines(tmp_path / "prefs.jsonl", [PROMPT_AND_REPLIES, long, CONVERSATIONS])

    def words(pair: PreferencePair) -> int:  # a stand-in tokenizer: the longer side, in words
        prompt = sum(len(m["content"].split()) for m in pair.prompt_messages)
        return prompt + max(len(pair.chosen.split()), len(pair.rejected.split()))

    pairs, skipped = load_preference_pairs(path, "skip", max_tokens=8, count_tokens=words)
    assert [p.chosen for p in pairs] == ["4", "4"] and skipped == Counter(too_long=1)
    with pytest.raises(DataError, match=r"row 2: 15 tokens, more than max_tokens = 8"):
        load_preference_pairs(path, "stop", max_tokens=8, count_tokens=words)
    pairs, skipped = load_preference_pairs(path, "stop", max_tokens=15, count_tokens=words)
    assert len(pairs) == 3 and not skipped


def test_json_array_and_json_lines_in_a_json_file(tmp_path):
    array = tmp_path / "array.json"
    array.write_text(json.dumps([CONVERSATIONS, replies(rejected="4")]))
    with pytest.raises(DataError, match=r"array.json row 2: field 'rejected': the same reply"):
        load_preference_pairs(array, "stop")
    lines = write_lines(tmp_path / "lines.json", [CONVERSATIONS, PROMPT_AND_REPLIES])
    pairs, skipped = load_preference_pairs(str(lines), "stop")
    assert len(pairs) == 2 and not skipped


def test_parquet_goes_through_datasets(tmp_path):
    import datasets

    path = tmp_path / "prefs.parquet"
    datasets.Dataset.from_list([CONVERSATIONS, conversations(rejected__2__content="4")]).to_parquet(
        str(path)
    )
    pairs, skipped = load_preference_pairs(path, "skip")
    assert pairs == [validate_preference_row(CONVERSATIONS)] and skipped == Counter(identical=1)


def test_bad_arguments_and_missing_file(tmp_path):
    path = write_lines(tmp_path / "prefs.jsonl", [CONVERSATIONS])
    with pytest.raises(ValueError, match="on_bad_row must be 'stop' or 'skip'"):
        load_preference_pairs(path, "ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be given together"):
        load_preference_pairs(path, "stop", max_tokens=10)
    with pytest.raises(DataError, match="absent.jsonl: no such file"):
        load_preference_pairs(tmp_path / "absent.jsonl", "stop")
