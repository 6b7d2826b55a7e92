"""Per-token layout of one trajectory: only sampled response tokens enter the loss."""

import pytest
import torch

from olmorl.algo import build_trajectory_tokens


def test_prompt_and_appended_tokens_are_masked_out():
    tokens = build_trajectory_tokens(
        prompt_ids=[5, 6, 7],
        response_ids=[10, 11],
        response_logprobs=[-0.5, -1.25],
        advantage=0.75,
        appended_ids=[2],  # an EOS the learner adds: vLLM never scored it
    )
    assert tokens.input_ids.tolist() == [5, 6, 7, 10, 11, 2]
    assert tokens.loss_mask.tolist() == [False, False, False, True, True, False]
    assert tokens.sampler_logprobs.tolist() == [0.0, 0.0, 0.0, -0.5, -1.25, 0.0]
    assert tokens.advantages.tolist() == [0.0, 0.0, 0.0, 0.75, 0.75, 0.0]
    assert tokens.input_ids.dtype == torch.long and tokens.loss_mask.dtype == torch.bool
    assert len(tokens) == 6


def test_accepts_tensors():
    tokens = build_trajectory_tokens(
        torch.tensor([1, 2]), torch.tensor([3]), torch.tensor([-0.1]), advantage=-1.0
    )
    assert tokens.input_ids.tolist() == [1, 2, 3]
    assert tokens.sampler_logprobs[2].item() == pytest.approx(-0.1)


def test_logprob_count_must_match_response():
    with pytest.raises(ValueError, match="response_logprobs has 1 entries but response_ids has 2"):
        build_trajectory_tokens([1], [2, 3], [-0.1], advantage=1.0)


def test_empty_prompt_is_rejected():
    with pytest.raises(ValueError, match="prompt_ids is empty"):
        build_trajectory_tokens([], [2, 3], [-0.1, -0.2], advantage=1.0)
