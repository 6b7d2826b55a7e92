"""Weights pushed from the learners reach every vLLM engine, before and after an optimizer step."""

import pytest
import ray
import torch

from olmorl.config import AlgorithmConfig, LearnerConfig, ModelConfig, RolloutConfig
from olmorl.learner.worker import LearnerWorker
from olmorl.models.tiny import write_tiny_model
from olmorl.rl.batch import build_step_batch
from olmorl.rl.types import Completion, PromptGroup, ScoredGroup
from olmorl.rollout.engine import RolloutEngine
from olmorl.rollout.weight_sync import RayWeightSink

pytestmark = pytest.mark.integration


def max_diff(a, b) -> float:
    return float((torch.tensor(a) - torch.tensor(b)).abs().max())


def test_weights_reach_every_engine(ray_cluster, tiny_model_dir, tmp_path):
    # Engines start from seed 0; the learners hold a different model (seed 1), so only a
    # successful push can make the engines agree with the learners.
    learner_model = write_tiny_model(tmp_path / "seed1", seed=1)
    rollout = RolloutConfig(
        num_actors=2,
        gpu_memory_utilization=0.1,
        max_num_seqs=16,
        max_response_tokens=16,
        enforce_eager=True,
    )
    engines = [
        ray.remote(RolloutEngine)
        .options(num_cpus=1)
        .remote(ModelConfig(path=str(tiny_model_dir), dtype="float32"), rollout, 256, i)
        for i in range(2)
    ]
    algo = AlgorithmConfig(group_size=2, prompts_per_step=2)
    learners = [
        ray.remote(LearnerWorker)
        .options(num_cpus=1)
        .remote(
            rank,
            2,
            ModelConfig(path=str(learner_model), dtype="float32"),
            LearnerConfig(num_workers=2, lr=1e-2, micro_batch_tokens=64),
            algo,
            1.0,
        )
        for rank in range(2)
    ]
    address, port = ray.get(learners[0].address.remote())
    ray.get(
        [l.setup.remote(address, port, 0) for l in learners] + [e.start.remote() for e in engines]
    )
    sequence = list(range(10, 60))

    def learner_logprobs():
        return ray.get([l.sequence_logprobs.remote(sequence) for l in learners])[0]

    def engine_logprobs():
        return ray.get([e.prompt_logprobs.remote(sequence) for e in engines])

    def push():
        sink = RayWeightSink(engines)
        return ray.get(
            [
                l.push_weights.remote(sink if rank == 0 else None, 64 << 10)
                for rank, l in enumerate(learners)
            ]
        )[0]

    try:
        before = engine_logprobs()
        target = learner_logprobs()
        assert all(max_diff(b, target) > 0.1 for b in before)
        assert push() == 0
        after = engine_logprobs()
        diffs = [max_diff(a, target) for a in after]
        print(f"\nafter sync, max |vLLM - learner| logprob per engine: {diffs}")
        assert all(d < 1e-4 for d in diffs)

        # One optimizer step moves the learners; the next push must move every engine with them.
        completions = tuple(
            Completion(tuple(range(20, 28)), tuple([-6.5] * 8), "stop", 0) for _ in range(2)
        )
        groups = [
            ScoredGroup(PromptGroup(i, (5, 6, 7), completions), (0.0, 1.0), {}) for i in range(2)
        ]
        batch = build_step_batch(groups, algo, 2, 64)
        ray.get([l.train_step.remote(mbs) for l, mbs in zip(learners, batch.per_rank)])
        trained = learner_logprobs()
        assert max_diff(trained, target) > 1e-3
        assert push() == 1
        diffs = [max_diff(a, trained) for a in engine_logprobs()]
        print(f"after a step and a sync: {diffs}")
        assert all(d < 1e-4 for d in diffs)
    finally:
        ray.get([e.shutdown.remote() for e in engines] + [l.shutdown.remote() for l in learners])
        for actor in engines + learners:
            ray.kill(actor)
