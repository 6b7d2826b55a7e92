"""The OlmoRL policy loss (design §1): clipped ratio, clip-higher, truncated IS, token mean.

The loss of one micro-batch is divided by the token count of the whole optimizer step, so summing
the losses (and the metrics) of every micro-batch on every rank gives the step's token mean.
"""

from dataclasses import dataclass, fields

import torch
from torch import Tensor


@dataclass(frozen=True)
class PolicyLossMetrics:
    """Loss diagnostics, each a 0-d tensor already divided by the step's loss-token count.

    Summing them over micro-batches and ranks yields the step mean over loss tokens.
    """

    clip_low_fraction: Tensor
    """Share of tokens with A < 0 and ratio < 1 − ε_low (gradient clipped away)."""
    clip_high_fraction: Tensor
    """Share of tokens with A > 0 and ratio > 1 + ε_high (gradient clipped away)."""
    tis_capped_fraction: Tensor
    """Share of tokens whose importance weight π_old/π_gen exceeded the TIS cap."""
    logprob_mismatch: Tensor
    """Mean |log π_old − log π_gen|: the train/inference mismatch."""
    mismatch_kl: Tensor
    """k3 estimate of KL(π_gen ‖ π_old) with r = π_old/π_gen: r − 1 − log r."""
    token_fraction: Tensor
    """This micro-batch's share of the step's loss tokens; the step sum is 1."""

    def __add__(self, other: "PolicyLossMetrics") -> "PolicyLossMetrics":
        return PolicyLossMetrics(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    def __radd__(self, other: int) -> "PolicyLossMetrics":
        # Lets the builtin sum() start from 0.
        if other != 0:
            return NotImplemented
        return self

    def as_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


def olmorl_policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    sampler_logprobs: Tensor,
    advantages: Tensor,
    loss_mask: Tensor,
    total_loss_tokens: int | Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.272,
    tis_cap: float | None = 2.0,
) -> tuple[Tensor, PolicyLossMetrics]:
    """Σ_{masked t} −w_t·min(ratio_t·A_t, clip(ratio_t, 1−ε_low, 1+ε_high)·A_t) / total_loss_tokens.

    All inputs are aligned per token, # [B, T]; logprobs carries the gradient. total_loss_tokens
    is the loss-token count of the whole optimizer step over all micro-batches and ranks.
    Pass tis_cap=None to disable truncated importance sampling (w_t = 1).
    """
    if isinstance(total_loss_tokens, int) and total_loss_tokens <= 0:
        raise ValueError(f"total_loss_tokens must be > 0, got {total_loss_tokens}")
    mask = loss_mask.bool()  # [B, T]
    # π_old and π_gen are constants of the step: detaching them guards against a caller passing
    # an old_logprobs that still carries the graph, which would make ratio ≡ 1 gradient-free.
    old_logprobs = old_logprobs.detach()
    # Zeroing the log-ratios off the mask keeps prompt and padding positions finite, so a
    # stray -inf there cannot turn the masked sum or its gradient into NaN.
    log_ratio = torch.where(mask, logprobs - old_logprobs, 0.0)  # [B, T]
    log_is = torch.where(mask, old_logprobs - sampler_logprobs.detach(), 0.0)  # [B, T]
    ratio = torch.exp(log_ratio)  # [B, T]
    is_ratio = torch.exp(log_is)  # [B, T], π_old / π_gen

    # Truncated importance sampling corrects for sampling from π_gen (vLLM) rather than π_old
    # (Yao et al. 2025, "Your efficient RL framework secretly brings you off-policy RL training").
    # Off means w_t = 1, not the raw ratio: uncapped, one stale token could outweigh a sequence.
    tis_weight = (
        torch.ones_like(is_ratio) if tis_cap is None else is_ratio.clamp(max=tis_cap)
    )  # [B, T], no grad

    # PPO clipped surrogate (Schulman et al. 2017, arXiv 1707.06347, eq. 7) with DAPO's
    # decoupled clip-higher bounds (arXiv 2503.14476, eq. 10).
    unclipped = ratio * advantages  # [B, T]
    clipped = ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * advantages  # [B, T]
    per_token = -tis_weight * torch.minimum(unclipped, clipped)  # [B, T]
    loss = torch.where(mask, per_token, 0.0).sum() / total_loss_tokens

    with torch.no_grad():

        def share(values: Tensor) -> Tensor:
            return torch.where(mask, values.to(per_token.dtype), 0.0).sum() / total_loss_tokens

        metrics = PolicyLossMetrics(
            clip_low_fraction=share((advantages < 0) & (ratio < 1.0 - clip_low)),
            clip_high_fraction=share((advantages > 0) & (ratio > 1.0 + clip_high)),
            tis_capped_fraction=share(
                torch.zeros_like(mask) if tis_cap is None else is_ratio > tis_cap
            ),
            logprob_mismatch=share(log_is.abs()),
            mismatch_kl=share(is_ratio - 1.0 - log_is),
            token_fraction=share(mask),
        )
    return loss, metrics
