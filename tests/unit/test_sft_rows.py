"""SFT rows: validation, assistant-only loss masks under the tiny chat template, and packing."""

import pytest
import torch

from olmorl.data.rl_rows import RowError
from olmorl.data.sft_rows import (
    ChatTemplateError,
    ConversationTooLongError,
    pack_sft_examples,
    tokenize_conversation,
    validate_sft_row,
)
from olmorl.models.tokenizer import IM_END, IM_END_ID, build_tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
MULTI_TURN = [
    SYSTEM,
    user("What is 2 + 3?"),
    assistant("Answer: \\boxed{5}"),
    user("And 4 * 5?"),
    assistant(" 4 * 5 = 20, so the answer is 20.\n"),
]


def trained_spans(ids, mask):
    """The maximal runs of trained tokens, as token lists."""
    spans, current = [], []
    for token, trained in zip(ids, mask, strict=True):
        if trained:
            current.append(token)
        elif current:
            spans.append(current)
            current = []
    return spans + ([current] if current else [])


def test_valid_row_keeps_extra_fields():
    row = validate_sft_row({"id": "x1", "source": "tulu", "messages": MULTI_TURN})
    assert row.messages == tuple(MULTI_TURN) and row.extra == {"id": "x1", "source": "tulu"}


@pytest.mark.parametrize(
    "row, field, message",
    [
        ({}, "messages", "missing"),
        ({"messages": []}, "messages", "non-empty list"),
        ({"messages": ["hi"]}, "messages[0]", "got str"),
        ({"messages": [{"role": "bot", "content": "hi"}]}, "messages[0].role", "got 'bot'"),
        ({"messages": [user("hi"), {"role": "assistant"}]}, "messages[1].content", "a string"),
        ({"messages": [assistant("hi"), user("q")]}, "messages[0].role", "must not open"),
        ({"messages": [user("hi")]}, "messages", "no assistant turn"),
        ({"messages": [user("hi"), assistant("  ")]}, "messages", "no assistant turn"),
    ],
)
def test_invalid_rows_name_the_field(row, field, message):
    with pytest.raises(RowError, match=message) as e:
        validate_sft_row(row)
    assert e.value.field == field and str(e.value).startswith(f"field '{field}': ")


def test_single_turn_trains_exactly_the_answer_and_its_end_token(tokenizer):
    messages = [user("What is 2 + 3?"), assistant("Answer: \\boxed{5}")]
    ids, mask = tokenize_conversation(messages, tokenizer, max_tokens=256)
    assert len(ids) == len(mask)
    # The tokens are those of the whole rendering, and the prompt is tokenised as at generation.
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    assert tokenizer.decode(ids) == full
    prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    assert ids[: len(prompt_ids)] == prompt_ids and not any(mask[: len(prompt_ids)])
    spans = trained_spans(ids, mask)
    assert [tokenizer.decode(s) for s in spans] == ["Answer: \\boxed{5}" + IM_END]
    assert spans[0][-1] == IM_END_ID and ids[-1] != IM_END_ID and not mask[-1]  # the "\n"


def test_multi_turn_with_system_trains_each_assistant_turn_only(tokenizer):
    ids, mask = tokenize_conversation(MULTI_TURN, tokenizer, max_tokens=256)
    assert tokenizer.decode(ids) == tokenizer.apply_chat_template(MULTI_TURN, tokenize=False)
    expected = [m["content"] + IM_END for m in MULTI_TURN if m["role"] == "assistant"]
    assert [tokenizer.decode(s) for s in trained_spans(ids, mask)] == expected
    untrained = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if not m])
    assert "assistant\n" in untrained and "helpful assistant" in untrained
    assert "boxed" not in untrained and "20" not in untrained


def test_trailing_user_turn_and_empty_assistant_turn_are_context(tokenizer):
    messages = [user("q1"), assistant(""), user("q2"), assistant("a2"), user("q3")]
    ids, mask = tokenize_conversation(messages, tokenizer, max_tokens=256)
    # An empty assistant turn still teaches the end-of-turn token.
    assert [tokenizer.decode(s) for s in trained_spans(ids, mask)] == [IM_END, "a2" + IM_END]
    assert tokenizer.decode(ids).endswith("<|im_start|>user\nq3<|im_end|>\n") and not mask[-1]


def test_custom_end_of_turn_ids(tokenizer):
    messages = [user("q"), assistant("a")]
    ids, mask = tokenize_conversation(messages, tokenizer, 64, end_of_turn_ids={-1})
    # No end token in the segment: the whole segment, newline included, is trained.
    assert [tokenizer.decode(s) for s in trained_spans(ids, mask)] == ["a" + IM_END + "\n"]


