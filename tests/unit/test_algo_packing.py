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
from olmorl.models.tiny import SLIDING_WINDOW, build_tiny_model

VOCAB_SIZE = 256
TEMPERATURE = 0.8
# (prompt, response) lengths of the packed = unpacked checks: documents longer than the tiny
# model's 64-token sliding window, so the sliding layers see windows cut by the document start
# as well as by the window size.
PACKED_LENGTHS = [(20, 130), (15, 100), (30, 90), (10, 60), (5, 20)]
# Documents of one length share a row as a [D, L] batch instead (`PackedRow.model_inputs`).
EQUAL_LENGTHS = [(20, 80)] * 4


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


@pytest.mark.parametrize("lengths", [PACKED_LENGTHS, EQUAL_LENGTHS], ids=["mixed", "equal"])
@pytest.mark.parametrize(
    ("attn_implementation", "pad"),
    [("sdpa", False), ("sdpa", True), ("eager", True), ("flex_attention", False)],
    ids=["sdpa", "sdpa-padded", "eager-padded", "flex_attention"],
)
def test_packed_and_unpacked_give_same_logprobs_and_loss(
    attn_implementation, pad, lengths, request
):
    if attn_implementation == "flex_attention":
        request.getfixturevalue("eager_flex_attention")
    trajectories = make_trajectories(lengths)
    rows = pack_trajectories(trajectories, max_tokens_per_row=300)
    assert len(rows) < len(trajectories) and max(len(r.seq_lens) for r in rows) >= 2
    batch_shapes = [tuple(row.model_inputs(pad=pad)["input_ids"].shape) for row in rows]
    if lengths is EQUAL_LENGTHS:
        assert batch_shapes == [(2, 101), (2, 101)]
    elif pad:  # each document padded to its row's longest
        assert batch_shapes == [(len(r.seq_lens), max(r.seq_lens)) for r in rows]
    else:
        assert all(shape == (1, len(row)) for shape, row in zip(batch_shapes, rows, strict=True))

    model = build_tiny_model("tiny", vocab_size=VOCAB_SIZE, seed=0)
    assert SLIDING_WINDOW < max(len(t) for t in trajectories)
    assert "sliding_attention" in model.config.layer_types

    def score_documents():
        with torch.no_grad():
            return [
                token_logprobs(
                    model(input_ids=t.input_ids[None]).logits, t.input_ids[None], TEMPERATURE
                )[0]
                for t in trajectories
            ]

    model.set_attn_implementation("eager")  # dense masks, the window applied element-wise
    reference = score_documents()
    model.set_attn_implementation(attn_implementation)
    with torch.no_grad():
        row_logprobs = [
            row.in_row_order(
                token_logprobs(
                    model(**(inputs := row.model_inputs(pad=pad))).logits,
                    inputs["input_ids"],
                    TEMPERATURE,
                )
            )[0]
            for row in rows
        ]
    doc_logprobs = score_documents()
    # Every kernel applies the sliding window as eager does, so packed = unpacked below cannot
    # hold by both ignoring it.
    for got, expected in zip(doc_logprobs, reference, strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)

    # Position 0 of a packed document is scored from the previous document's last logits; it
    # is a prompt token and never in the loss. Every other position must agree.
    packed = unpack(rows, row_logprobs)
    max_diff = max(
        (p[1:] - d[1:]).abs().max().item() for p, d in zip(packed, doc_logprobs, strict=True)
    )
    print(f"{attn_implementation}, pad {pad}: max |packed - unpacked| log-prob {max_diff:.3e}")
    assert max_diff < 1e-5

    total = sum(int(t.loss_mask.sum()) for t in trajectories)
    packed_loss = sum(
        policy_loss(lp, row.position_ids, row, total) for lp, row in zip(row_logprobs, rows)
    )
    unpacked_loss = sum(
        policy_loss(lp, torch.arange(len(t)), t, total) for lp, t in zip(doc_logprobs, trajectories)
    )
    assert packed_loss.item() == pytest.approx(unpacked_loss.item(), abs=1e-6)


