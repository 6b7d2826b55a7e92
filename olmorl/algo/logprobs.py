"""Per-token log-probabilities and entropies of the temperature-scaled policy.

Outputs are aligned with token positions: out[:, t] scores input_ids[:, t] under the logits of
position t-1, and out[:, 0] = 0, so a loss mask indexes them by token position directly.
"""

import torch
import torch.nn.functional as F
from torch import Tensor


def _scaled_next_token_logits(logits: Tensor, temperature: float) -> Tensor:
    # vLLM's processed logprobs are of softmax(logits / temperature); the learner must score the
    # same distribution or the TIS weights and ratios carry a silent bias (design §1).
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return logits[:, :-1].float() / temperature  # [B, T-1, V], the one float32 copy


def token_logprobs(logits: Tensor, input_ids: Tensor, temperature: float) -> Tensor:
    """log softmax(logits[:, t-1] / temperature)[input_ids[:, t]] at [:, t]; 0 at t = 0. # [B, T]"""
    scaled = _scaled_next_token_logits(logits, temperature)  # [B, T-1, V]
    # gather − logsumexp avoids a second [B, T-1, V] tensor that log_softmax would allocate.
    picked = scaled.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # [B, T-1]
    logprobs = picked - torch.logsumexp(scaled, dim=-1)  # [B, T-1]
    return F.pad(logprobs, (1, 0))  # [B, T]


def token_entropy(logits: Tensor, temperature: float) -> Tensor:
    """Entropy of the temperature-scaled distribution predicting token t at [:, t]; 0 at t = 0."""
    scaled = _scaled_next_token_logits(logits, temperature)  # [B, T-1, V]
    # Via log_softmax, not log Z − Σ p·z: that difference of two large terms loses the small
    # entropies of peaked distributions to cancellation.
    log_probs = torch.log_softmax(scaled, dim=-1)  # [B, T-1, V]
    entropy = -(log_probs.exp() * log_probs).sum(dim=-1)  # [B, T-1]
    return F.pad(entropy, (1, 0))  # [B, T]
