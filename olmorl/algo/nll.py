"""The SFT and pretraining loss: negative log-likelihood of the trained tokens, normalised over the
whole step, and pretraining's optional z-loss.

Dividing by the step's trained-token count across every micro-batch and rank (not by each
micro-batch's own count) makes the summed gradient that of one big batch, however the step is
split (design §5: per-micro-batch normalisation weights short rows up).
"""

from torch import Tensor


def masked_nll_loss(
    logprobs: Tensor, loss_mask: Tensor, total_loss_tokens: int
) -> tuple[Tensor, dict[str, float]]:
    """Σ −log p(token) over `loss_mask` tokens / `total_loss_tokens`, and metrics to be summed.

    logprobs [B, T] are the token log-probs at temperature 1, aligned by position as
    `token_logprobs` and `chunked_token_scores` return them; loss_mask [B, T] marks the trained
    tokens (token t is predicted from position t−1, so t = 0 is never trained). Metrics: `loss`
    (this part of the step's mean NLL) and `tokens` (this part's trained-token count).
    """
    if total_loss_tokens <= 0:
        raise ValueError(f"total_loss_tokens must be positive, got {total_loss_tokens}")
    if loss_mask[:, 0].any():
        raise ValueError("loss_mask marks position 0, which no logits predict")
    loss = -(logprobs * loss_mask).sum() / total_loss_tokens
    return loss, {"loss": float(loss.detach()), "tokens": float(loss_mask.sum())}


def masked_z_loss(
    log_z: Tensor, loss_mask: Tensor, total_loss_tokens: int, weight: float
) -> tuple[Tensor, dict[str, float]]:
    """weight · Σ (log Z)² over `loss_mask` tokens / `total_loss_tokens` (PaLM's z-loss, which
    keeps the softmax normaliser near 1 and the logits from drifting in low precision), and its
    metric `z_loss`: this part of the step's mean (log Z)², unweighted.

    log_z [B, T] is the logsumexp of the logits predicting each token, aligned as the log-probs.
    """
    mean_square = (log_z.square() * loss_mask).sum() / total_loss_tokens
    return weight * mean_square, {"z_loss": float(mean_square.detach())}
