"""Per-token log-probabilities and entropies of the temperature-scaled policy.

Outputs are aligned with token positions: out[:, t] scores input_ids[:, t] under the logits of
position t-1, and out[:, 0] = 0, so a loss mask indexes them by token position directly.
`token_logprobs` and `token_entropy` take full logits [B, T, V]; the learner uses
`chunked_token_scores`, which takes the final hidden states and the LM head instead and holds
logits for a chunk of positions at a time (at T ≈ 36K, V ≈ 100K one float32 [T, V] is 15 GB).
"""

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_temperature(temperature: float) -> None:
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _scaled_next_token_logits(logits: Tensor, temperature: float) -> Tensor:
    # vLLM's processed logprobs are of softmax(logits / temperature); the learner must score the
    # same distribution or the TIS weights and ratios carry a silent bias (design §1).
    _check_temperature(temperature)
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


def chunked_token_scores(
    hidden: Tensor, weight: Tensor, input_ids: Tensor, temperature: float, chunk_tokens: int
) -> tuple[Tensor, Tensor, Tensor]:
    """`token_logprobs`, `token_entropy` and log Z (the logsumexp of the scaled logits, what
    z-loss penalises) of the logits hidden @ weight.T, [B, T] each; all three 0 at t = 0.

    hidden [B, T, H] are the final hidden states and weight [V, H] the LM head (Olmo 3 applies no
    bias or scaling after it). Logits exist for at most `chunk_tokens` positions at a time, in
    forward and backward alike. Gradients reach `hidden` and `weight` through the log-probs and
    log Z; the entropy is a metric and carries none.
    """
    _check_temperature(temperature)
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    batch, length, width = hidden.shape
    rows = hidden[:, :-1].reshape(-1, width)  # [B·(T-1), H], a view when B = 1
    targets = input_ids[:, 1:].reshape(-1)  # [B·(T-1)]
    scores = _ChunkedHead.apply(rows, weight, targets, temperature, chunk_tokens)
    shape = (batch, length - 1)
    logprobs, entropy, log_z = (F.pad(score.view(shape), (1, 0)) for score in scores)  # [B, T]
    return logprobs, entropy, log_z


def _chunk_logits(rows: Tensor, weight: Tensor, temperature: float) -> Tensor:
    # The matmul runs in the model's dtype, as the LM head would; the softmax in float32 (float64
    # stays float64), as token_logprobs does.
    logits = rows @ weight.T  # [C, V]
    return logits.to(torch.promote_types(logits.dtype, torch.float32)).div_(temperature)


class _ChunkedHead(torch.autograd.Function):
    """log p(target), entropy and log Z under softmax(rows @ weight.T / temperature), chunk by
    chunk.

    Forward keeps only log Z per row; backward recomputes each chunk's logits from the saved rows
    and weight (as fused linear cross-entropy kernels do), so both passes hold a few [chunk, V]
    tensors whatever the number of rows.
    """

    @staticmethod
    def forward(ctx, rows, weight, targets, temperature, chunk):  # [N, H], [V, H], [N]
        dtype = torch.promote_types(rows.dtype, torch.float32)
        logprobs = rows.new_empty(len(rows), dtype=dtype)  # [N]
        entropy, log_z = torch.empty_like(logprobs), torch.empty_like(logprobs)  # [N], [N]
        for start in range(0, len(rows), chunk):
            part = slice(start, start + chunk)
            log_p = _chunk_logits(rows[part], weight, temperature)  # [C, V]
            log_z[part] = torch.logsumexp(log_p, dim=-1)
            log_p -= log_z[part, None]  # log_softmax, in place
            logprobs[part] = log_p.gather(-1, targets[part, None]).squeeze(-1)
            # −Σ p·log p from the normalised log-probs (see token_entropy on cancellation).
            entropy[part] = -(log_p.exp() * log_p).sum(dim=-1)
        ctx.save_for_backward(rows, weight, targets, log_z)
        ctx.temperature, ctx.chunk = temperature, chunk
        ctx.mark_non_differentiable(entropy)
        return logprobs, entropy, log_z.clone()  # a copy: the saved log_z must stay unchanged

    @staticmethod
    def backward(ctx, grad_logprobs, _grad_entropy, grad_log_z):
        rows, weight, targets, log_z = ctx.saved_tensors
        grad_rows = torch.empty_like(rows)  # [N, H]
        # Accumulated in float32 across chunks (each chunk's product is in the model's dtype).
        grad_weight = torch.zeros_like(weight, dtype=log_z.dtype)  # [V, H]
        for start in range(0, len(rows), ctx.chunk):
            part = slice(start, start + ctx.chunk)
            g = grad_logprobs[part, None]  # [C, 1]
            # d log p_y / dz = onehot(y) − softmax(z) and d log Z / dz = softmax(z), with
            # z = logits / temperature.
            g_softmax = grad_log_z[part, None] - g  # [C, 1]
            logits = _chunk_logits(rows[part], weight, ctx.temperature)  # [C, V]
            grad_z = logits.sub_(log_z[part, None]).exp_().mul_(g_softmax)  # [C, V], in place
            grad_z.scatter_add_(-1, targets[part, None], g)
            grad_logits = grad_z.div_(ctx.temperature).to(rows.dtype)  # [C, V]
            grad_rows[part] = grad_logits @ weight
            grad_weight += grad_logits.T @ rows[part]
        return grad_rows, grad_weight.to(weight.dtype), None, None, None
