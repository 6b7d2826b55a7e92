"""Group advantages and zero-variance detection against hand-written numbers."""

import math

import torch

from olmorl.algo import group_advantages, zero_variance_groups

REWARDS = torch.tensor(
    [
        [1.0, 0.0, 0.0, 1.0],  # mean 0.5
        [1.0, 1.0, 1.0, 1.0],  # all equal: no signal
        [0.5, 0.0, 0.0, 0.0],  # mean 0.125
    ]
)


def test_centred_on_group_mean():
    expected = torch.tensor(
        [
            [0.5, -0.5, -0.5, 0.5],
            [0.0, 0.0, 0.0, 0.0],
            [0.375, -0.125, -0.125, -0.125],
        ]
    )
    torch.testing.assert_close(group_advantages(REWARDS), expected)


def test_std_normalisation_is_opt_in():
    # Group 0: population std 0.5 → ±1.  Group 1: std 0 → 0 / eps = 0.
    # Group 2: var = (0.375² + 3·0.125²) / 4 = 0.1875 / 4 = 0.046875, std = √3 / 8 = 0.21651;
    #          0.375 / (√3/8) = √3,  −0.125 / (√3/8) = −1/√3.
    s3 = math.sqrt(3)
    expected = torch.tensor(
        [
            [1.0, -1.0, -1.0, 1.0],
            [0.0, 0.0, 0.0, 0.0],
            [s3, -1 / s3, -1 / s3, -1 / s3],
        ]
    )
    torch.testing.assert_close(
        group_advantages(REWARDS, normalize_std=True), expected, atol=1e-4, rtol=1e-4
    )


def test_integer_rewards_are_accepted():
    advantages = group_advantages(torch.tensor([[1, 0, 0, 0]]))
    torch.testing.assert_close(advantages, torch.tensor([[0.75, -0.25, -0.25, -0.25]]))


def test_zero_variance_groups():
    assert zero_variance_groups(REWARDS).tolist() == [False, True, False]
    # 0.1 + 0.2 != 0.3 in floating point; that group still has no signal.
    noisy = torch.tensor([[0.3, 0.1 + 0.2, 0.3], [0.0, 0.0, 1e-3]], dtype=torch.float64)
    assert zero_variance_groups(noisy).tolist() == [True, False]
