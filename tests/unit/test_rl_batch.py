"""From scored groups to learner mini-batches: filtering, advantages, shaping, sharding."""

import pytest
import torch

from olmorl.config import AlgorithmConfig
from olmorl.rl.batch import build_step_batch
from olmorl.rl.prompts import PromptSampler
from olmorl.rl.types import Completion, PromptGroup, ScoredGroup


def group(index: int, rewards, lengths, truncated=(), unscored=()):
    completions = tuple(
        Completion(
            token_ids=tuple(range(100, 100 + n)),
            logprobs=tuple([-1.0] * n),
            finish_reason="length" if j in truncated else "stop",
            token_versions=(0,) * n,
        )
        for j, n in enumerate(lengths)
    )
    return ScoredGroup(
        PromptGroup(index, (1, 2, 3), completions),
        tuple(rewards),
        {"math": tuple(rewards)},
        tuple(j in unscored for j in range(len(lengths))),
    )


def loss_tokens(mini_batches):
    return sum(row.num_loss_tokens for mb in mini_batches for row in mb.rows)


def test_zero_variance_groups_are_filtered_and_counted():
    groups = [group(0, [1, 1], [4, 5]), group(1, [0, 1], [3, 6]), group(2, [0, 0], [2, 2])]
    batch = build_step_batch(groups, AlgorithmConfig(group_size=2, prompts_per_step=3), 1, 64)
    assert batch.stats["groups_filtered"] == 2 and batch.stats["groups_trained"] == 1
    assert batch.stats["reward"] == pytest.approx(3 / 6)
    (mini_batch,) = batch.per_rank[0]
    assert mini_batch.total_loss_tokens == 3 + 6 == loss_tokens(batch.per_rank[0])
    (row,) = mini_batch.rows
    # Centred, no std: rewards (0, 1) → advantages (−0.5, +0.5) on each response's tokens.
    assert sorted(set(row.advantages[row.loss_mask].tolist())) == [-0.5, 0.5]
    assert row.sampler_logprobs[row.loss_mask].eq(-1.0).all()


def test_all_filtered_gives_an_empty_batch():
    batch = build_step_batch(
        [group(0, [1, 1], [4, 5])], AlgorithmConfig(group_size=2, prompts_per_step=1), 2, 64
    )
    assert batch.per_rank == [[], []] and batch.stats["groups_trained"] == 0


def test_ranks_get_equal_row_counts_and_every_token_once():
    groups = [group(i, [0, 1, 0, 1], [5 + i, 9, 2, 30]) for i in range(5)]
    algo = AlgorithmConfig(group_size=4, prompts_per_step=5, num_mini_batches=1)
    batch = build_step_batch(groups, algo, world_size=2, micro_batch_tokens=48)
    counts = {len(mbs[0].rows) for mbs in batch.per_rank}
    assert len(counts) == 1  # padding rows keep FSDP's collectives in step
    expected = sum(5 + i + 9 + 2 + 30 for i in range(5))
    assert sum(loss_tokens(mbs) for mbs in batch.per_rank) == expected
    assert all(mbs[0].total_loss_tokens == expected for mbs in batch.per_rank)


def test_mini_batches_hold_whole_groups_with_their_own_denominators():
    groups = [group(i, [0, 1], [3, 4]) for i in range(4)]
    batch = build_step_batch(
        groups, AlgorithmConfig(group_size=2, prompts_per_step=4, num_mini_batches=2), 1, 64
    )
    assert [mb.total_loss_tokens for mb in batch.per_rank[0]] == [14, 14]


def test_truncation_penalty_and_masking():
    groups = [group(0, [1, 1], [4, 16], truncated={1})]
    algo = AlgorithmConfig(group_size=2, prompts_per_step=1, truncation_penalty=1.0)
    batch = build_step_batch(groups, algo, 1, 64)
    # Shaped rewards (1, 0): no longer zero-variance; the truncated response gets −0.5.
    row = batch.per_rank[0][0].rows[0]
    assert batch.stats["truncation_rate"] == 0.5
    assert torch.isclose(row.advantages[row.loss_mask].min(), torch.tensor(-0.5))
    masked = build_step_batch(groups, algo.model_copy(update={"mask_truncated": True}), 1, 64)
    assert masked.per_rank[0][0].total_loss_tokens == 4  # the truncated response stays out


