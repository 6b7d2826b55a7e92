"""The learner's forward: per-token log-probs and entropies from the hidden states, never full logits.

`use_chunked_head(model, chunk_tokens)` makes a Hugging Face causal LM return `TokenScores`: the
decoder runs as usual, then the LM head is applied a chunk of positions at a time
(`olmorl.algo.chunked_token_scores`). It stays inside the model's own forward, so the strategies
treat the head as part of the model: FSDP2's root gathers its weight for the forward and again
for the backward, and DeepSpeedPolicy registers it with ZeRO-3 as an external parameter of the model.
"""

from typing import NamedTuple

from torch import Tensor, nn

from olmorl.algo import chunked_token_scores


class TokenScores(NamedTuple):
    """What the learner's forward returns (a tuple: the strategies' output hooks traverse it)."""

    logprobs: Tensor
    """log p(input_ids[:, t] | input_ids[:, <t]) at the given temperature, [B, T]; 0 at t = 0."""
    entropy: Tensor
    """Entropy of the distribution predicting token t, [B, T], without gradient; 0 at t = 0."""
    log_z: Tensor
    """logsumexp of the logits predicting token t, [B, T], with gradient (z-loss); 0 at t = 0."""


def use_chunked_head(model: nn.Module, chunk_tokens: int) -> nn.Module:
    """Makes `model(input_ids=..., temperature=..., **inputs)` return `TokenScores`; returns it.

    Only for models whose logits are exactly `lm_head(model.model(...).last_hidden_state)` (Olmo
    2 and 3: no bias, scaling or soft-capping after the head).
    """
    if model.lm_head.bias is not None:
        raise ValueError("the chunked LM head supports a head without bias only")

    def forward(input_ids: Tensor, temperature: float = 1.0, **inputs) -> TokenScores:
        hidden = model.model(input_ids=input_ids, **inputs).last_hidden_state  # [B, T, H]
        # The weight is read per call: FSDP2 swaps in the gathered parameter during forward.
        scores = chunked_token_scores(
            hidden, model.lm_head.weight, input_ids, temperature, chunk_tokens
        )
        return TokenScores(*scores)

    model.forward = forward
    return model
