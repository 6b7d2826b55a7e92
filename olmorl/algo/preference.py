"""Preference losses for the DPO trainer: DPO, length-normalised DPO ("dpo_norm") and SimPO.

Inputs are per-sequence *summed* response log-probs and response lengths; each kind normalises
them itself, so callers never pre-average. Semantics follow open-instruct's `dpo_utils` (Olmo 3
DPO uses `dpo_norm` with β = 5, design §3).
"""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

PreferenceLossKind = Literal["dpo", "dpo_norm", "simpo"]
PREFERENCE_LOSS_KINDS: tuple[PreferenceLossKind, ...] = ("dpo", "dpo_norm", "simpo")

METRIC_NAMES = (
    "loss",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margin",
    "rewards/accuracy",
    "logps/chosen",
    "logps/rejected",
)


def sequence_logps(token_logprobs: Tensor, response_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Summed log-probs of the response tokens and their count, per sequence. # [B], [B]

    `token_logprobs` and `response_mask` are aligned per token position, # [B, T], as
    `olmorl.algo.token_logprobs` returns them; masked-out positions may hold anything, even -inf.
    """
    mask = response_mask.bool()  # [B, T]
    summed = torch.where(mask, token_logprobs, 0.0).sum(dim=-1)  # [B]
    return summed, mask.sum(dim=-1)


def preference_loss(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor | None,
    ref_rejected_logps: Tensor | None,
    chosen_lengths: Tensor | None,
    rejected_lengths: Tensor | None,
    kind: PreferenceLossKind,
    beta: float,
    gamma: float = 0.0,
    total_pairs: int | Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Σ_pairs −log σ(z) / total_pairs, and the metrics, for one micro-batch of B pairs.

    Every tensor is # [B]. The log-prob arguments are *sums* over each sequence's response tokens
    (prompt and padding excluded), under the policy (`chosen_logps`, `rejected_logps`, which carry
    the gradient) and the frozen reference (`ref_*`, detached here). Lengths count the response
    tokens that were summed. Write s(y) for a summed log-prob and ℓ(y) = s(y) / |y| for the
    per-token average; then with the pair's chosen y_w and rejected y_l:

    - `dpo` (Rafailov et al. 2023, arXiv 2305.18290, eq. 7), summed, lengths unused:
      r(y) = β·(s_π(y) − s_ref(y)),  z = r(y_w) − r(y_l).
    - `dpo_norm` (open-instruct; Olmo 3 DPO), both policy and reference averaged per token:
      r(y) = β·(ℓ_π(y) − ℓ_ref(y)),  z = r(y_w) − r(y_l).
    - `simpo` (Meng et al. 2024, arXiv 2405.14734, eq. 6), reference-free (ref_* ignored, may be
      None), with the target margin γ in reward units:
      r(y) = β·ℓ_π(y),  z = r(y_w) − r(y_l) − γ.
      open-instruct's `gamma_beta_ratio` is γ/β.

    `total_pairs` is the pair count of the whole optimizer step over all micro-batches and ranks,
    default B (a plain batch mean). The loss and every metric are divided by it, so summing them
    over micro-batches and ranks gives the step mean. Metrics (detached 0-d tensors): `loss`;
    `rewards/chosen` and `rewards/rejected` (mean r above); `rewards/margin` (mean
    r(y_w) − r(y_l), without γ); `rewards/accuracy` (share of pairs with that margin > 0);
    `logps/chosen` and `logps/rejected` (mean policy log-prob in the kind's normalisation: s for
    `dpo`, ℓ for `dpo_norm` and `simpo`).
    """
    if kind not in PREFERENCE_LOSS_KINDS:
        raise ValueError(f"kind must be one of {', '.join(PREFERENCE_LOSS_KINDS)}, got {kind!r}")
    if kind != "simpo" and gamma != 0.0:
        raise ValueError(f"gamma (the SimPO margin) is only used by kind 'simpo', not {kind!r}")
    if isinstance(total_pairs, int) and total_pairs <= 0:
        raise ValueError(f"total_pairs must be > 0, got {total_pairs}")
    if total_pairs is None:
        total_pairs = chosen_logps.shape[0]
    chosen_divisor = _divisor(chosen_lengths, "chosen_lengths", kind, chosen_logps)  # [B] or 1
    rejected_divisor = _divisor(rejected_lengths, "rejected_lengths", kind, rejected_logps)

    policy_chosen = chosen_logps / chosen_divisor  # [B], s or ℓ
    policy_rejected = rejected_logps / rejected_divisor  # [B]
    if kind == "simpo":
        chosen_rewards = beta * policy_chosen  # [B]
        rejected_rewards = beta * policy_rejected  # [B]
        margin_target = gamma
    else:
        if ref_chosen_logps is None or ref_rejected_logps is None:
            raise ValueError(f"kind {kind!r} needs the reference log-probs")
        # The reference is a constant of training; detaching guards against a caller whose
        # reference forward still carries a graph.
        ref_chosen = ref_chosen_logps.detach() / chosen_divisor  # [B]
        ref_rejected = ref_rejected_logps.detach() / rejected_divisor  # [B]
        chosen_rewards = beta * (policy_chosen - ref_chosen)  # [B]
        rejected_rewards = beta * (policy_rejected - ref_rejected)  # [B]
        margin_target = 0.0
    margins = chosen_rewards - rejected_rewards  # [B]
    # −log σ(z) = softplus(−z), stable for large |z| (β = 5 on per-token averages is mild, but
    # β on summed log-probs of long sequences is not).
    loss = F.logsigmoid(margins - margin_target).neg().sum() / total_pairs

    with torch.no_grad():

        def share(values: Tensor) -> Tensor:
            return values.to(loss.dtype).sum() / total_pairs

        metrics = {
            "loss": loss.detach(),
            "rewards/chosen": share(chosen_rewards),
            "rewards/rejected": share(rejected_rewards),
            "rewards/margin": share(margins),
            "rewards/accuracy": share(margins > 0),
            "logps/chosen": share(policy_chosen),
            "logps/rejected": share(policy_rejected),
        }
    return loss, metrics


def _divisor(
    lengths: Tensor | None, name: str, kind: PreferenceLossKind, like: Tensor
) -> Tensor | float:
    """1 for `dpo` (summed log-probs); the response lengths for the per-token-average kinds."""
    if kind == "dpo":
        return 1.0
    if lengths is None:
        raise ValueError(f"kind {kind!r} needs {name}")
    # A response truncated to nothing would divide by zero; the data pipeline must drop it.
    # (One host sync per micro-batch, negligible next to the forward passes.)
    if bool((lengths <= 0).any()):
        raise ValueError(f"{name} must all be > 0, got {lengths.tolist()}")
    return lengths.to(like.dtype)
