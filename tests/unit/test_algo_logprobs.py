"""Temperature-scaled token log-probs and entropies against a float64 log_softmax reference."""

import math

import pytest
import torch

from olmorl.algo import token_entropy, token_logprobs


def random_batch(dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(2, 7, 50, generator=gen) * 3).to(dtype)  # [B, T, V]
    input_ids = torch.randint(0, 50, (2, 7), generator=gen)  # [B, T]
    return logits, input_ids


@pytest.mark.parametrize("temperature", [1.0, 0.6, 1.7])
def test_matches_float64_log_softmax(temperature):
    logits, input_ids = random_batch()
    reference = torch.zeros(2, 7, dtype=torch.float64)
    log_probs64 = torch.log_softmax(logits.double() / temperature, dim=-1)
    for b in range(2):
        for t in range(1, 7):
            reference[b, t] = log_probs64[b, t - 1, input_ids[b, t]]
    out = token_logprobs(logits, input_ids, temperature)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), reference, rtol=0, atol=1e-5)


def test_temperature_changes_the_distribution():
    logits, input_ids = random_batch()
    assert not torch.allclose(
        token_logprobs(logits, input_ids, 1.0), token_logprobs(logits, input_ids, 0.6)
    )


def test_alignment_by_token_position():
    # Vocabulary of 2; logits at position t-1 decide the probability of token t.
    # Position 0 logits [ln 3, 0] → p = [0.75, 0.25]; token 1 is id 1 → ln 0.25.
    # Position 1 logits [0, 0]    → p = [0.5, 0.5];   token 2 is id 0 → ln 0.5.
    # Position 2's logits predict past the end and are unused; out[:, 0] = 0 by convention.
    logits = torch.tensor([[[math.log(3), 0.0], [0.0, 0.0], [5.0, -5.0]]])
    input_ids = torch.tensor([[1, 1, 0]])
    out = token_logprobs(logits, input_ids, temperature=1.0)
    torch.testing.assert_close(out, torch.tensor([[0.0, math.log(0.25), math.log(0.5)]]))


def test_bfloat16_logits_are_scored_in_float32():
    logits, input_ids = random_batch(torch.bfloat16)
    reference = token_logprobs(logits.float(), input_ids, 0.8)
    out = token_logprobs(logits, input_ids, 0.8)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-6)


def test_gradient_flows_to_logits():
    logits, input_ids = random_batch()
    logits.requires_grad_()
    token_logprobs(logits, input_ids, 0.7).sum().backward()
    assert logits.grad is not None
    # The last position's logits predict nothing inside the sequence.
    assert logits.grad[:, -1].abs().max() == 0


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_entropy_matches_float64_reference(temperature):
    logits, _ = random_batch()
    log_p = torch.log_softmax(logits.double() / temperature, dim=-1)  # [B, T, V]
    per_position = -(log_p.exp() * log_p).sum(-1)  # [B, T]
    reference = torch.nn.functional.pad(per_position[:, :-1], (1, 0))
    torch.testing.assert_close(
        token_entropy(logits, temperature).double(), reference, rtol=0, atol=1e-5
    )


def test_entropy_of_uniform_is_log_vocab():
    out = token_entropy(torch.zeros(1, 4, 32), temperature=0.5)
    torch.testing.assert_close(out, torch.tensor([[0.0] + [math.log(32)] * 3]))


def test_rejects_non_positive_temperature():
    logits, input_ids = random_batch()
    with pytest.raises(ValueError, match="temperature"):
        token_logprobs(logits, input_ids, 0.0)
