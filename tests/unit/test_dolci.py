"""Dolci rows as AllenAI published them: hand-written rows in each published shape (no hub here),
one per verifier name the Olmo 3 RL sets use, loaded and scored by olmorl's verifiers."""

import asyncio
import base64
import json
import os
import pickle
import zlib

import pytest

from olmorl.data.dolci import DOLCI_VERIFIERS, dolci_rl_row, prompt_messages
from olmorl.data.loading import DataError
from olmorl.data.preference_rows import validate_preference_row
from olmorl.data.prompts import load_rl_rows
from olmorl.data.sft_rows import validate_sft_row
from verifiers import available_verifiers
from verifiers.code import CodeVerifier, _unpickled
from verifiers.registry import build_verifier
from verifiers.scoring import score_row


def compressed(value) -> str:
    """Tests as some open-instruct code rows carry them: base64 of a zlib-compressed pickle."""
    return base64.b64encode(zlib.compress(pickle.dumps(value))).decode()


ADD_TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]
ADD = "```python\ndef add(a, b):\n    return a + b\n```"

# One row per verifier name, in the published shape: a flat `prompt` string, list-valued
# `dataset` and `ground_truth`, and the sets' other columns. Each with a response that passes.
# fmt: off
PUBLISHED_ROWS = {
    "math": ({"prompt": "user: What is 2 + 3?", "dataset": ["math"], "ground_truth": ["5"],
              "id": "m1", "original_dataset": "math_rlvr", "outputs": [], "passrate": 0.5},
             "The answer is \\boxed{5}."),
    "strict_math": ({"prompt": "user: What is 7 - 4?", "dataset": ["strict_math"],
                     "ground_truth": ["3"]}, "\\boxed{3}"),
    "gsm8k": ({"prompt": "User: Tom has 3 apples and buys 4. How many?", "dataset": ["gsm8k"],
               "ground_truth": ["7"]}, "3 + 4 = 7, so \\boxed{7}."),
    "code": ({"prompt": "user: Write add(a, b).", "dataset": ["code"],
              "ground_truth": [json.dumps(ADD_TESTS)]}, ADD),
    "code (compressed tests)": ({"prompt": "user: Write add(a, b).", "dataset": ["code"],
                                 "ground_truth": [compressed(ADD_TESTS)]}, ADD),
    "code_stdio": ({"prompt": "user: Print the sum of two integers on one line.",
                    "dataset": ["code_stdio"],
                    "ground_truth": [json.dumps([{"input": "2 3\n", "output": "5\n"}])]},
                   "```python\na, b = map(int, input().split())\nprint(a + b)\n```"),
    "ifeval": ({"prompt": "user: Describe the sea without commas.", "dataset": ["ifeval"],
                "ground_truth": ["[{'instruction_id': ['punctuation:no_comma'], 'kwargs': [{}]}]"],
                "constraint_type": "single", "constraint": "no commas"},
               "The sea is wide and blue."),
}
# fmt: on


@pytest.mark.parametrize("name", list(PUBLISHED_ROWS))
def test_a_published_row_loads_and_its_verifier_passes_a_right_response(name, tmp_path):
    published, response = PUBLISHED_ROWS[name]
    path = tmp_path / "dolci.jsonl"
    path.write_text(json.dumps(published) + "\n")
    (row,) = load_rl_rows([str(path)], known_verifiers=available_verifiers())
    assert row.messages[0]["role"] == "user" and not row.messages[0]["content"].startswith("user")
    assert row.dataset == DOLCI_VERIFIERS[published["dataset"][0]]
    verifier_row = row.as_verifier_row()
    verifier = build_verifier(row.dataset)
    score = asyncio.run(score_row(verifier_row, response, {row.dataset: verifier}))
    assert score.score == 1.0, score
    wrong = asyncio.run(score_row(verifier_row, "I do not know, sorry.", {row.dataset: verifier}))
    assert wrong.score < 1.0


def test_judge_rows_with_and_without_a_reference():
    without = dolci_rl_row(
        {"prompt": "user: Write a haiku.", "dataset": ["general-quality"], "ground_truth": [None]}
    )
    assert (without["dataset"], without["ground_truth"]) == ("judge", "")
    null = dolci_rl_row(
        {"prompt": "user: Hi", "dataset": ["general-quality"], "ground_truth": None}
    )
    assert null["ground_truth"] == ""
    # open-instruct's reference-free judge ignores a label; olmorl's would read it as a reference.
    ignored = dolci_rl_row(
        {"prompt": "user: Hi", "dataset": ["general-quality"], "ground_truth": ["a stray label"]}
    )
    assert ignored["ground_truth"] == ""
    reference = dolci_rl_row(
        {"prompt": "user: Capital of France?", "dataset": ["general-quality_ref"],
         "ground_truth": ["Paris"]}
    )  # fmt: skip
    assert (reference["dataset"], reference["ground_truth"]) == ("judge", "Paris")


def test_a_row_with_two_verifiers_keeps_its_labels_paired():
    row = dolci_rl_row(
        {"prompt": "user: Say 4 without commas.", "dataset": ["MATH", "general-quality"],
         "ground_truth": ["4", "unused"]}
    )  # fmt: skip
    assert row["dataset"] == ["math", "judge"] and row["ground_truth"] == ["4", ""]