def packing_gaps(
    attn_implementation, trajectories, rows, device, dtype, pad=False
) -> tuple[float, float]:
    """Max |packed − unpacked| of log-probs (past each document's first token) and of the loss
    gradient relative to its largest entry, the tiny model in `dtype` on `device`."""
    model = build_tiny_model("tiny", vocab_size=VOCAB_SIZE, seed=0).to(device, dtype)
    model.set_attn_implementation(attn_implementation)
    total = sum(int(t.loss_mask.sum()) for t in trajectories)

    def logprobs_and_grads(items):
        """items: (model inputs, row or document with the loss fields, positions) each."""
        model.zero_grad()
        logprobs, loss = [], 0.0
        for inputs, tokens, positions in items:
            inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in inputs.items()}
            logits = model(**inputs).logits.float()  # [1, T, V] or [D, L, V]
            lp = token_logprobs(logits, inputs["input_ids"], TEMPERATURE)
            lp = (tokens.in_row_order(lp) if hasattr(tokens, "in_row_order") else lp)[0].cpu()
            loss = loss + policy_loss(lp, positions, tokens, total)
            logprobs.append(lp.detach())
        loss.backward()
        return logprobs, {n: p.grad.float().cpu() for n, p in model.named_parameters()}

    varlen = attn_implementation == "flash_attention_2"
    packed, packed_grads = logprobs_and_grads(
        [(row.model_inputs(varlen=varlen, pad=pad), row, row.position_ids) for row in rows]
    )
    unpacked, unpacked_grads = logprobs_and_grads(
        [
            ({"input_ids": t.input_ids[None], "use_cache": False}, t, torch.arange(len(t)))
            for t in trajectories
        ]
    )
    logprob_gap = max(
        (p[1:] - d[1:]).abs().max().item()
        for p, d in zip(unpack(rows, packed), unpacked, strict=True)
    )
    scale = max(g.abs().max().item() for g in unpacked_grads.values())
    grad_gap = max((packed_grads[n] - g).abs().max().item() for n, g in unpacked_grads.items())
    return logprob_gap, grad_gap / scale


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_padded_documents_give_the_unpacked_gradients_on_cpu(attn_implementation):
    """The dense-mask kernels' padded batches (what the learner runs on CPU), backward too: the
    gradient of the policy loss is the unpacked documents' one."""
    trajectories = make_trajectories(PACKED_LENGTHS)
    rows = pack_trajectories(trajectories, max_tokens_per_row=300)
    assert all(r.model_inputs(pad=True)["input_ids"].shape[0] > 1 for r in rows)
    gaps = packing_gaps(attn_implementation, trajectories, rows, "cpu", torch.float32, pad=True)
    print(f"{attn_implementation} padded: max |packed - unpacked| log-prob, grad {gaps}")
    assert gaps[0] < 1e-5 and gaps[1] < 1e-5


def test_padding_is_used_only_where_it_at_most_doubles_the_tokens():
    long_and_short = pack_trajectories(make_trajectories([(10, 90), (5, 5), (5, 5)]), 200)
    [row] = long_and_short  # 3 x 101 slots for 123 tokens: the dense row is cheaper
    assert row.model_inputs(pad=True)["input_ids"].shape == (1, 123)
    scores = torch.arange(123.0)[None]
    assert torch.equal(row.in_row_order(scores), scores)
    [row] = pack_trajectories(make_trajectories([(10, 20), (5, 10), (4, 4)]), 200)
    inputs = row.model_inputs(pad=True)
    assert inputs["input_ids"].shape == (3, 31)
    # Padding continues each document's positions, so no new document starts inside it.
    assert inputs["position_ids"][1].tolist() == list(range(31))
    per_slot = torch.arange(3 * 31.0).reshape(3, 31)
    assert row.in_row_order(per_slot)[0].tolist() == [
        *range(31),
        *range(31, 31 + 16),
        *range(62, 62 + 9),
    ]


@pytest.mark.gpu
@pytest.mark.parametrize("attn_implementation", ["flex_attention", "flash_attention_2"])
def test_cuda_kernels_keep_packed_documents_apart_with_gradients(attn_implementation):
    """The learners' CUDA kernels (compiled flex, flash-attn varlen), forward and backward: flex
    in float32 as exactly as the CPU test; flash-attn needs bfloat16, so it may stray from the
    unpacked documents only about as far as sdpa's dense masks do in bfloat16."""
    from transformers.utils import is_flash_attn_2_available

    if attn_implementation == "flash_attention_2" and not is_flash_attn_2_available():
        pytest.skip("flash-attn is not installed")
    trajectories = make_trajectories(PACKED_LENGTHS)
    rows = pack_trajectories(trajectories, max_tokens_per_row=300)
    if attn_implementation == "flex_attention":
        gaps = packing_gaps("flex_attention", trajectories, rows, "cuda", torch.float32)
        print(f"flex_attention float32: max |packed - unpacked| log-prob, grad {gaps}")
        assert gaps[0] < 1e-4 and gaps[1] < 1e-4
        return
    gaps = packing_gaps("flash_attention_2", trajectories, rows, "cuda", torch.bfloat16)
    sdpa = packing_gaps("sdpa", trajectories, rows, "cuda", torch.bfloat16)
    print(f"bfloat16 max |packed - unpacked| log-prob, grad: flash {gaps}, sdpa {sdpa}")
    # Attention across documents moves log-probs by ~0.1-1; bfloat16 rounding by far less.
    assert gaps[0] <= 3 * sdpa[0] + 1e-2 and gaps[1] <= 3 * sdpa[1] + 1e-2
