"""Group-relative advantages for OlmoRL (design §1).

Rewards of one prompt's G samples form a group; each response's advantage is its reward minus the
group mean, the same scalar for every token of that response.
"""

from torch import Tensor


def group_advantages(rewards: Tensor, normalize_std: bool = False, eps: float = 1e-6) -> Tensor:
    """Advantages A_i = r_i - mean_group(r), optionally divided by the group std.

    Olmo 3 centres only (arXiv 2512.13961, Table 49: "centred advantages"); dividing by the std
    is the original GRPO (arXiv 2402.03300, eq. 3) and is off by default.
    """
    if rewards.ndim != 2:
        raise ValueError(
            f"rewards must be [num_groups, group_size], got shape {tuple(rewards.shape)}"
        )
    if not rewards.is_floating_point():
        rewards = rewards.float()
    centred = rewards - rewards.mean(dim=1, keepdim=True)  # [num_groups, group_size]
    if not normalize_std:
        return centred
    # Population std (correction=0) as open-instruct's numpy std; eps keeps equal groups at A = 0.
    std = rewards.std(dim=1, keepdim=True, correction=0)  # [num_groups, 1]
    return centred / (std + eps)


def zero_variance_groups(rewards: Tensor, atol: float = 1e-6) -> Tensor:
    """True for groups whose rewards are all equal (within atol): no gradient, to be dropped."""
    if rewards.ndim != 2:
        raise ValueError(
            f"rewards must be [num_groups, group_size], got shape {tuple(rewards.shape)}"
        )
    spread = rewards.amax(dim=1) - rewards.amin(dim=1)  # [num_groups]
    return spread <= atol
