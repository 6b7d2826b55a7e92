"""DPO data on the learner side: tokenized pairs, their packing, and the reference-log-prob cache."""

import torch

from olmorl.config import ModelConfig
from olmorl.data.preference_rows import PreferencePair
from olmorl.models.tokenizer import build_tiny_tokenizer
from olmorl.train import reference_cache
from olmorl.train.dpo import last_trained_run, pack_pairs, tokenize_pair


def test_only_the_final_reply_is_trained():
    assert last_trained_run([False, True, True, False, True, True, False]) == [
        False, False, False, False, True, True, False
    ]  # fmt: skip
    assert last_trained_run([False, False]) == [False, False]
    tokenizer = build_tiny_tokenizer()
    pair = PreferencePair(
        prompt_messages=(
            {"role": "user", "content": "Write the word t1."},
            {"role": "assistant", "content": "t1"},
            {"role": "user", "content": "Again t2."},
        ),
        chosen="t2",
        rejected="t3",
    )
    chosen, rejected = tokenize_pair(pair, tokenizer)
    trained = [t for t, m in zip(chosen.input_ids, chosen.loss_mask) if m]
    assert tokenizer.decode(trained) == "t2<|im_end|>"
    assert tokenizer.decode([t for t, m in zip(rejected.input_ids, rejected.loss_mask) if m]) == (
        "t3<|im_end|>"
    )
    # The prompts are the same tokens on both sides.
    prompt_length = chosen.loss_mask.index(True)
    assert chosen.input_ids[:prompt_length] == rejected.input_ids[:prompt_length]


def test_pairs_stay_whole_in_a_row_with_their_document_indices():
    tokenizer = build_tiny_tokenizer()
    pairs = [
        tokenize_pair(
            PreferencePair(({"role": "user", "content": f"Write t{i}."},), f"t{i}", "t9"),
            tokenizer,
        )
        for i in range(5)
    ]
    length = sum(len(side.input_ids) for side in pairs[0])
    rows = pack_pairs(pairs, [4, 1, 3], max_tokens=2 * length)
    assert [row.trajectory_indices for row in rows] == [(8, 9, 2, 3), (6, 7)]
    first = rows[0]
    assert first.seq_lens[0] == len(pairs[4][0].input_ids)
    assert first.input_ids[: first.seq_lens[0]].tolist() == pairs[4][0].input_ids


def test_reference_cache_key_follows_the_model_and_the_tokens(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.safetensors").write_bytes(b"weights-a")
    base = ModelConfig(path=str(model_dir), dtype="float32")
    digest = reference_cache.model_digest(base)
    docs = [([1, 2, 3], [False, True, True]), ([1, 2, 4], [False, True, True])]
    key = reference_cache.documents_key(digest, docs)
    assert key == reference_cache.documents_key(reference_cache.model_digest(base), docs)
    assert key != reference_cache.documents_key(digest, [docs[1], docs[0]])
    assert key != reference_cache.documents_key(
        digest, [([1, 2, 3], [False, False, True])] + docs[1:]
    )
    bf16 = ModelConfig(path=str(model_dir), dtype="bfloat16")
    assert reference_cache.model_digest(bf16) != digest
    (model_dir / "model.safetensors").write_bytes(b"weights-b")
    assert reference_cache.model_digest(base) != digest


def test_reference_cache_round_trip_and_damage(tmp_path):
    logps = torch.tensor([-1.5, -2.25, -0.125], dtype=torch.float64)
    assert reference_cache.load_cached(tmp_path, "k") is None
    path = reference_cache.store(tmp_path, "k", logps)
    assert torch.equal(reference_cache.load_cached(tmp_path, "k"), logps)
    path.write_bytes(path.read_bytes()[:20])
    assert reference_cache.load_cached(tmp_path, "k") is None


def test_a_pair_the_chat_template_cannot_render_is_a_bad_row(tmp_path, rewriting_tokenizer):
    import json

    import pytest

    from olmorl.data.loading import DataError
    from olmorl.train.dpo import load_pair_sets

    tokenizer = rewriting_tokenizer
    multi_turn = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "q2"},
    ]
    path = tmp_path / "pairs.jsonl"
    rows = [
        {"prompt": "Write t1.", "chosen": "t1", "rejected": "t2"},
        {"prompt": multi_turn, "chosen": "t1", "rejected": "t2"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs, report = load_pair_sets([str(path)], tokenizer, 512, "skip")
    assert len(pairs) == 1 and report[str(path)]["skipped/chat_template"] == 1
    with pytest.raises(DataError, match=r"pairs\.jsonl row 2: messages\[2\]"):
        load_pair_sets([str(path)], tokenizer, 512, "stop")
