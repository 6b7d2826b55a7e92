"""The SFT loss: a float64 reference, masking, and invariance to how a step is split."""

import math

import pytest
import torch

from olmorl.algo import token_logprobs
from olmorl.algo.nll import masked_nll_loss as nll_of_logprobs


def masked_nll_loss(logits, ids, mask, total_loss_tokens):
    """The loss as the learner computes it, from the token log-probs of the logits."""
    return nll_of_logprobs(token_logprobs(logits, ids, 1.0), mask, total_loss_tokens)


def reference(logits, ids, mask, total):
    loss = 0.0
    for b in range(ids.shape[0]):
        for t in range(1, ids.shape[1]):
            if mask[b, t]:
                row = logits[b, t - 1].tolist()
                log_z = math.log(sum(math.exp(x) for x in row))
                loss -= row[int(ids[b, t])] - log_z
    return loss / total


def test_matches_a_float64_loop():
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 11, dtype=torch.float64)
    ids = torch.randint(0, 11, (3, 7))
    mask = torch.rand(3, 7) > 0.4
    mask[:, 0] = False
    loss, metrics = masked_nll_loss(logits, ids, mask, total_loss_tokens=20)
    # token_logprobs computes in float32 (one copy of the logits), hence the tolerance.
    assert float(loss) == pytest.approx(reference(logits, ids, mask, 20), rel=1e-6)
    assert metrics["tokens"] == float(mask.sum())


def test_gradient_of_split_step_equals_the_whole():
    torch.manual_seed(1)
    logits = torch.randn(4, 9, 13, dtype=torch.float64, requires_grad=True)
    ids = torch.randint(0, 13, (4, 9))
    mask = torch.zeros(4, 9, dtype=torch.bool)
    mask[0, 1:] = True  # one long row ...
    mask[1:, 7:] = True  # ... and three short ones
    total = int(mask.sum())
    whole, _ = masked_nll_loss(logits, ids, mask, total)
    (whole_grad,) = torch.autograd.grad(whole, logits)
    parts = sum(
        masked_nll_loss(logits[i : i + 1], ids[i : i + 1], mask[i : i + 1], total)[0]
        for i in range(4)
    )
    (parts_grad,) = torch.autograd.grad(parts, logits)
    assert torch.allclose(whole_grad, parts_grad, atol=1e-7)
    # Normalising each row by its own count would weight the short rows up: not the same.
    per_row = sum(
        masked_nll_loss(logits[i : i + 1], ids[i : i + 1], mask[i : i + 1], int(mask[i].sum()))[0]
        / 4
        for i in range(4)
    )
    (per_row_grad,) = torch.autograd.grad(per_row, logits)
    assert not torch.allclose(whole_grad, per_row_grad, atol=1e-6)


def test_untrained_tokens_get_no_gradient_and_bad_masks_are_refused():
    logits = torch.randn(1, 5, 7, requires_grad=True)
    ids = torch.randint(0, 7, (1, 5))
    mask = torch.tensor([[False, False, True, False, False]])
    loss, _ = masked_nll_loss(logits, ids, mask, 1)
    loss.backward()
    assert logits.grad[0, 1].abs().sum() > 0  # position 1 predicts the trained token 2
    assert logits.grad[0, [0, 2, 3, 4]].abs().sum() == 0
    with pytest.raises(ValueError, match="position 0"):
        masked_nll_loss(logits, ids, torch.ones(1, 5, dtype=torch.bool), 5)
    with pytest.raises(ValueError, match="positive"):
        masked_nll_loss(logits, ids, mask, 0)
