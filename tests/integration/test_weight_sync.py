"""Weights pushed from the learners reach every vLLM engine, before and after an optimizer step."""

import time

import pytest
import ray
import torch

from olmorl.config import AlgorithmConfig, LearnerConfig, ModelConfig, RolloutConfig
from olmorl.learner.worker import remote_learner
from olmorl.models.tiny import write_tiny_model
from olmorl.rl.batch import build_step_batch
from olmorl.rl.types import Completion, PromptGroup, ScoredGroup
from olmorl.rollout.engine import RolloutEngine
from olmorl.rollout.weight_sync import build_weight_sink

pytestmark = pytest.mark.integration


def max_diff(a, b) -> float:
    return float((torch.tensor(a) - torch.tensor(b)).abs().max())


class Stack:
    """Two engines (seed-0 tiny model) and two learner ranks (a seed-1 model), and their verbs."""

    def __init__(self, tiny_model_dir, learner_model):
        rollout = RolloutConfig(
            num_actors=2,
            gpu_memory_utilization=0.1,
            max_num_seqs=16,
            max_response_tokens=16,
            enforce_eager=True,
        )
        self.engines = [
            ray.remote(RolloutEngine)
            .options(num_cpus=1)
            .remote(ModelConfig(path=str(tiny_model_dir), dtype="float32"), rollout, 1024, i)
            for i in range(2)
        ]
        self.algo = AlgorithmConfig(group_size=2, prompts_per_step=2)
        self.learners = [
            remote_learner()
            .options(num_cpus=1)
            .remote(
                rank,
                2,
                ModelConfig(path=str(learner_model), dtype="float32"),
                LearnerConfig(num_workers=2, lr=1e-2, micro_batch_tokens=64),
                self.algo,
                1.0,
            )
            for rank in range(2)
        ]
        address, port = ray.get(self.learners[0].address.remote())
        ray.get(
            [learner.setup.remote(address, port, 0) for learner in self.learners]
            + [e.start.remote() for e in self.engines]
        )

    def learner_logprobs(self, sequence):
        return ray.get([learner.sequence_logprobs.remote(sequence) for learner in self.learners])[0]

    def engine_logprobs(self, sequence):
        return ray.get([e.prompt_logprobs.remote(sequence) for e in self.engines])

    def push(self, mode: str = "inflight", transfer: str = "broadcast") -> int:
        sink = build_weight_sink(transfer, self.engines, mode, 1, 60.0)
        self.served_version = ray.get(
            [
                learner.push_weights.remote(sink if rank == 0 else None, 64 << 10)
                for rank, learner in enumerate(self.learners)
            ]
        )[0]
        return self.served_version

    def train_once(self) -> None:
        completions = tuple(
            Completion(tuple(range(20, 28)), tuple([-6.5] * 8), "stop", (0,) * 8) for _ in range(2)
        )
        groups = [
            ScoredGroup(PromptGroup(i, (5, 6, 7), completions), (0.0, 1.0), {}) for i in range(2)
        ]
        batch = build_step_batch(groups, self.algo, 2, 64)
        ray.get([lr.train_step.remote(mbs) for lr, mbs in zip(self.learners, batch.per_rank)])

    def shutdown(self) -> None:
        ray.get(
            [e.shutdown.remote() for e in self.engines]
            + [learner.shutdown.remote() for learner in self.learners]
        )
        for actor in self.engines + self.learners:
            ray.kill(actor)


@pytest.fixture(scope="module")
def stack(ray_cluster, tiny_model_dir, tmp_path_factory):
    # Engines start from seed 0; the learners hold a different model (seed 1), so only a
    # successful push can make the engines agree with the learners.
    stack = Stack(tiny_model_dir, write_tiny_model(tmp_path_factory.mktemp("seed1"), seed=1))
    yield stack
    stack.shutdown()


def test_weights_reach_every_engine(stack):
    """Through a broadcast group (formed at the first push, reused later) and through files."""
    sequence = list(range(10, 60))
    before = stack.engine_logprobs(sequence)
    target = stack.learner_logprobs(sequence)
    assert all(max_diff(b, target) > 0.1 for b in before)
    assert stack.push() == 0
    diffs = [max_diff(a, target) for a in stack.engine_logprobs(sequence)]
    print(f"\nafter a broadcast sync, max |vLLM - learner| logprob per engine: {diffs}")
    assert all(d < 1e-4 for d in diffs)

    # Each optimizer step moves the learners; the next push must move every engine with them.
    for version, transfer in [(1, "file"), (2, "broadcast")]:
        previous = stack.learner_logprobs(sequence)
        stack.train_once()
        trained = stack.learner_logprobs(sequence)
        assert max_diff(trained, previous) > 1e-3
        assert stack.push(transfer=transfer) == version
        diffs = [max_diff(a, trained) for a in stack.engine_logprobs(sequence)]
        print(f"after a step and a {transfer} sync: {diffs}")
        assert all(d < 1e-4 for d in diffs)


