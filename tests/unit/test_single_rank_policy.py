"""One float32 learner rank keeps the plain module: `fully_shard` over one rank shards nothing and
casts nothing, yet copies every unit into a gathered buffer and back each step (30% of a 0.6B step
on CPU in `olmorl bench learner`). The plain policy must train exactly as a plain AdamW loop does,
load the checkpoint as the sharded path does (meta model, rank 0 reads), save and resume through
the same distributed checkpoint, and keep Hugging Face names under activation checkpointing. A
bf16 rank still goes through FSDP2, which casts for compute.
"""

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor
from transformers import AutoModelForCausalLM

from olmorl.algo.nll import masked_nll_loss
from olmorl.config import FSDP2Strategy, LearnerConfig
from olmorl.learner.backend import adamw, build_policy
from olmorl.learner.loading import build_empty_model
from olmorl.learner.parallelize import parallelize_fsdp2
from olmorl.learner.scoring import use_chunked_head

LEARNER = LearnerConfig(logprob_chunk_tokens=16, lr=1e-3, max_grad_norm=1.0)
CHECKPOINTED = LEARNER.model_copy(update={"strategy": FSDP2Strategy(activation_checkpointing=True)})
STEPS = 3


def batch(step: int, vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (1, 33), generator=torch.Generator().manual_seed(step))


def head_loss(model, ids: torch.Tensor) -> torch.Tensor:
    """Mean NLL from the learner's chunked head (`use_chunked_head`)."""
    positions = torch.arange(ids.shape[1])[None]
    scores = model(input_ids=ids, position_ids=positions, use_cache=False)
    return masked_nll_loss(scores.logprobs, positions > 0, ids.shape[1])[0]


def logits_loss(model, ids: torch.Tensor) -> torch.Tensor:
    """Mean NLL from transformers' own logits."""
    logits = model(input_ids=ids, use_cache=False).logits.float()
    return (
        torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="sum")
        / (ids.shape[1])
    )


def policy_step(policy, step: int) -> float:
    loss = head_loss(policy.model, batch(step, policy.hf_config.vocab_size))
    policy.backward(loss)
    policy.step(LEARNER.lr)
    return float(loss.detach())


def adamw_loop(model, loss_of) -> list[float]:
    """STEPS of `loss_of`, clipping and torch's AdamW, outside any olmorl policy."""
    optimizer = adamw(model.parameters(), LEARNER)
    losses = []
    for step in range(STEPS):
        loss = loss_of(model, batch(step, model.config.vocab_size))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), LEARNER.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    return losses


def plain_loop(model_dir: str) -> tuple[list[float], dict[str, torch.Tensor]]:
    """The same steps with transformers' own forward and loss."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    losses = adamw_loop(model, logits_loss)
    return losses, {name: p.detach().clone() for name, p in model.named_parameters()}


def sharded_loop(model_dir: str) -> tuple[list[float], dict[str, torch.Tensor]]:
    """The same steps through fully_shard over the one rank, as every rank ran before."""
    from torch.distributed.device_mesh import init_device_mesh

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.config.use_cache = False
    use_chunked_head(model, LEARNER.logprob_chunk_tokens)
    model = parallelize_fsdp2(model, FSDP2Strategy(), init_device_mesh("cpu", (1,)), torch.float32)
    losses = adamw_loop(model, head_loss)
    return losses, {name: p.detach().full_tensor() for name, p in model.named_parameters()}


def set_up(model_dir: str, learner: LearnerConfig, dtype: str = "float32"):
    model = build_empty_model(model_dir)
    model.config.use_cache = False
    use_chunked_head(model, learner.logprob_chunk_tokens)
    return build_policy(model, learner, "cpu", 1, dtype, checkpoint=model_dir)


def run_rank(rank: int, init_method: str, tiny_dir: str, small_dir: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init_method, rank=0, world_size=1)
    try:
        result = {}
        for label, learner in (("plain", LEARNER), ("checkpointed", CHECKPOINTED)):
            policy = set_up(tiny_dir, learner)
            losses = [policy_step(policy, step) for step in range(STEPS)]
            result[label] = {
                "losses": losses,
                # A copy: an unsharded float32 parameter comes back as itself.
                "params": {n: p.clone() for n, p in policy.full_parameters(torch.float32)},
                "dtensors": sum(isinstance(p, DTensor) for p in policy.model.parameters()),
            }
            if label == "plain":
                state = Path(out_dir) / "state"
                policy.save_state(state)
                following = policy_step(policy, STEPS)
                resumed = set_up(tiny_dir, LEARNER)
                resumed.load_state(state)
                result["resume"] = (following, policy_step(resumed, STEPS))
        result["sharded"] = sharded_loop(tiny_dir)
        bf16 = set_up(tiny_dir, LEARNER, "bfloat16")
        result["bf16_dtensors"] = sum(isinstance(p, DTensor) for p in bf16.model.parameters())
        torch.save(result, Path(out_dir) / "rank0.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def rank(spawn_ranks) -> dict:
    return spawn_ranks(run_rank, "single_rank_policy", 1)[0]


@pytest.fixture(scope="module")
def reference(rank, tmp_path_factory) -> tuple[list[float], dict[str, torch.Tensor]]:
    model_dir = tmp_path_factory.getbasetemp() / "single_rank_policy0" / "tiny"
    return plain_loop(str(model_dir))


def test_one_float32_rank_holds_plain_parameters(rank):
    assert rank["plain"]["dtensors"] == 0
    assert rank["checkpointed"]["dtensors"] == 0
    assert rank["bf16_dtensors"] > 0  # bf16 compute is FSDP2's cast


@pytest.mark.parametrize("label", ["plain", "checkpointed"])
def test_one_rank_trains_as_a_plain_adamw_loop(rank, reference, label):
    """The losses of transformers' forward and torch's AdamW; the parameters of the sharded path,
    bit for bit (against transformers' logits the chunked head's rounding differs, and Adam turns
    a gradient's rounding into a full step where the gradient is near zero)."""
    assert rank[label]["losses"] == pytest.approx(reference[0], rel=1e-5)
    sharded_losses, sharded_params = rank["sharded"]
    assert rank[label]["losses"] == sharded_losses
    trained = rank[label]["params"]
    assert list(trained) == list(sharded_params) == list(reference[1])  # Hugging Face names
    for name, tensor in sharded_params.items():
        assert torch.equal(trained[name], tensor), name


def test_one_rank_resumes_exactly(rank):
    following, resumed = rank["resume"]
    assert resumed == following
