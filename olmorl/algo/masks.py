"""Per-token arrays of one trajectory: which tokens enter the loss, with what logprob and advantage.

Only sampled response tokens enter the loss; prompt tokens and tokens the learner appends (an EOS,
say) have no vLLM logprob, so they are masked out rather than given a made-up one (design §1).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class TrajectoryTokens:
    """One prompt + response as aligned 1-D token arrays, ready to pack."""

    input_ids: Tensor
    """Prompt, response and appended token ids, # [T] int64."""
    loss_mask: Tensor
    """True exactly on the sampled response tokens, # [T] bool."""
    sampler_logprobs: Tensor
    """vLLM's (temperature-processed) logprob of each response token, 0 elsewhere, # [T] float32."""
    advantages: Tensor
    """The response's advantage on its response tokens, 0 elsewhere, # [T] float32."""

    def __len__(self) -> int:
        return self.input_ids.numel()


def build_trajectory_tokens(
    prompt_ids: Sequence[int],
    response_ids: Sequence[int],
    response_logprobs: Sequence[float],
    advantage: float,
    appended_ids: Sequence[int] = (),
) -> TrajectoryTokens:
    """Lay out prompt, response and learner-appended tokens; only the response enters the loss."""
    if len(response_logprobs) != len(response_ids):
        raise ValueError(
            f"response_logprobs has {len(response_logprobs)} entries but response_ids has "
            f"{len(response_ids)}: every sampled token needs exactly one vLLM logprob"
        )
    if len(prompt_ids) == 0:
        # Token t is scored from the logits at t-1, so position 0 can never carry a logprob.
        raise ValueError("prompt_ids is empty: the first response token needs a preceding token")
    num_prompt, num_response, num_appended = len(prompt_ids), len(response_ids), len(appended_ids)

    def spread(response_values: Tensor) -> Tensor:
        # Zero on the prompt and the appended tokens, the given values on the response.
        return torch.cat(
            [
                response_values.new_zeros(num_prompt),
                response_values,
                response_values.new_zeros(num_appended),
            ]
        )

    input_ids = torch.cat(
        [
            torch.as_tensor(ids, dtype=torch.long).reshape(-1)
            for ids in (prompt_ids, response_ids, appended_ids)
        ]
    )  # [T]
    return TrajectoryTokens(
        input_ids=input_ids,
        loss_mask=spread(torch.ones(num_response, dtype=torch.bool)),
        sampler_logprobs=spread(
            torch.as_tensor(response_logprobs, dtype=torch.float32).reshape(-1)
        ),
        advantages=spread(torch.full((num_response,), float(advantage), dtype=torch.float32)),
    )
