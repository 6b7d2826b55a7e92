"""OlmoRL policy loss against hand-derived numbers and an independent float64 loop."""

import math
from pathlib import Path

import pytest
import torch

from olmorl.algo import PolicyLossMetrics, olmorl_policy_loss

PROJECT = Path(__file__).resolve().parents[2]

# One micro-batch of 6 tokens out of a step with 8 loss tokens (the other 3 live elsewhere), so
# every expected value below is divided by 8, not by the 5 loss tokens seen here.
# ε_low = 0.2, ε_high = 0.272, TIS cap ρ = 2.0.
#
#  t | A    | ratio | π_old/π_gen | w    | min(ratio·A, clip(ratio)·A)       | loss_t = −w·min
#  0 | +1   | 1.5   | 1.25        | 1.25 | min(1.5, 1.272) = 1.272  (clip hi) | −1.59
#  1 | −1   | 0.5   | 3.0         | 2.0  | min(−0.5, −0.8) = −0.8   (clip lo) | +1.6
#  2 | +0.5 | 1.1   | 0.5         | 0.5  | min(0.55, 0.55) = 0.55             | −0.275
#  3 | −0.5 | 1.5   | 1.0         | 1.0  | min(−0.75, −0.636) = −0.75         | +0.75
#  4 | masked: logprob −inf, A = 2; must contribute nothing and no NaN
#  5 | +1   | 1.0   | 2.5         | 2.0  | min(1, 1) = 1                      | −2.0
#
# Σ loss_t = −1.59 + 1.6 − 0.275 + 0.75 − 2.0 = −1.515;   loss = −1.515 / 8 = −0.189375
ADVANTAGES = [1.0, -1.0, 0.5, -0.5, 2.0, 1.0]
RATIOS = [1.5, 0.5, 1.1, 1.5, 1.0, 1.0]
IS_RATIOS = [1.25, 3.0, 0.5, 1.0, 1.0, 2.5]
MASK = [True, True, True, True, False, True]
TOTAL_LOSS_TOKENS = 8


