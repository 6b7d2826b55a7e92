"""The learner loads a checkpoint sharded: the meta-device model is sharded first, then rank 0 reads
it a tensor at a time and each rank keeps its rows (olmorl.learner.loading).

Two gloo ranks set up FSDP2 policies as `LearnerWorker.setup` does. On the tiny preset the result
equals the plain load (`from_pretrained`, then sharded) bit for bit, with the same losses, also
under activation checkpointing (which renames the wrapped layers' parameters); on the
small preset the CPU memory each rank allocates during set-up, as the profiler's allocator events
count it, stays near its shard plus one decoder layer, never a full copy; the root module's `.to`
is never called; a checkpoint that does not fit the model fails on every rank, not only on 0.
"""

from pathlib import Path
from unittest import mock

import pytest
import torch
import torch.distributed as dist
from transformers import AutoModelForCausalLM

from olmorl.algo.nll import masked_nll_loss
from olmorl.config import FSDP2Strategy, LearnerConfig
from olmorl.learner.backend import build_policy
from olmorl.learner.loading import build_empty_model
from olmorl.learner.parallelize import decoder_layers
from olmorl.learner.scoring import use_chunked_head

WORLD_SIZE = 2
LEARNER = LearnerConfig(logprob_chunk_tokens=16)
# checkpoint_wrapper renames the parameters of the layers it wraps; the checkpoint's names stay.
CHECKPOINTED = LearnerConfig(
    logprob_chunk_tokens=16, strategy=FSDP2Strategy(activation_checkpointing=True)
)
DTYPE = "bfloat16"
"""Compute dtype of the policies (the config's default), float32 masters either way."""


def peak_cpu_bytes(fn):
    """fn()'s result and the peak of the CPU bytes allocated during it and not yet freed, from the
    profiler's allocator events (this thread's; set-up runs on it)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        if event.device_type() == torch.autograd.DeviceType.CPU:
            live += event.nbytes()
            peak = max(peak, live)
    return result, peak


def set_up(model_dir: str, sharded_load: bool, learner: LearnerConfig = LEARNER):
    """A policy as `LearnerWorker.setup` builds it (sharded load), or from the plain full load;
    and the calls made to the root module's `.to`."""
    if sharded_load:
        model = build_empty_model(model_dir)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.config.use_cache = False
    use_chunked_head(model, LEARNER.logprob_chunk_tokens)
    model.to = spy = mock.Mock(wraps=model.to)
    checkpoint = model_dir if sharded_load else None
    policy = build_policy(model, learner, "cpu", WORLD_SIZE, DTYPE, checkpoint=checkpoint)
    return policy, spy.call_count


def losses(policy, rank: int) -> tuple[torch.Tensor, float]:
    """Log-probs and NLL of this rank's batch of rows (no gradient)."""
    gen = torch.Generator().manual_seed(rank)
    logprobs, total = [], 0.0
    for length in (19, 40):
        ids = torch.randint(0, policy.hf_config.vocab_size, (1, length), generator=gen)
        positions = torch.arange(length)[None]
        with torch.no_grad():
            scores = policy.model(input_ids=ids, position_ids=positions, use_cache=False)
        total += float(masked_nll_loss(scores.logprobs, positions > 0, 2 * length)[0])
        logprobs.append(scores.logprobs)
    return torch.cat(logprobs, dim=1), total


def run_rank(rank: int, init_method: str, tiny_dir: str, small_dir: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=WORLD_SIZE)
    try:
        result = {}
        runs = {
            "sharded": (True, LEARNER),
            "plain": (False, LEARNER),
            "checkpointed": (True, CHECKPOINTED),
        }
        for label, (sharded, learner) in runs.items():
            policy, to_calls = set_up(tiny_dir, sharded, learner)
            full = dict(policy.full_parameters(torch.float32))
            result[label] = {"to_calls": to_calls, "params": full, "scores": losses(policy, rank)}

        (policy, to_calls), peak = peak_cpu_bytes(lambda: set_up(small_dir, True))
        params = list(policy.model.parameters())
        result["memory"] = {
            "to_calls": to_calls,
            "peak": peak,
            "shard": sum(p.to_local().numel() * p.element_size() for p in params),
            "full": sum(p.numel() * p.element_size() for p in params),
            "layer": sum(
                p.numel() * p.element_size() for p in decoder_layers(policy.model)[0].parameters()
            ),
        }

        try:  # the tiny model from the small checkpoint: shapes differ
            build_policy(build_empty_model(tiny_dir), LEARNER, "cpu", WORLD_SIZE, DTYPE, small_dir)
        except RuntimeError as error:
            result["mismatch"] = str(error)
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(spawn_ranks) -> list[dict]:
    return spawn_ranks(run_rank, "sharded_loading", WORLD_SIZE)


def test_the_sharded_load_equals_the_plain_load(ranks):
    reference = ranks[0]["reference"].state_dict()
    plain = ranks[0]["plain"]["params"]
    assert list(plain) == list(reference)
    for label in ("sharded", "checkpointed"):
        params = ranks[0][label]["params"]
        assert list(params) == list(reference), label
        for name, tensor in params.items():
            assert torch.equal(tensor, plain[name]) and torch.equal(tensor, reference[name]), name
        for rank in ranks:  # each rank's own rows, through its own shards
            (logprobs, loss), (plain_logprobs, plain_loss) = (
                rank[label]["scores"],
                rank["plain"]["scores"],
            )
            assert torch.equal(logprobs, plain_logprobs), label
            assert loss == plain_loss, label


def test_the_root_module_is_never_moved_whole(ranks):
    for rank in ranks:
        for label in ("sharded", "plain", "checkpointed", "memory"):
            assert rank[label]["to_calls"] == 0, label


def test_no_rank_holds_a_full_copy_during_set_up(ranks):
    for index, rank in enumerate(ranks):
        memory = rank["memory"]
        mib = {key: round(value / 2**20, 2) for key, value in memory.items()}
        print(f"rank {index}: CPU bytes during set-up (MiB): {mib}")
        # Small preset, float32: 33.4 MiB in all, 16.7 per shard, 4 per layer. Beyond its shard a
        # rank holds one full tensor in the broadcast buffer (1 MiB, an MLP matrix) and its rows.
        assert memory["shard"] < memory["full"] / WORLD_SIZE + memory["layer"]
        assert memory["peak"] <= memory["shard"] + memory["layer"], mib


def test_a_checkpoint_that_does_not_fit_fails_on_every_rank(ranks):
    for rank in ranks:
        assert "failed on rank 0: ValueError: model.embed_tokens.weight" in rank["mismatch"]
        assert "holds (704, 256), the model (704, 128)" in rank["mismatch"]
