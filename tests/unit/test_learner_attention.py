"""model.attn_implementation: the rule that picks a kernel, its checks, and the learner loading it."""

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from olmorl.algo import build_trajectory_tokens, pack_trajectories
from olmorl.config import LearnerConfig, ModelConfig
from olmorl.learner import attention
from olmorl.learner.attention import common_attn_implementation, resolve_attn_implementation
from olmorl.learner.worker import LearnerWorker


@pytest.mark.parametrize(
    ("requested", "device", "dtype", "flash_installed", "expected"),
    [
        (None, "cpu", "bfloat16", True, "sdpa"),
        (None, "cuda", "bfloat16", True, "flash_attention_2"),
        (None, "cuda", "bfloat16", False, "flex_attention"),
        (None, "cuda", "float32", True, "flex_attention"),  # flash-attn has no float32 kernel
        ("sdpa", "cuda", "bfloat16", True, "sdpa"),
        ("flex_attention", "cpu", "float32", False, "flex_attention"),
        ("flash_attention_2", "cuda", "bfloat16", True, "flash_attention_2"),
    ],
)
def test_default_rule_and_explicit_choices(
    monkeypatch, requested, device, dtype, flash_installed, expected
):
    monkeypatch.setattr(attention, "is_flash_attn_2_available", lambda: flash_installed)
    assert resolve_attn_implementation(requested, device, dtype) == expected


def test_flash_attention_it_cannot_run_is_refused_before_loading(monkeypatch):
    monkeypatch.setattr(attention, "is_flash_attn_2_available", lambda: False)
    with pytest.raises(ValueError, match="needs CUDA, but this learner runs on cpu"):
        resolve_attn_implementation("flash_attention_2", "cpu", "bfloat16")
    with pytest.raises(ImportError, match="pip install flash-attn"):
        resolve_attn_implementation("flash_attention_2", "cuda", "bfloat16")


def test_ranks_that_resolve_different_kernels_stop_the_run():
    """flash-attn installed on one node only: the default picks per node, the ranks must agree."""
    assert common_attn_implementation(["flex_attention"] * 3) == "flex_attention"
    with pytest.raises(ValueError, match="rank 0: flash_attention_2, rank 1: flex_attention"):
        common_attn_implementation(["flash_attention_2", "flex_attention"])


def test_config_checks_the_name_and_the_dtype():
    with pytest.raises(ValidationError, match="flash_attention_2 needs model.dtype=bfloat16"):
        ModelConfig(path="m", dtype="float32", attn_implementation="flash_attention_2")
    with pytest.raises(ValidationError, match="attn_implementation"):
        ModelConfig(path="m", attn_implementation="eager")
    assert ModelConfig(path="m").attn_implementation is None


def test_flash_attention_gets_the_document_boundaries():
    gen = torch.Generator().manual_seed(0)
    trajectories = [
        build_trajectory_tokens(
            prompt_ids=torch.randint(0, 100, (prompt,), generator=gen).tolist(),
            response_ids=torch.randint(0, 100, (response,), generator=gen).tolist(),
            response_logprobs=[-1.0] * response,
            advantage=1.0,
        )
        for prompt, response in [(3, 7), (2, 4), (5, 1)]
    ]
    (row,) = pack_trajectories(trajectories, max_tokens_per_row=64)
    assert "cu_seq_lens_q" not in row.model_inputs()
    inputs = row.model_inputs(varlen=True)
    assert inputs["cu_seq_lens_q"].tolist() == inputs["cu_seq_lens_k"].tolist() == [0, 10, 16, 22]
    assert inputs["cu_seq_lens_q"].dtype == torch.int32  # what flash-attn's varlen kernel takes
    assert inputs["max_length_q"] == inputs["max_length_k"] == 10


def document_logps_under(model: ModelConfig, rows) -> tuple[str, list[float]]:
    """(the kernel the loaded model runs, its document log-probs) from an in-process learner."""
    worker = LearnerWorker(0, 1, model, LearnerConfig(logprob_chunk_tokens=64))
    worker.setup(*worker.address(), seed=0)
    try:
        assert worker.attn_implementation == worker.policy.hf_config._attn_implementation
        return worker.attn_implementation, [logp for _, logp, _ in worker.document_logps(rows)]
    finally:
        worker.shutdown()


def test_learner_loads_the_configured_kernel_and_scores_alike(
    tiny_model_dir: Path, eager_flex_attention
):
    # Documents past the 64-token sliding window, packed into one row.
    gen = torch.Generator().manual_seed(0)
    trajectories = [
        build_trajectory_tokens(
            prompt_ids=torch.randint(0, 200, (prompt,), generator=gen).tolist(),
            response_ids=torch.randint(0, 200, (response,), generator=gen).tolist(),
            response_logprobs=[-1.0] * response,
            advantage=1.0,
        )
        for prompt, response in [(10, 90), (7, 70)]
    ]
    (row,) = pack_trajectories(trajectories, max_tokens_per_row=200)
    path = str(tiny_model_dir)
    default = document_logps_under(ModelConfig(path=path, dtype="float32"), [row])
    flex = document_logps_under(
        ModelConfig(path=path, dtype="float32", attn_implementation="flex_attention"), [row]
    )
    assert default[0] == "sdpa" and flex[0] == "flex_attention"
    gap = max(abs(a - b) for a, b in zip(flex[1], default[1], strict=True))
    print(f"document log-prob sums, flex_attention vs sdpa: max gap {gap:.3e}")
    assert flex[1] == pytest.approx(default[1], rel=1e-5)