@pytest.mark.parametrize("mode", ["inflight", "drain", "abort"])
def test_a_weight_update_during_generation(stack, mode):
    """A long request is running when the weights change: in flight it continues with tokens of
    both versions, drained it finishes on the old weights first, aborted it comes back cut off."""
    old = stack.served_version
    stack.train_once()
    new = old + 1
    running = stack.engines[0].generate.remote([5, 6, 7], 2, None, fixed_length=1000)
    time.sleep(0.5)  # let it get going
    assert stack.push(mode) == new
    completions = ray.get(running)
    versions = [set(c.token_versions) for c in completions]
    reasons = [c.finish_reason for c in completions]
    print(
        f"\n{mode}: finish {reasons}, versions {versions}, tokens {[len(c.token_ids) for c in completions]}"
    )
    if mode == "inflight":
        assert reasons == ["length", "length"]
        assert all(len(c.token_ids) == 1000 for c in completions)
        assert versions == [{old, new}, {old, new}]
        for c in completions:  # old tokens first, then new ones
            switch = c.token_versions.index(new)
            assert set(c.token_versions[:switch]) == {old} and set(c.token_versions[switch:]) == {
                new
            }
    elif mode == "drain":
        assert reasons == ["length", "length"] and versions == [{old}, {old}]
    else:
        assert reasons == ["abort", "abort"]
        assert all(len(c.token_ids) < 1000 for c in completions)
    # Afterwards the engine generates with the new weights only.
    after = ray.get(stack.engines[0].generate.remote([5, 6, 7], 2, None, fixed_length=8))
    assert all(set(c.token_versions) == {new} for c in after)


def test_prefixes_cached_before_an_update_are_not_reused_after_it(stack):
    """An in-flight update keeps the KV cache for running requests; a new request with the same
    long prompt must still be computed by the new weights, not read from old cached blocks."""
    prompt = [5 + (i % 50) for i in range(300)]  # longer than two KV blocks, so it is cached
    engine = stack.engines[0]
    ray.get(engine.generate.remote(prompt, 1, None, fixed_length=1))  # caches the prefix
    stack.train_once()
    stack.push("inflight")
    (completion,) = ray.get(engine.generate.remote(prompt, 1, None, fixed_length=1))
    expected = stack.learner_logprobs(prompt + list(completion.token_ids))[-1]
    diff = abs(completion.logprobs[0] - expected)
    print(f"\nafter an in-flight update, |vLLM - learner| of the next token: {diff:.2e}")
    assert diff < 1e-4


def test_deepspeed_learners_push_the_weights_the_engines_serve(stack, tmp_path):
    from olmorl.config import DeepSpeedStrategy

    # ZeRO-3 partitions every parameter: the push must gather each whole, under its HF name.
    learners = [
        remote_learner()
        .options(num_cpus=1)
        .remote(
            rank,
            2,
            ModelConfig(path=str(write_tiny_model(tmp_path, seed=2)), dtype="float32"),
            LearnerConfig(
                num_workers=2, lr=1e-2, micro_batch_tokens=64, strategy=DeepSpeedStrategy()
            ),
            stack.algo,
            1.0,
        )
        for rank in range(2)
    ]
    address, port = ray.get(learners[0].address.remote())
    ray.get([learner.setup.remote(address, port, 0) for learner in learners])
    try:
        sequence = list(range(10, 60))
        # Every rank takes part in a forward pass (each layer's parameters are gathered).
        target = ray.get([lr.sequence_logprobs.remote(sequence) for lr in learners])[0]
        assert all(max_diff(b, target) > 0.1 for b in stack.engine_logprobs(sequence))
        # Another root takes the engines into a group of its own.
        sink = build_weight_sink("broadcast", stack.engines, "inflight", 1, 60.0)
        ray.get([lr.push_weights.remote(sink if r == 0 else None) for r, lr in enumerate(learners)])
        diffs = [max_diff(a, target) for a in stack.engine_logprobs(sequence)]
        print(f"\ndeepspeed learners -> vLLM, max |vLLM - learner| logprob per engine: {diffs}")
        assert all(d < 1e-4 for d in diffs)

        # The stack's learners find the engines gone from their cached group and form a new one.
        stack.push()
        diffs = [
            max_diff(a, stack.learner_logprobs(sequence)) for a in stack.engine_logprobs(sequence)
        ]
        print(f"the first root again, through a new group: {diffs}")
        assert all(d < 1e-4 for d in diffs)
    finally:
        ray.get([learner.shutdown.remote() for learner in learners])
        for learner in learners:
            ray.kill(learner)
