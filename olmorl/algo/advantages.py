"""Group-relative advantages for OlmoRL (design §1).

Rewards of one prompt's G samples form a group; each response's advantage is its reward minus the
group mean, the same scalar for every token of that response. A response the verifiers could not
score (`scored` False: a timeout, a crash, an unreachable judge) has no reward: it stays out of its
group's mean and gets advantage 0, and the batch leaves it out of the loss.
"""

import torch
from torch import Tensor


def group_advantages(
    rewards: Tensor, normalize_std: bool = False, eps: float = 1e-6, scored: Tensor | None = None
) -> Tensor:
    """Advantages A_i = r_i - mean_group(r), optionally divided by the group std; both statistics
    over the group's scored responses only (`scored`, # [num_groups, group_size], default all).

    Olmo 3 centres only (arXiv 2512.13961, Table 49: "centred advantages"); dividing by the std
    is the original GRPO (arXiv 2402.03300, eq. 3) and is off by default.
    """
    _check_shape(rewards)
    if not rewards.is_floating_point():
        rewards = rewards.float()
    scored = _scored(rewards, scored)
    count = scored.sum(dim=1, keepdim=True).clamp(min=1)  # [num_groups, 1]
    mean = torch.where(scored, rewards, 0.0).sum(dim=1, keepdim=True) / count
    centred = torch.where(scored, rewards - mean, 0.0)  # [num_groups, group_size]
    if not normalize_std:
        return centred
    # Population std (correction=0) as open-instruct's numpy std; eps keeps equal groups at A = 0.
    std = (centred.square().sum(dim=1, keepdim=True) / count).sqrt()  # [num_groups, 1]
    return centred / (std + eps)


def zero_variance_groups(
    rewards: Tensor, atol: float = 1e-6, scored: Tensor | None = None
) -> Tensor:
    """True for groups whose scored rewards are all equal (within atol), or that hold fewer than
    two scored responses: no gradient, to be dropped."""
    _check_shape(rewards)
    scored = _scored(rewards, scored)
    high = torch.where(scored, rewards, -torch.inf).amax(dim=1)  # [num_groups]
    low = torch.where(scored, rewards, torch.inf).amin(dim=1)  # [num_groups]
    return (scored.sum(dim=1) < 2) | (high - low <= atol)


def _check_shape(rewards: Tensor) -> None:
    if rewards.ndim != 2:
        raise ValueError(
            f"rewards must be [num_groups, group_size], got shape {tuple(rewards.shape)}"
        )


def _scored(rewards: Tensor, scored: Tensor | None) -> Tensor:
    if scored is None:
        return torch.ones_like(rewards, dtype=torch.bool)
    if scored.shape != rewards.shape:
        raise ValueError(f"scored has shape {tuple(scored.shape)}, rewards {tuple(rewards.shape)}")
    return scored.bool()