def test_over_long_conversation_is_reported(tokenizer):
    ids, _ = tokenize_conversation(MULTI_TURN, tokenizer, max_tokens=10_000)
    tokenize_conversation(MULTI_TURN, tokenizer, max_tokens=len(ids))
    with pytest.raises(ConversationTooLongError, match=f"has {len(ids)} tokens") as e:
        tokenize_conversation(MULTI_TURN, tokenizer, max_tokens=len(ids) - 1)
    assert (e.value.num_tokens, e.value.max_tokens) == (len(ids), len(ids) - 1)


def test_template_that_rewrites_earlier_turns_is_refused(rewriting_tokenizer):
    tokenizer = rewriting_tokenizer
    messages = [user("q"), assistant("a"), user("q2"), assistant("a2")]
    with pytest.raises(ChatTemplateError, match=r"messages\[2\]"):
        tokenize_conversation(messages, tokenizer, 256)


def example(length, start):
    ids = list(range(start, start + length))
    return ids, [i % 2 == 1 for i in range(length)]


def test_packing_first_fit_in_order():
    examples = [example(n, 100 * k) for k, n in enumerate([6, 5, 3, 4, 1, 2])]
    rows = pack_sft_examples(examples, max_tokens=10)
    # 6 -> row 0; 5 -> row 1; 3 -> row 0 (9); 4 -> row 1 (9); 1 -> row 0 (10); 2 -> row 2.
    assert [row.trajectory_indices for row in rows] == [(0, 2, 4), (1, 3), (5,)]
    assert [row.seq_lens for row in rows] == [(6, 3, 1), (5, 4), (2,)]
    for row in rows:
        assert len(row) <= 10
        ids, mask = row.input_ids.split(list(row.seq_lens)), row.loss_mask.split(list(row.seq_lens))
        for index, doc_ids, doc_mask, length in zip(
            row.trajectory_indices, ids, mask, row.seq_lens, strict=True
        ):
            assert doc_ids.tolist() == examples[index][0]
            assert doc_mask.tolist() == examples[index][1]
        expected = torch.cat([torch.arange(n) for n in row.seq_lens])
        assert torch.equal(row.position_ids, expected)  # restart at every document
        assert not row.advantages.any() and not row.sampler_logprobs.any()
    every_token = sorted(t for row in rows for t in row.input_ids.tolist())
    assert every_token == sorted(t for ids, _ in examples for t in ids)
    assert sum(row.num_loss_tokens for row in rows) == sum(sum(m) for _, m in examples)


def test_packing_tokenized_conversations(tokenizer):
    conversations = [
        MULTI_TURN,
        [user("What is 1 + 1?"), assistant("2")],
        [SYSTEM, user("Repeat the word t3"), assistant("t3")],
    ]
    examples = [tokenize_conversation(c, tokenizer, 256) for c in conversations]
    rows = pack_sft_examples(examples, max_tokens=256)
    assert len(rows) == 1 and rows[0].trajectory_indices == (0, 1, 2)
    assert rows[0].input_ids.tolist() == [t for ids, _ in examples for t in ids]
    assert rows[0].loss_mask.tolist() == [m for _, mask in examples for m in mask]
    assert rows[0].model_inputs()["position_ids"].shape == (1, len(rows[0]))


def test_packing_refuses_an_over_long_or_misaligned_example():
    with pytest.raises(ValueError, match="example 1 has 11 tokens, more than max_tokens=10"):
        pack_sft_examples([example(3, 0), example(11, 10)], max_tokens=10)
    with pytest.raises(ValueError, match="must align"):
        pack_sft_examples([([1, 2, 3], [True])], max_tokens=10)


BAD_FILE_ROWS = [
    '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}',
    '{"messages": [{"content": "no role"}, {"role": "assistant", "content": "x"}]}',
    '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "  "}]}',
    "not json at all",
    '{"messages": [{"role": "user", "content": "' + "word " * 200 + '"}, '
    '{"role": "assistant", "content": "ok"}]}',
    '{"messages": [{"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Bye"}]}',
]


def test_a_bad_row_stops_the_load_naming_file_row_and_field(tokenizer, tmp_path):
    from olmorl.data.loading import DataError
    from olmorl.data.sft_rows import load_sft_examples

    path = tmp_path / "sft.jsonl"
    path.write_text("\n".join(BAD_FILE_ROWS) + "\n")
    with pytest.raises(DataError, match=r"sft\.jsonl row 2: field 'messages\[0\]\.role'"):
        load_sft_examples(path, tokenizer, max_tokens=64, on_bad_row="stop")


def test_skipping_counts_every_bad_row_by_reason(tokenizer, tmp_path):
    from olmorl.data.sft_rows import load_sft_examples

    path = tmp_path / "sft.jsonl"
    path.write_text("\n".join(BAD_FILE_ROWS) + "\n")
    examples, skipped = load_sft_examples(path, tokenizer, max_tokens=64, on_bad_row="skip")
    assert len(examples) == 2
    assert skipped == {"messages[].role": 1, "messages": 1, "bad_json": 1, "too_long": 1}
