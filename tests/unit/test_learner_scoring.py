"""The learner scores tokens through the chunked LM head and gets what full logits give.

One in-process `LearnerWorker` (FSDP2 over a gloo group of one, float32, tiny model) against the
plain Hugging Face model with `token_logprobs` / `token_entropy` on full logits, the path the
learner took before: RL loss, entropy and gradient norm; SFT loss; no-grad log-probs. The chunk
(5 positions) divides no row's scored positions (T − 1), so every row ends on a partial chunk.
"""

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from olmorl.algo import (
    build_trajectory_tokens,
    document_sums,
    olmorl_policy_loss,
    pack_trajectories,
    token_entropy,
    token_logprobs,
)
from olmorl.algo.nll import masked_nll_loss
from olmorl.config import AlgorithmConfig, LearnerConfig, ModelConfig
from olmorl.learner.batch import MiniBatch
from olmorl.learner.worker import LearnerWorker

TEMPERATURE = 0.7
LEARNER = LearnerConfig(lr=1e-3, logprob_chunk_tokens=5)
ALGO = AlgorithmConfig(tis_cap=1.5)


def build_rows(vocab_size: int):
    gen = torch.Generator().manual_seed(0)
    trajectories = [
        build_trajectory_tokens(
            prompt_ids=torch.randint(0, vocab_size, (prompt,), generator=gen).tolist(),
            response_ids=torch.randint(0, vocab_size, (response,), generator=gen).tolist(),
            response_logprobs=(-torch.rand(response, generator=gen) * 4).tolist(),
            advantage=torch.randn((), generator=gen).item(),
        )
        for prompt, response in [(9, 40), (5, 23), (12, 31)]
    ]
    return pack_trajectories(trajectories, max_tokens_per_row=80)


def reference_rl(model, rows, total: int) -> dict[str, float]:
    """The RL step's loss, entropy and gradient norm from full logits, as the learner had it."""
    model.zero_grad()
    loss_sum, entropy_sum = 0.0, 0.0
    for row in rows:
        logits = model(**row.model_inputs()).logits  # [1, T, V]
        logprobs = token_logprobs(logits, row.input_ids[None], TEMPERATURE)
        mask = row.loss_mask[None]
        loss, _ = olmorl_policy_loss(
            logprobs,
            logprobs.detach(),
            row.sampler_logprobs[None],
            row.advantages[None],
            mask,
            total,
            clip_low=ALGO.clip_low,
            clip_high=ALGO.clip_high,
            tis_cap=ALGO.tis_cap,
        )
        loss.backward()
        loss_sum += float(loss.detach())
        entropy = token_entropy(logits.detach(), TEMPERATURE)
        entropy_sum += float(torch.where(mask, entropy, 0.0).sum()) / total
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
    return {"loss": loss_sum, "entropy": entropy_sum, "grad_norm": float(norm)}


def reference_sft_loss(model, rows, total: int) -> float:
    with torch.no_grad():
        return sum(
            float(
                masked_nll_loss(
                    token_logprobs(model(**row.model_inputs()).logits, row.input_ids[None], 1.0),
                    row.loss_mask[None],
                    total,
                )[0]
            )
            for row in rows
        )


@pytest.fixture
def worker(tiny_model_dir: Path):
    worker = LearnerWorker(
        0, 1, ModelConfig(path=str(tiny_model_dir), dtype="float32"), LEARNER, ALGO, TEMPERATURE
    )
    worker.setup(*worker.address(), seed=0)
    yield worker
    worker.shutdown()


def test_learner_scores_as_full_logits_did(worker: LearnerWorker, tiny_model_dir: Path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    rows = build_rows(model.config.vocab_size)
    assert all((len(row) - 1) % LEARNER.logprob_chunk_tokens for row in rows)
    total = sum(row.num_loss_tokens for row in rows)

    # No-grad scoring: sequence_logprobs at a temperature, document_logps (SFT/DPO) at 1.
    ids = rows[0].input_ids[None]
    with torch.no_grad():
        expected = token_logprobs(model(input_ids=ids).logits, ids, TEMPERATURE)[0]
        documents = [
            document_sums(
                row, token_logprobs(model(**row.model_inputs()).logits, row.input_ids[None], 1.0)
            )
            for row in rows
        ]
    got = torch.tensor(worker.sequence_logprobs(ids[0].tolist(), TEMPERATURE))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    expected_docs = [s for sums, _ in documents for s in sums.tolist()]
    got_docs = [total_logp for _, total_logp, _ in worker.document_logps(rows)]
    assert got_docs == pytest.approx(expected_docs, rel=1e-5)

    # RL: loss, entropy and the gradient norm (before clipping) of one optimizer step.
    expected_rl = reference_rl(model, rows, total)
    (got_rl,) = worker.train_step([MiniBatch(tuple(rows), total)])
    print(f"RL {got_rl} vs full logits {expected_rl}")
    for key, value in expected_rl.items():
        assert got_rl[key] == pytest.approx(value, rel=1e-5), key

    # SFT, after the RL step: the reference takes the worker's new weights.
    model.load_state_dict(dict(worker._full_parameters()))
    expected_sft = reference_sft_loss(model, rows, total)
    got_sft = worker.sft_step(MiniBatch(tuple(rows), total))
    print(f"SFT loss {got_sft['loss']} vs full logits {expected_sft}")
    assert got_sft["loss"] == pytest.approx(expected_sft, rel=1e-5)