def test_rows_already_in_olmorls_schema_are_unchanged():
    row = {"messages": [{"role": "user", "content": "What is 2+2?"}], "dataset": "math",
           "ground_truth": "4", "id": 3}  # fmt: skip
    assert dolci_rl_row(row, available_verifiers()) == row


def test_a_plugin_under_an_open_instruct_name_keeps_its_rows():
    row = {"prompt": "user: 2+2?", "dataset": ["gsm8k"], "ground_truth": ["4"]}
    assert dolci_rl_row(row, {"gsm8k", "math"})["dataset"] == "gsm8k"
    assert dolci_rl_row(row, {"math"})["dataset"] == "math"


def test_prompt_strings_become_messages():
    assert prompt_messages("user: What is 2 + 2?") == [
        {"role": "user", "content": "What is 2 + 2?"}
    ]
    assert prompt_messages("System: Be brief.\nUSER: Hi\nassistant: Hello\nuser: 2+2?") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "2+2?"},
    ]
    # No marker at the start: the whole text is the user's, markers inside it included.
    text = "Solve this.\nuser: is not a role here"
    assert prompt_messages(text) == [{"role": "user", "content": text}]


def test_every_row_naming_an_unknown_verifier_is_reported_before_the_run(tmp_path):
    rows = [
        {"prompt": "user: 2+2?", "dataset": ["math"], "ground_truth": ["4"]},
        {"prompt": "user: Who?", "dataset": ["string_f1"], "ground_truth": ["Ada"]},
        {"prompt": "user: Riddle", "dataset": ["puzzle"], "ground_truth": ["x"]},
        {"prompt": "user: Who?", "dataset": ["string_f1"], "ground_truth": ["Bo"]},
        {"prompt": "user: 3+3?", "dataset": ["math"], "ground_truth": ["6"]},
    ]
    path = tmp_path / "mix.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError) as info:
        load_rl_rows([str(path)], known_verifiers=available_verifiers())
    message = str(info.value)
    print(message)
    assert f"{path} rows 2, 4 (2 rows): field 'dataset': unknown verifier 'string_f1'" in message
    assert f"{path} row 3: field 'dataset': unknown verifier 'puzzle'" in message


def test_compressed_tests_that_name_a_callable_are_refused_not_run(tmp_path):
    marker = tmp_path / "ran"
    # Unpickling this would call os.system: a data set could carry it as a code label.
    evil = base64.b64encode(zlib.compress(pickle.dumps(_Shell(f"touch {marker}")))).decode()
    assert _unpickled(evil) is None
    # Not tests. Some such blobs also parse as one Python expression (letters joined by + and /,
    # as one CI run drew): then the text is a one-test label, run in the sandbox, never unpickled.
    assert CodeVerifier.parse_tests(evil) in (None, [evil])
    assert not marker.exists()
    assert CodeVerifier.parse_tests(compressed(ADD_TESTS)) == ADD_TESTS


class _Shell:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_published_sft_and_dpo_rows_load():
    # Dolci-Instruct-SFT: tool fields on every message, null where unused.
    sft = validate_sft_row(
        {
            "id": "s1",
            "source_dataset": "tulu",
            "domain": "chat",
            "messages": [
                {"role": "user", "content": "Hi", "functions": None, "function_calls": None},
                {"role": "assistant", "content": "Hello!", "functions": None,
                 "function_calls": None},
            ],
        }
    )  # fmt: skip
    assert [m["role"] for m in sft.messages] == ["user", "assistant"]
    # Dolci-Instruct-DPO: chosen and rejected as whole conversations, with model names.
    pair = validate_preference_row(
        {
            "prompt_id": "p1",
            "chosen_model": "big",
            "rejected_model": "small",
            "preference_type": "delta",
            "chosen": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
            "rejected": [
                {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "5"},
            ],
        }
    )
    assert (pair.chosen, pair.rejected) == ("4", "5")


def test_rows_of_a_set_that_names_no_verifier_get_the_sets(tmp_path):
    """Dolci-RL-Zero-Code-7B's columns: id, solution, prompt, ground_truth; no dataset."""
    from olmorl.config import DataConfig
    from olmorl.data.prompts import load_prompts
    from olmorl.models.tokenizer import build_tiny_tokenizer

    path = tmp_path / "rl_zero_code.jsonl"
    row = {
        "id": "c1",
        "solution": ADD,
        "prompt": "Write add(a, b).",
        "ground_truth": [ADD_TESTS[0]],
    }
    path.write_text(json.dumps(row) + "\n")
    data = DataConfig(train=[str(path)], source_verifiers={str(path): "code"})
    rows, _, _ = load_prompts(data, build_tiny_tokenizer(), available_verifiers())
    assert (rows[0].dataset, rows[0].ground_truth) == ("code", ADD_TESTS[0])
    with pytest.raises(DataError, match=r"row 1: field 'dataset': missing"):
        load_prompts(DataConfig(train=[str(path)]), build_tiny_tokenizer(), available_verifiers())