def test_prompt_sampler_is_a_seeded_permutation_per_epoch():
    sampler = PromptSampler(5, seed=3)
    first, second = sampler.take(5), sampler.take(5)
    assert sorted(first) == sorted(second) == list(range(5))
    assert first != second or sampler.epoch == 1
    again = PromptSampler(5, seed=3)
    assert again.take(7) == first + second[:2]
    assert PromptSampler(4, seed=0, shuffle=False).take(6) == [0, 1, 2, 3, 0, 1]


def test_a_restored_sampler_continues_identically_even_after_exclusions():
    import json

    for cut in range(0, 25, 3):
        sampler = PromptSampler(10, seed=1)
        sampler.take(cut)
        sampler.exclude(3)  # applies from the next epoch, not to this epoch's order
        sampler.exclude(7)
        state = json.loads(json.dumps(sampler.state()))  # as a checkpoint stores it
        restored = PromptSampler(10, seed=1)
        restored.restore(state)
        assert restored.take(25) == sampler.take(25), cut


def test_per_verifier_reward_averages_only_the_rows_that_verifier_scored():
    math_group = group(0, [1, 0], [3, 3])
    code_group = ScoredGroup(
        PromptGroup(1, (1,), math_group.group.completions), (1.0, 1.0), {"code": (1.0, 1.0)}
    )
    batch = build_step_batch(
        [math_group, code_group], AlgorithmConfig(group_size=2, prompts_per_step=2), 1, 64
    )
    assert batch.stats["reward/math"] == 0.5 and batch.stats["reward/code"] == 1.0
    assert batch.stats["reward"] == 0.75


def test_a_response_spanning_a_weight_update_keeps_its_sampling_time_logprobs():
    # Tokens 0-1 were sampled by version 3, tokens 2-4 by version 4 (an in-flight update):
    # TIS compares the learner with the log-prob each token had when it was drawn.
    spanning = Completion(
        (11, 12, 13, 14, 15), (-0.1, -0.2, -0.3, -0.4, -0.5), "stop", (3, 3, 4, 4, 4)
    )
    plain = Completion((11, 12), (-1.0, -1.0), "stop", (4, 4))
    groups = [ScoredGroup(PromptGroup(0, (1, 2), (spanning, plain)), (1.0, 0.0), {})]
    batch = build_step_batch(groups, AlgorithmConfig(group_size=2, prompts_per_step=1), 1, 64)
    (row,) = batch.per_rank[0][0].rows
    sampled = row.sampler_logprobs[row.loss_mask].tolist()
    assert sampled[:5] == pytest.approx([-0.1, -0.2, -0.3, -0.4, -0.5])


def test_an_unscored_response_stays_out_of_its_group_mean_and_the_loss():
    # Response 2 (length 7) met a verifier timeout and reads 0: no verdict. Over the two scored
    # responses the mean is 0.5 → advantages (+0.5, −0.5); counting the 0 would make the mean
    # 1/3 and push a response down for the verifier's failure.
    groups = [group(0, [1, 0, 0], [4, 5, 7], unscored={2})]
    batch = build_step_batch(groups, AlgorithmConfig(group_size=3, prompts_per_step=1), 1, 64)
    (row,) = batch.per_rank[0][0].rows
    assert sorted(set(row.advantages[row.loss_mask].tolist())) == [-0.5, 0.5]
    assert batch.per_rank[0][0].total_loss_tokens == 4 + 5
    assert batch.stats["responses_masked"] == 1 and batch.stats["reward"] == 0.5


def test_a_group_with_one_scored_response_is_filtered_as_it_has_no_comparison():
    groups = [group(0, [1, 0, 0], [4, 5, 7], unscored={1, 2}), group(1, [0, 1, 1], [2, 2, 2])]
    for filter_zero_variance in (True, False):
        algo = AlgorithmConfig(
            group_size=3, prompts_per_step=2, filter_zero_variance=filter_zero_variance
        )
        batch = build_step_batch(groups, algo, 1, 64)
        assert batch.stats["groups_trained"] == 1
        assert batch.per_rank[0][0].total_loss_tokens == 6
