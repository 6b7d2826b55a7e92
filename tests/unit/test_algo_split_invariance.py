"""One optimizer step's gradient does not depend on how the batch is split (design §1, §5).

The whole batch as one micro-batch on one process is compared with 4 packed micro-batches of
unequal token counts on 2 gloo processes, each loss divided by the step's global token count.
"""

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from rendezvous_file import file_rendezvous

from olmorl.algo import (
    PackedRow,
    build_trajectory_tokens,
    olmorl_policy_loss,
    pack_trajectories,
    split_rows,
    token_logprobs,
)
from olmorl.models.tiny import build_tiny_model

VOCAB_SIZE = 256
TEMPERATURE = 0.8
WORLD_SIZE = 2
# (prompt, response) lengths; several documents exceed the 64-token sliding window.
LENGTHS = [(12, 110), (20, 70), (8, 95), (16, 40), (10, 130), (25, 30), (6, 60), (14, 20)]


def build_rows(max_tokens_per_row: int) -> list[PackedRow]:
    gen = torch.Generator().manual_seed(0)
    trajectories = [
        build_trajectory_tokens(
            prompt_ids=torch.randint(0, VOCAB_SIZE, (num_prompt,), generator=gen),
            response_ids=torch.randint(0, VOCAB_SIZE, (num_response,), generator=gen),
            response_logprobs=-torch.rand(num_response, generator=gen) * 4,
            advantage=torch.randn((), generator=gen).item(),
        )
        for num_prompt, num_response in LENGTHS
    ]
    return pack_trajectories(trajectories, max_tokens_per_row)


def build_model() -> torch.nn.Module:
    # float64 so the comparison measures the loss arithmetic, not float32 summation order.
    return build_tiny_model("tiny", vocab_size=VOCAB_SIZE, seed=0).double().train()


def micro_batch_loss(
    model: torch.nn.Module, row: PackedRow, total_loss_tokens: int
) -> torch.Tensor:
    logits = model(**row.model_inputs()).logits  # [1, T, V]
    logprobs = token_logprobs(logits, row.input_ids[None], TEMPERATURE).double()  # [1, T]
    # A π_old away from π (a fixed function of token and position, identical under any split),
    # so both clips and the TIS cap are exercised rather than ratio ≡ 1.
    offset = 0.3 * torch.cos(1.3 * row.input_ids + 0.7 * row.position_ids)  # [T]
    loss, _ = olmorl_policy_loss(
        logprobs,
        logprobs.detach() + offset[None],
        row.sampler_logprobs[None].double(),
        row.advantages[None].double(),
        row.loss_mask[None],
        total_loss_tokens,
    )
    return loss


def flat_grad(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def rank_step(
    rank: int, init_method: str, rows: list[list[PackedRow]], total: int, out: str
) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=WORLD_SIZE)
    try:
        model = build_model()
        for row in rows[rank]:
            micro_batch_loss(model, row, total).backward()  # accumulates Σ micro-batch losses
        for p in model.parameters():
            # SUM, not average: each rank's loss is already divided by the global token count.
            # A learner must do the same, e.g. FSDP2 with a gradient divide factor of 1, or the
            # step gradient shrinks by the world size.
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        if rank == 0:
            torch.save(flat_grad(model), out)
    finally:
        dist.destroy_process_group()


def relative_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / a.norm()).item()


@pytest.mark.timeout(120)
def test_gradient_is_the_same_for_one_micro_batch_and_four_on_two_ranks(tmp_path: Path):
    whole = build_rows(max_tokens_per_row=10_000)
    split = build_rows(max_tokens_per_row=220)
    per_rank = split_rows(split, WORLD_SIZE)
    assert len(whole) == 1 and len(split) == 4
    assert [len(part) for part in per_rank] == [2, 2]
    token_counts = [row.num_loss_tokens for part in per_rank for row in part]
    assert len(set(token_counts)) == 4, f"micro-batches should differ in size: {token_counts}"
    total = whole[0].num_loss_tokens
    assert sum(token_counts) == total

    model = build_model()
    micro_batch_loss(model, whole[0], total).backward()
    reference = flat_grad(model)

    out = tmp_path / "grad.pt"
    mp.start_processes(
        rank_step,
        args=(file_rendezvous(tmp_path), per_rank, total, str(out)),
        nprocs=WORLD_SIZE,
        start_method="spawn",
    )
    distributed = torch.load(out)
    assert relative_diff(reference, distributed) < 1e-5

    # The check has teeth: normalising each micro-batch by its own token count and averaging,
    # the classic bug (design §5), gives a clearly different gradient.
    model.zero_grad()
    rows = [row for part in per_rank for row in part]
    for row in rows:
        (micro_batch_loss(model, row, row.num_loss_tokens) / len(rows)).backward()
    assert relative_diff(reference, flat_grad(model)) > 1e-2
