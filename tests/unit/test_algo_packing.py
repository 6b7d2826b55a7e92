"""Sequence packing: invariants, and packed rows scoring exactly as the unpacked documents."""

import pytest
import torch

from olmorl.algo import (
    build_trajectory_tokens,
    olmorl_policy_loss,
    pack_trajectories,
    split_rows,
    token_logprobs,
    unpack,
)
from olmorl.models.tiny import build_tiny_model

VOCAB_SIZE = 256
TEMPERATURE = 0.8


def make_trajectories(lengths: list[tuple[int, int]], seed: int = 0):
    """Trajectories of (prompt, response) lengths with random ids, logprobs and advantages."""
    gen = torch.Generator().manual_seed(seed)
    trajectories = []
    for num_prompt, num_response in lengths:
        trajectories.append(
            build_trajectory_tokens(
                prompt_ids=torch.randint(0, VOCAB_SIZE, (num_prompt,), generator=gen),
                response_ids=torch.randint(0, VOCAB_SIZE, (num_response,), generator=gen),
                response_logprobs=-torch.rand(num_response, generator=gen) * 5,
                advantage=torch.randn((), generator=gen).item(),
                appended_ids=[1],
            )
        )
    return trajectories


def test_every_trajectory_lands_in_exactly_one_row_within_budget():
    gen = torch.Generator().manual_seed(1)
    lengths = [(int(p), int(r)) for p, r in torch.randint(1, 40, (37, 2), generator=gen)]
    trajectories = make_trajectories(lengths)
    rows = pack_trajectories(trajectories, max_tokens_per_row=100)

    placed = sorted(i for row in rows for i in row.trajectory_indices)
    assert placed == list(range(len(trajectories)))
    assert all(len(row) <= 100 for row in rows)
    assert sum(len(row) for row in rows) == sum(len(t) for t in trajectories)
    # First-fit-decreasing never leaves two rows that could have been merged.
    sizes = sorted(len(row) for row in rows)
    assert sizes[0] + sizes[1] > 100
    for row in rows:
        assert sum(row.seq_lens) == len(row)
        assert row.cu_seqlens.tolist() == [0, *torch.tensor(row.seq_lens).cumsum(0).tolist()]
        expected_positions = torch.cat([torch.arange(n) for n in row.seq_lens])
        assert torch.equal(row.position_ids, expected_positions)
        for index, piece in zip(row.trajectory_indices, row.input_ids.split(list(row.seq_lens))):
            assert torch.equal(piece, trajectories[index].input_ids)


def test_unpack_restores_original_order():
    trajectories = make_trajectories([(3, 5), (10, 20), (2, 2), (7, 1)])
    rows = pack_trajectories(trajectories, max_tokens_per_row=32)
    restored = unpack(rows, [row.advantages for row in rows])
    for original, values in zip(trajectories, restored, strict=True):
        assert torch.equal(values, original.advantages)
    with pytest.raises(ValueError, match="every row"):
        unpack(rows[1:], [row.advantages for row in rows[1:]])


def test_over_long_trajectory_is_an_error_not_a_truncation():
    trajectories = make_trajectories([(3, 5), (10, 30)])
    with pytest.raises(
        ValueError, match="trajectory 1 has 41 tokens, more than max_tokens_per_row=40"
    ):
        pack_trajectories(trajectories, max_tokens_per_row=40)


def test_split_rows_keeps_every_row_and_balances_tokens():
    trajectories = make_trajectories([(5, n) for n in (50, 40, 30, 20, 10, 5, 3)])
    rows = pack_trajectories(trajectories, max_tokens_per_row=60)
    parts = split_rows(rows, 3)
    assert sorted(id(r) for part in parts for r in part) == sorted(id(r) for r in rows)
    loads = [sum(len(r) for r in part) for part in parts]
    assert max(loads) - min(loads) <= max(len(r) for r in rows)


def policy_loss(logprobs, position_ids, tokens, total_loss_tokens):
    """The OlmoRL loss of one row or document (# [T]) with a π_old that activates the clip."""
    # π_old is set off π by a function of the position within the document, the same whether
    # the document is packed or not.
    old = logprobs + 0.2 * torch.cos(position_ids.float())
    loss, _ = olmorl_policy_loss(
        logprobs[None],
        old[None],
        tokens.sampler_logprobs[None],
        tokens.advantages[None],
        tokens.loss_mask[None],
        total_loss_tokens,
    )
    return loss


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_packed_and_unpacked_give_same_logprobs_and_loss(attn_implementation):
    # Documents longer than the tiny model's 64-token sliding window, so the sliding layers see
    # windows cut by the document start as well as by the window size.
    trajectories = make_trajectories([(20, 130), (15, 100), (30, 90), (10, 60), (5, 20)])
    rows = pack_trajectories(trajectories, max_tokens_per_row=300)
    assert len(rows) < len(trajectories) and max(len(r.seq_lens) for r in rows) >= 2

    model = build_tiny_model("tiny", vocab_size=VOCAB_SIZE, seed=0)
    model.set_attn_implementation(attn_implementation)
    with torch.no_grad():
        row_logprobs = [
            token_logprobs(model(**row.model_inputs()).logits, row.input_ids[None], TEMPERATURE)[0]
            for row in rows
        ]
        doc_logprobs = [
            token_logprobs(
                model(input_ids=t.input_ids[None]).logits, t.input_ids[None], TEMPERATURE
            )[0]
            for t in trajectories
        ]

    # Position 0 of a packed document is scored from the previous document's last logits; it
    # is a prompt token and never in the loss. Every other position must agree.
    packed = unpack(rows, row_logprobs)
    max_diff = max(
        (p[1:] - d[1:]).abs().max().item() for p, d in zip(packed, doc_logprobs, strict=True)
    )
    assert max_diff < 1e-5

    total = sum(int(t.loss_mask.sum()) for t in trajectories)
    packed_loss = sum(
        policy_loss(lp, row.position_ids, row, total) for lp, row in zip(row_logprobs, rows)
    )
    unpacked_loss = sum(
        policy_loss(lp, torch.arange(len(t)), t, total) for lp, t in zip(doc_logprobs, trajectories)
    )
    assert packed_loss.item() == pytest.approx(unpacked_loss.item(), abs=1e-6)
