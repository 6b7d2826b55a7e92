"""Under DeepSpeed the learner's model is partitioned as it is built (`zero.Init`) and filled from
the checkpoint a parameter at a time (olmorl.learner.loading): no rank ever holds it whole.

Two gloo ranks set up ZeRO-3 policies as `LearnerWorker.setup` does, and as before from the plain
full load (`from_pretrained`, partitioned by the engine). On the tiny preset, every parameter
partitioned, the loaded parameters equal `from_pretrained`'s bit for bit (rounded to bf16 under
bf16 compute, as the engine rounds a loaded model), and forwards and one optimizer step give the
same results from either set-up, so the float32 masters start equal too. On the small preset with
the shipped configuration the CPU memory a rank allocates while the model is built and loaded stays
below a full float32 copy of the model, which the plain load does allocate.
"""

import math
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from test_sharded_loading import peak_cpu_bytes
from transformers import AutoModelForCausalLM

from olmorl.algo.nll import masked_nll_loss
from olmorl.config import DeepSpeedStrategy, LearnerConfig
from olmorl.learner import deepspeed_policy
from olmorl.learner.backend import build_learner_model, build_policy
from olmorl.learner.loading import (
    build_empty_model,
    full_shape,
    is_zero3_partitioned,
    load_from_rank0,
)
from olmorl.learner.scoring import use_chunked_head

WORLD_SIZE = 2
LEARNER = LearnerConfig(lr=1e-3, logprob_chunk_tokens=16, strategy=DeepSpeedStrategy())

_shipped_config = deepspeed_policy.deepspeed_config


def partition_every_parameter(learner, strategy, bf16):
    """The shipped configuration with no persistent parameters: ZeRO-3 keeps parameters under
    100K elements (all of the tiny model's) whole on every rank, which would test nothing."""
    config = _shipped_config(learner, strategy, bf16)
    config["zero_optimization"]["stage3_param_persistence_threshold"] = 0
    return config


