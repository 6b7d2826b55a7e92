"""Pure algorithm core: advantages, temperature-scaled log-probs, the OlmoRL policy loss, the
preference (DPO) losses, packing.

Functions of tensors only (no ray, vllm or torch.distributed); global quantities such as the
step's loss-token count come in as arguments, and metrics come back ready to be summed.
"""

from olmorl.algo.advantages import group_advantages, zero_variance_groups
from olmorl.algo.logprobs import chunked_token_scores, token_entropy, token_logprobs
from olmorl.algo.loss import PolicyLossMetrics, olmorl_policy_loss
from olmorl.algo.masks import TrajectoryTokens, build_trajectory_tokens
from olmorl.algo.packing import (
    PackedRow,
    document_sums,
    pack_trajectories,
    split_rows,
    unpack,
)
from olmorl.algo.preference import (
    PREFERENCE_LOSS_KINDS,
    PreferenceLossKind,
    preference_loss,
    sequence_logps,
)

__all__ = [
    "PREFERENCE_LOSS_KINDS",
    "PackedRow",
    "PolicyLossMetrics",
    "PreferenceLossKind",
    "TrajectoryTokens",
    "build_trajectory_tokens",
    "chunked_token_scores",
    "document_sums",
    "group_advantages",
    "olmorl_policy_loss",
    "pack_trajectories",
    "preference_loss",
    "sequence_logps",
    "split_rows",
    "token_entropy",
    "token_logprobs",
    "unpack",
    "zero_variance_groups",
]
