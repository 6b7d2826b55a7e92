"""The chunked LM head: the same log-probs, entropies and gradients as full logits, in memory that
does not grow with the sequence length."""

import pytest
import torch
from live_bytes import PeakLiveBytes

from olmorl.algo import chunked_token_scores, token_entropy, token_logprobs


def random_inputs(length: int, vocab: int, width: int, batch: int = 1, dtype=torch.float64):
    gen = torch.Generator().manual_seed(length)
    hidden = torch.randn(batch, length, width, generator=gen, dtype=dtype).requires_grad_()
    weight = torch.randn(vocab, width, generator=gen, dtype=dtype).requires_grad_()
    input_ids = torch.randint(0, vocab, (batch, length), generator=gen)
    upstream = torch.randn(batch, length, generator=gen, dtype=dtype)  # d loss / d logprobs
    return hidden, weight, input_ids, upstream


def reference_scores(hidden, weight, input_ids, temperature):
    """log_softmax of the full float64 logits: log p of the next token, and −Σ p·log p."""
    log_p = torch.log_softmax(hidden[:, :-1] @ weight.T / temperature, dim=-1)  # [B, T-1, V]
    picked = log_p.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    pad = torch.nn.functional.pad
    return pad(picked, (1, 0)), pad(entropy, (1, 0))


# T − 1 = 12 scored positions per row: chunks of 1, 5 (not dividing), 12 (one) and 64 (larger).
@pytest.mark.parametrize("chunk", [1, 5, 12, 64])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_matches_full_logits_in_float64_with_gradients(chunk, temperature):
    hidden, weight, input_ids, upstream = random_inputs(13, vocab=37, width=8, batch=2)
    logprobs, entropy, _ = chunked_token_scores(hidden, weight, input_ids, temperature, chunk)
    ref_logprobs, ref_entropy = reference_scores(hidden, weight, input_ids, temperature)
    assert logprobs.shape == entropy.shape == (2, 13) and logprobs.dtype == torch.float64
    torch.testing.assert_close(logprobs, ref_logprobs, rtol=0, atol=1e-12)
    torch.testing.assert_close(entropy, ref_entropy, rtol=0, atol=1e-12)
    assert not entropy.requires_grad  # a metric: no gradient, no graph

    grads = torch.autograd.grad((logprobs * upstream).sum(), (hidden, weight))
    ref_grads = torch.autograd.grad((ref_logprobs * upstream).sum(), (hidden, weight))
    for grad, ref_grad in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-12)
    assert grads[0][:, -1].abs().sum() == 0  # the last position predicts nothing


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_log_z_and_its_gradient_match_logsumexp_in_float64(temperature):
    """z-loss trains log Z² beside the log-probs: both gradients, summed, as full logits give."""
    hidden, weight, input_ids, upstream = random_inputs(13, vocab=37, width=8, batch=2)
    logprobs, _, log_z = chunked_token_scores(hidden, weight, input_ids, temperature, 5)
    ref_logprobs, _ = reference_scores(hidden, weight, input_ids, temperature)
    ref_log_z = torch.logsumexp(hidden[:, :-1] @ weight.T / temperature, dim=-1)
    ref_log_z = torch.nn.functional.pad(ref_log_z, (1, 0))
    torch.testing.assert_close(log_z, ref_log_z, rtol=0, atol=1e-12)

    def loss(lp, lz):
        return (lp * upstream).sum() + 1e-2 * (lz**2).sum()

    grads = torch.autograd.grad(loss(logprobs, log_z), (hidden, weight))
    ref_grads = torch.autograd.grad(loss(ref_logprobs, ref_log_z), (hidden, weight))
    for grad, ref_grad in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-12)


def test_float32_matches_the_logits_path():
    hidden, weight, input_ids, _ = random_inputs(20, vocab=50, width=16, dtype=torch.float32)
    logits = hidden @ weight.T
    logprobs, entropy, _ = chunked_token_scores(hidden, weight, input_ids, 0.8, 6)
    torch.testing.assert_close(logprobs, token_logprobs(logits, input_ids, 0.8))
    torch.testing.assert_close(entropy, token_entropy(logits, 0.8))


def test_bad_arguments_are_refused():
    hidden, weight, input_ids, _ = random_inputs(4, vocab=5, width=3)
    with pytest.raises(ValueError, match="temperature"):
        chunked_token_scores(hidden, weight, input_ids, 0.0, 2)
    with pytest.raises(ValueError, match="chunk_tokens"):
        chunked_token_scores(hidden, weight, input_ids, 1.0, 0)


VOCAB, WIDTH, CHUNK = 4096, 32, 128


def peak_bytes(length: int, chunked: bool) -> int:
    """Peak bytes of one forward and backward as the learner runs it: log-probs with gradient,
    entropy as a metric."""
    hidden, weight, input_ids, upstream = random_inputs(length, VOCAB, WIDTH, dtype=torch.float32)
    with PeakLiveBytes() as memory:
        if chunked:
            logprobs, _entropy, _ = chunked_token_scores(hidden, weight, input_ids, 0.7, CHUNK)
        else:
            logits = hidden @ weight.T  # [1, T, V]
            logprobs = token_logprobs(logits, input_ids, 0.7)
            with torch.no_grad():
                _entropy = token_entropy(logits.detach(), 0.7)
        (logprobs * upstream).sum().backward()
    return memory.peak


def test_peak_memory_does_not_grow_with_the_sequence():
    short, long = 256, 2048
    full_logits = long * VOCAB * 4  # one float32 [T, V] at the long length: 32 MiB
    chunked = {t: peak_bytes(t, chunked=True) for t in (short, long)}
    unchunked = {t: peak_bytes(t, chunked=False) for t in (short, long)}
    print(f"peak bytes chunked {chunked}, unchunked {unchunked}; one [T, V] {full_logits}")
    # What grows with T in the chunked path is [T, H] and [T] (hidden states and their gradient,
    # log Z): (2048 − 256)·32·4 B ≈ 0.23 MB each, far below one [T, V].
    assert chunked[long] - chunked[short] < full_logits / 16
    # The check can fail: full logits hold several [T, V] float32 copies at once.
    assert unchunked[long] - unchunked[short] > 2 * (long - short) * VOCAB * 4