def hand_example(dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    old = torch.tensor([[-1.0, -2.0, -0.5, -3.0, -1.5, -0.7]], dtype=dtype)
    logprobs = old + torch.tensor([RATIOS], dtype=dtype).log()
    logprobs[0, 4] = -math.inf
    return {
        "logprobs": logprobs.requires_grad_(),
        "old_logprobs": old,
        "sampler_logprobs": old - torch.tensor([IS_RATIOS], dtype=dtype).log(),
        "advantages": torch.tensor([ADVANTAGES], dtype=dtype),
        "loss_mask": torch.tensor([MASK]),
    }


def test_hand_example_loss():
    loss, _ = olmorl_policy_loss(**hand_example(), total_loss_tokens=TOTAL_LOSS_TOKENS)
    assert loss.item() == pytest.approx(-0.189375, abs=1e-12)


def test_hand_example_without_tis():
    # TIS off: w = 1 for every token, whatever π_old/π_gen is.
    #  t0: −1.272;  t1: +0.8;  t2: −0.55;  t3: +0.75;  t5: −1
    # Σ = −1.272 + 0.8 − 0.55 + 0.75 − 1 = −1.272;  / 8 = −0.159
    loss, metrics = olmorl_policy_loss(
        **hand_example(), total_loss_tokens=TOTAL_LOSS_TOKENS, tis_cap=None
    )
    assert loss.item() == pytest.approx(-0.159, abs=1e-12)
    assert metrics.tis_capped_fraction.item() == 0.0


def test_tis_off_in_the_think_7b_recipe_weighs_every_token_once():
    # think_7b sets algo.tis_cap: null; the loss must then be the plain clipped surrogate: the
    # gradient of each unclipped token is −A·ratio / N, with no π_old/π_gen factor.
    from olmorl.config import load_config
    from olmorl.config.rl import RLConfig

    cfg = load_config(RLConfig, PROJECT / "recipes/olmo3/think_7b.yaml", [])
    assert cfg.algo.tis_cap is None
    inputs = hand_example()
    loss, _ = olmorl_policy_loss(
        **inputs, total_loss_tokens=TOTAL_LOSS_TOKENS, tis_cap=cfg.algo.tis_cap
    )
    loss.backward()
    # t0, t1 clipped → 0;  t2: −0.5·1.1;  t3: 0.5·1.5;  t4 masked;  t5: −1·1.   All / 8.
    expected = torch.tensor([[0.0, 0.0, -0.06875, 0.09375, 0.0, -0.125]], dtype=torch.float64)
    torch.testing.assert_close(inputs["logprobs"].grad, expected, rtol=0, atol=1e-12)


def test_hand_example_gradient():
    # d loss_t / d logprob_t = −w·A·ratio where the unclipped branch is active, else 0:
    #   t0, t1 clipped → 0;  t2: −0.5·0.5·1.1 = −0.275;  t3: −1·(−0.5)·1.5 = 0.75;
    #   t4 masked → 0;      t5: −2·1·1 = −2.   All / 8.
    inputs = hand_example()
    inputs["old_logprobs"].requires_grad_()
    inputs["sampler_logprobs"].requires_grad_()
    loss, _ = olmorl_policy_loss(**inputs, total_loss_tokens=TOTAL_LOSS_TOKENS)
    loss.backward()
    expected = torch.tensor([[0.0, 0.0, -0.034375, 0.09375, 0.0, -0.25]], dtype=torch.float64)
    torch.testing.assert_close(inputs["logprobs"].grad, expected, rtol=0, atol=1e-12)
    # π_old and π_gen are constants: neither the ratio's denominator nor the TIS weight has a grad.
    assert inputs["old_logprobs"].grad is None
    assert inputs["sampler_logprobs"].grad is None


def test_hand_example_metrics():
    _, metrics = olmorl_policy_loss(**hand_example(), total_loss_tokens=TOTAL_LOSS_TOKENS)
    # |log π_old − log π_gen| = ln 1.25 + ln 3 + ln 2 + 0 + ln 2.5
    #   = 0.22314355 + 1.09861229 + 0.69314718 + 0 + 0.91629073 = 2.93119375;  / 8
    # k3 = r − 1 − ln r: 0.02685645 + 0.90138771 + 0.19314718 + 0 + 0.58370927 = 1.70510061;  / 8
    expected = {
        "clip_low_fraction": 1 / 8,  # t1
        "clip_high_fraction": 1 / 8,  # t0 (t3 has ratio > 1 + ε_high but A < 0: not clipped)
        "tis_capped_fraction": 2 / 8,  # t1, t5
        "logprob_mismatch": 2.93119375 / 8,
        "mismatch_kl": 1.70510061 / 8,
        "token_fraction": 5 / 8,
    }
    assert metrics.as_dict() == pytest.approx(expected, abs=1e-8)


def reference_loss(logprobs, old, sampler, advantages, mask, total, clip_low, clip_high, cap):
    """Token-by-token float64 loop, written from design §1 independently of the module."""
    total_loss = 0.0
    for b in range(len(mask)):
        for t in range(len(mask[b])):
            if not mask[b][t]:
                continue
            ratio = math.exp(logprobs[b][t] - old[b][t])
            weight = math.exp(old[b][t] - sampler[b][t])
            weight = 1.0 if cap is None else min(weight, cap)
            clipped_ratio = min(max(ratio, 1 - clip_low), 1 + clip_high)
            a = advantages[b][t]
            total_loss += -weight * min(ratio * a, clipped_ratio * a)
    return total_loss / total


@pytest.mark.parametrize("tis_cap", [2.0, None])
def test_random_against_float64_loop(tis_cap):
    gen = torch.Generator().manual_seed(0)
    shape = (4, 9)
    old = -torch.rand(shape, generator=gen, dtype=torch.float64) * 4
    logprobs = old + torch.randn(shape, generator=gen, dtype=torch.float64) * 0.3
    sampler = old + torch.randn(shape, generator=gen, dtype=torch.float64) * 0.8
    advantages = torch.randn(shape, generator=gen, dtype=torch.float64)
    mask = torch.rand(shape, generator=gen) < 0.7
    total = int(mask.sum()) + 5
    args = (logprobs, old, sampler, advantages, mask)
    loss, metrics = olmorl_policy_loss(
        *args, total_loss_tokens=total, clip_low=0.2, clip_high=0.272, tis_cap=tis_cap
    )
    expected = reference_loss(*(x.tolist() for x in args), total, 0.2, 0.272, tis_cap)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    # The random draw must actually exercise both clips and the cap for the check to mean much.
    assert metrics.clip_low_fraction > 0 and metrics.clip_high_fraction > 0
    if tis_cap is not None:
        assert metrics.tis_capped_fraction > 0


def test_micro_batch_losses_and_metrics_sum_to_step_value():
    gen = torch.Generator().manual_seed(1)
    shape = (6, 11)
    old = -torch.rand(shape, generator=gen, dtype=torch.float64) * 3
    logprobs = old + torch.randn(shape, generator=gen, dtype=torch.float64) * 0.3
    sampler = old + torch.randn(shape, generator=gen, dtype=torch.float64) * 0.5
    advantages = torch.randn(shape, generator=gen, dtype=torch.float64)
    mask = torch.rand(shape, generator=gen) < 0.6
    total = int(mask.sum())
    args = (logprobs, old, sampler, advantages, mask)
    whole_loss, whole_metrics = olmorl_policy_loss(*args, total_loss_tokens=total)
    parts = [
        olmorl_policy_loss(*(x[rows] for x in args), total_loss_tokens=total)
        for rows in (slice(0, 1), slice(1, 4), slice(4, 6))
    ]
    assert sum(loss for loss, _ in parts).item() == pytest.approx(whole_loss.item(), rel=1e-12)
    summed: PolicyLossMetrics = sum(metrics for _, metrics in parts)
    assert summed.as_dict() == pytest.approx(whole_metrics.as_dict(), rel=1e-12)
    assert summed.token_fraction.item() == pytest.approx(1.0)


def test_rejects_non_positive_token_count():
    with pytest.raises(ValueError, match="total_loss_tokens"):
        olmorl_policy_loss(**hand_example(), total_loss_tokens=0)