def set_up(model_dir: str, partitioned: bool, dtype: str):
    """A policy as `LearnerWorker.setup` builds it, or from the plain full load."""
    if partitioned:
        model = build_learner_model(model_dir, LEARNER, "cpu", dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.config.use_cache = False
    use_chunked_head(model, LEARNER.logprob_chunk_tokens)
    checkpoint = model_dir if partitioned else None
    return build_policy(model, LEARNER, "cpu", WORLD_SIZE, dtype, checkpoint=checkpoint)


def rows(policy, rank: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's rows: (input_ids, position_ids), [1, T] each."""
    gen = torch.Generator().manual_seed(rank)
    return [
        (
            torch.randint(0, policy.hf_config.vocab_size, (1, length), generator=gen),
            torch.arange(length)[None],
        )
        for length in (19, 40)
    ]


def scores_and_step(policy, rank: int) -> tuple[torch.Tensor, float]:
    """Log-probs of this rank's rows, then one optimizer step on their NLL: the grad norm."""
    logprobs = []
    for ids, positions in rows(policy, rank):
        scores = policy.model(input_ids=ids, position_ids=positions, use_cache=False)
        loss, _ = masked_nll_loss(scores.logprobs, positions > 0, 2 * ids.shape[1])
        policy.backward(loss)
        logprobs.append(scores.logprobs.detach())
    return torch.cat(logprobs, dim=1), policy.step(LEARNER.lr)


def load(model_dir: str, partitioned: bool, dtype: str) -> torch.nn.Module:
    """The loaded model as `build_policy` hands it to the engine. The engine's own allocations,
    the same either way, are left out: a 2 GB reduce bucket on CPU with the shipped
    configuration, and float32 masters and gradients of 1/world_size of the model."""
    if not partitioned:
        return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = build_learner_model(model_dir, LEARNER, "cpu", dtype)
    load_from_rank0(model, model_dir, "cpu")
    return model


def memory_figures(model: torch.nn.Module) -> dict[str, int]:
    """Bytes of a full float32 copy of the model and of this rank's partitions (if any)."""
    params = list(model.parameters())
    return {
        "full": sum(math.prod(full_shape(p)) * 4 for p in params),
        "partitions": sum(p.ds_tensor.nbytes for p in params if is_zero3_partitioned(p)),
    }


def run_rank(rank: int, init_method: str, tiny_dir: str, small_dir: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=WORLD_SIZE)
    try:
        result = {}
        deepspeed_policy.deepspeed_config = partition_every_parameter
        for dtype in ("float32", "bfloat16"):
            for label, partitioned in (("partitioned", True), ("plain", False)):
                policy = set_up(tiny_dir, partitioned, dtype)
                loaded = dict(policy.full_parameters(torch.float32))
                logprobs, norm = scores_and_step(policy, rank)
                stepped = dict(policy.full_parameters(torch.float32))
                result[dtype, label] = (loaded, logprobs, norm, stepped)
        deepspeed_policy.deepspeed_config = _shipped_config

        for label, partitioned in (("partitioned", True), ("plain", False)):
            model, peak = peak_cpu_bytes(partial(load, small_dir, partitioned, "bfloat16"))
            result["memory", label] = {"peak": peak, **memory_figures(model)}
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(spawn_ranks) -> list[dict]:
    return spawn_ranks(run_rank, "deepspeed_loading", WORLD_SIZE)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_partitioned_load_equals_from_pretrained(ranks, dtype):
    # The engine computes in bf16 from bf16 partitions (and keeps float32 masters of them).
    reference = {
        name: tensor.to(dtype).float()
        for name, tensor in ranks[0]["reference"].state_dict().items()
    }
    name_of = {torch.float32: "float32", torch.bfloat16: "bfloat16"}[dtype]
    loaded, _, _, _ = ranks[0][name_of, "partitioned"]
    assert list(loaded) == list(reference)
    for name, tensor in loaded.items():
        assert torch.equal(tensor, reference[name]), name


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_partitioned_load_trains_as_the_plain_load(ranks, dtype):
    for rank in ranks:  # each rank's own rows
        _, logprobs, norm, _ = rank[dtype, "partitioned"]
        _, plain_logprobs, plain_norm, _ = rank[dtype, "plain"]
        assert torch.equal(logprobs, plain_logprobs)
        assert norm == plain_norm
    loaded, _, _, stepped = ranks[0][dtype, "partitioned"]  # rank 0 gathers the parameters
    plain_loaded, _, _, plain_stepped = ranks[0][dtype, "plain"]
    for name, tensor in stepped.items():
        assert torch.equal(loaded[name], plain_loaded[name]), name
        assert torch.equal(tensor, plain_stepped[name]), name
    # The step acted. Under bf16 these are the compute copies: a norm weight near 1 moves by
    # about lr = 1e-3 in its float32 master, less than bf16's spacing there (2^-7).
    unchanged = [name for name, tensor in stepped.items() if torch.equal(tensor, loaded[name])]
    if dtype == "float32":
        assert not unchanged
    else:
        assert all("norm" in name for name in unchanged), unchanged


def test_no_rank_holds_a_full_copy_while_loading(ranks):
    for index, rank in enumerate(ranks):
        memory, plain = rank["memory", "partitioned"], rank["memory", "plain"]
        mib = {key: round(value / 2**20, 2) for key, value in memory.items()}
        print(
            f"rank {index}: CPU bytes while loading (MiB): partitioned {mib}, plain peak "
            f"{plain['peak'] / 2**20:.2f}"
        )
        # The measurement sees a full copy where there is one.
        assert plain["peak"] >= plain["full"]
        # Small preset: 33.4 MiB in float32, 8.4 MiB of bf16 partitions per rank; measured
        # 11-14 MiB. The count is an upper bound: it misses the frees that gloo's threads make
        # of tensors a collective held (a gathered parameter, now and then).
        assert memory["peak"] < memory["full"], mib


def test_deepspeed_refuses_to_load_into_a_model_not_built_partitioned(tiny_model_dir: Path):
    with pytest.raises(ValueError, match="build_learner_model"):
        build_policy(
            build_empty_model(str(tiny_model_dir)),
            LEARNER,
            "cpu",
            1,
            "float32",
            checkpoint=str(tiny_model_dir),
        )
