"""From scored groups to the learners' mini-batches: shaping, advantages, filtering, packing.

Pure: no Ray, no vLLM. The step's statistics (reward, length, truncation, filtered groups) come
back with the batch for the metrics log.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from olmorl.algo import (
    build_trajectory_tokens,
    group_advantages,
    pack_trajectories,
    zero_variance_groups,
)
from olmorl.config import AlgorithmConfig
from olmorl.learner.batch import MiniBatch, shard_rows
from olmorl.rl.types import ScoredGroup


@dataclass(frozen=True)
class StepBatch:
    per_rank: list[list[MiniBatch]]
    """per_rank[r] is rank r's list of mini-batches, one per optimizer step; empty if all filtered."""
    stats: dict[str, float]
    """Step statistics over every sampled group, before filtering."""


def build_step_batch(
    groups: Sequence[ScoredGroup], algo: AlgorithmConfig, world_size: int, micro_batch_tokens: int
) -> StepBatch:
    completions = [c for g in groups for c in g.group.completions]
    shaped, scored = _shaped_rewards(groups, algo)  # [G, n] each
    advantages = group_advantages(
        shaped, normalize_std=algo.normalize_advantage_std, scored=scored
    )  # [G, n]
    degenerate = (
        zero_variance_groups(shaped, scored=scored)
        if algo.filter_zero_variance
        # A group with one scored response has nothing to be compared with, filter or not.
        else scored.sum(dim=1) < 2
    )
    kept = [i for i in range(len(groups)) if not degenerate[i]]
    stats = {
        **reward_stats(groups),
        "response_tokens": sum(len(c.token_ids) for c in completions) / len(completions),
        "truncation_rate": sum(c.truncated for c in completions) / len(completions),
        "responses_masked": float((~scored).sum()),
        "groups_filtered": float(degenerate.sum()),
        "groups_trained": float(len(kept)),
    }
    if not kept:
        return StepBatch(per_rank=[[] for _ in range(world_size)], stats=stats)
    num_mini = min(algo.num_mini_batches, len(kept))
    per_rank: list[list[MiniBatch]] = [[] for _ in range(world_size)]
    for chunk in _split_evenly(kept, num_mini):
        trajectories = [
            build_trajectory_tokens(
                groups[g].group.prompt_ids, c.token_ids, c.logprobs, float(advantages[g, j])
            )
            for g in chunk
            for j, c in enumerate(groups[g].group.completions)
            if scored[g, j] and not (algo.mask_truncated and c.truncated)
        ]
        if not trajectories:
            continue
        for rank, mini_batch in enumerate(
            shard_rows(pack_trajectories(trajectories, micro_batch_tokens), world_size)
        ):
            per_rank[rank].append(mini_batch)
    stats["loss_tokens"] = float(sum(mb.total_loss_tokens for mb in per_rank[0]))
    return StepBatch(per_rank=per_rank, stats=stats)


def is_degenerate(group: ScoredGroup, algo: AlgorithmConfig) -> bool:
    """Whether the group's scored responses all have the same shaped reward (or are fewer than
    two), so it carries no gradient."""
    shaped, scored = _shaped_rewards([group], algo)
    return bool(zero_variance_groups(shaped, scored=scored)[0])


def _shaped_rewards(groups: Sequence[ScoredGroup], algo: AlgorithmConfig) -> tuple[Tensor, Tensor]:
    """The rewards with the truncation penalty, and which responses were scored; # [G, n] each."""
    rewards = torch.tensor([g.rewards for g in groups], dtype=torch.float64)
    truncated = torch.tensor([[c.truncated for c in g.group.completions] for g in groups])
    scored = torch.tensor([g.scored for g in groups])
    return rewards - algo.truncation_penalty * truncated, scored


def _split_evenly(items: list[int], parts: int) -> list[list[int]]:
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for part in range(parts):
        end = start + size + (part < extra)
        out.append(items[start:end])
        start = end
    return out


def reward_stats(groups: Sequence[ScoredGroup]) -> dict[str, float]:
    """`reward`: the mean over every scored response; `reward/<name>`: the mean score over the
    scored responses that verifier scored, not all of them. Empty when nothing was scored."""
    scores: dict[str, list[float]] = {
        "reward": [r for g in groups for r, ok in zip(g.rewards, g.scored) if ok]
    }
    for g in groups:
        for name, values in g.verifier_scores.items():
            scores.setdefault(f"reward/{name}", []).extend(
                v for v, ok in zip(values, g.scored) if ok
            )
    return {key: sum(v) / len(v) for key, v in sorted(scores.items()) if v}
